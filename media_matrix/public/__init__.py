"""The internet-facing face: tracked-link redirects, officer pages, a health check.

app = make_app(settings, store)          # a WSGI callable; app.close() writes buffered hits
serve(settings, host, port)              # waitress until SIGTERM/SIGINT, then flush
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from media_matrix.config import Settings
from media_matrix.public.app import PublicApp, make_app
from media_matrix.store import open_store


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    static_redirect: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; in-flight requests finish, then every hit is written."""
    import waitress

    store = open_store(settings.database)
    app = make_app(settings, store, static_redirect=static_redirect)
    proxy: dict[str, Any] = {}
    if settings.public.trusted_proxy:
        proxy = {
            "trusted_proxy": settings.public.trusted_proxy,
            "trusted_proxy_headers": {"x-forwarded-for"},
            "trusted_proxy_count": 1,
        }
    server: Any = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=settings.public.threads,
        ident="media-matrix",
        clear_untrusted_proxy_headers=True,
        **proxy,
    )

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)  # waitress' loop catches it and drains its worker threads

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if ready is not None:
            ready(f"http://{host}:{server.effective_port}")
        try:
            server.run()
        except KeyboardInterrupt:
            server.task_dispatcher.shutdown()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        app.close()
        store.close()


__all__ = ["PublicApp", "make_app", "serve"]
