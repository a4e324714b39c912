"""Command-line face: parse arguments, call one service function, print a table or JSON.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
Each command group lives in its own module and registers itself on ``cli`` below.
"""

from __future__ import annotations

import sys

import click

from media_matrix.cli.common import AppContext, run_guarded
from media_matrix.config import CONFIG_ENV


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"config.yaml to use (default: ${CONFIG_ENV}, else ./config.yaml)",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """media-matrix: 科普内容分发与媒体矩阵调度."""
    ctx.obj = AppContext(config_path)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from media_matrix.cli import deliveries, feeds, packs, review, run, sandbox, schedule, tag

    for module in (feeds, packs, run, sandbox, tag, review, schedule, deliveries):
        module.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_guarded(cli, argv))
