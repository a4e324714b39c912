"""``media-matrix public [--host] [--port]``: the internet-facing face, in the foreground."""

from __future__ import annotations

import click

from media_matrix.cli.common import AppContext, RuntimeFailure, pass_app


def register(cli: click.Group) -> None:
    @cli.command("public")
    @click.option("--host", default=None, help="监听地址 (默认: public.host)")
    @click.option(
        "--port", type=click.IntRange(0, 65535), default=None, help="端口 (默认: public.port)"
    )
    @click.option(
        "--static-redirect",
        default=None,
        hidden=True,
        help="基准测试用: 每个请求都以此地址 302 跳转, 不记录",
    )
    @pass_app
    def public(app: AppContext, host: str | None, port: int | None, static_redirect: str | None):
        """对外服务: /s/{code} (跟踪链接)、/o/{token} (信息员页面) 和 /healthz, 直到 SIGTERM。

        点击分批写入, 退出时写完; 不保存任何访客地址。"""
        from media_matrix.public import serve

        settings = app.settings
        app.store.migrate()
        host = host or settings.public.host
        port = settings.public.port if port is None else port

        def ready(url: str) -> None:
            click.echo(
                f"公开服务 (public face) {url}  链接前缀 {settings.public.base_url}/s/", err=True
            )

        try:
            serve(settings, host, port, static_redirect=static_redirect, ready=ready)
        except OSError as exc:
            raise RuntimeFailure(f"cannot listen on {host}:{port}: {exc}") from None
        click.echo("public face stopped", err=True)
