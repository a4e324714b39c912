"""`serve`: the editor console over waitress (pure Python, Linux and Windows servers)."""

from __future__ import annotations

import click

from media_matrix.cli.common import AppContext, pass_app


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True)
@pass_app
def serve_cmd(app: AppContext, host: str, port: int, threads: int) -> None:
    """编辑控制台 (editor web console): review, preview, calendar, deliveries, statistics."""
    import waitress

    from media_matrix.web import create_app, settle_heap

    console = create_app(app.settings, app.store)
    settle_heap()
    click.echo(f"控制台已启动: http://{host}:{port}/  (Ctrl-C 停止)")
    waitress.serve(console, host=host, port=port, threads=threads, ident="media-matrix")


def register(cli: click.Group) -> None:
    cli.add_command(serve_cmd)
