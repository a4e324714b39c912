"""Command-line face: parse arguments, call one service function, print a table or JSON.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
Each command group lives in its own module and registers itself on ``cli`` below.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

import click

from media_matrix.cli.common import AppContext, run_guarded
from media_matrix.config import CONFIG_ENV

# Top-level command -> the command modules that define it. Modules load on first use, so a
# command pays only for its own imports (the CLI runs often, from scripts and tests).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("run",),
    "ingest": ("run",),
    "run": ("run",),
    "feeds": ("feeds",),
    "packs": ("packs", "review"),
    "tag": ("tag",),
    "audit": ("review",),
    "queue": ("schedule",),
    "unqueue": ("schedule",),
    "plan": ("schedule",),
    "status": ("schedule",),
    "daemon": ("schedule",),
    "dispatch": ("deliveries",),
    "deliveries": ("deliveries",),
    "stats": ("stats",),
    "sandbox": ("sandbox",),
    "public": ("public",),
    "officers": ("officers",),
    "serve": ("web",),
    "users": ("users",),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is looked up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMAND_MODULES.get(cmd_name, ()):
            if module not in self._loaded:
                self._loaded.add(module)
                import_module(f"media_matrix.cli.{module}").register(self)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"配置文件 (默认: ${CONFIG_ENV}, 否则为 ./config.yaml)",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """media-matrix: 科普内容分发与媒体矩阵调度."""
    ctx.obj = AppContext(config_path)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_guarded(cli, argv))
