"""``media-matrix public [--host] [--port]``: the internet-facing face, in the foreground."""

from __future__ import annotations

import click

from media_matrix.cli.common import AppContext, RuntimeFailure, pass_app


def register(cli: click.Group) -> None:
    @cli.command("public")
    @click.option("--host", default=None, help="address to listen on (default: public.host)")
    @click.option(
        "--port", type=click.IntRange(0, 65535), default=None, help="(default: public.port)"
    )
    @click.option(
        "--static-redirect",
        default=None,
        hidden=True,
        help="benchmark baseline: answer every request with this 302, record nothing",
    )
    @pass_app
    def public(app: AppContext, host: str | None, port: int | None, static_redirect: str | None):
        """Serve /s/{code} (tracked links), /o/{token} (officer pages) and /healthz until SIGTERM.

        Hits are written in batches and on shutdown; no client address is stored."""
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
