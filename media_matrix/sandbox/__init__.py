"""Loopback servers that speak the channel APIs faithfully, for the demo and for tests.

    with SandboxServers() as sb:                       # all on 127.0.0.1, ephemeral ports
        sb.urls        # {"wechat": "http://127.0.0.1:PORT", "wecom": ..., "mediacentre": ...}
        sb.wechat.published, sb.wecom.messages, sb.mediacentre.manuscripts   # what was accepted
        sb.mediacentre.faults.fail_next(3, status=503)                       # fault injection

``SandboxServers(port=8700)`` puts them on 8700 (wechat), 8701 (wecom), 8702 (mediacentre).
Each app can be built with its own options and ``Faults`` and passed in.
"""

from __future__ import annotations

from media_matrix.sandbox.common import Faults, Request, Response, SandboxApp
from media_matrix.sandbox.mediacentre import MediaCentreSandbox
from media_matrix.sandbox.wechat import WechatSandbox
from media_matrix.sandbox.wecom import WecomSandbox

__all__ = [
    "Faults",
    "MediaCentreSandbox",
    "Request",
    "Response",
    "SandboxApp",
    "SandboxServers",
    "WechatSandbox",
    "WecomSandbox",
]


class SandboxServers:
    ORDER = ("wechat", "wecom", "mediacentre")

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        wechat: WechatSandbox | None = None,
        wecom: WecomSandbox | None = None,
        mediacentre: MediaCentreSandbox | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self.wechat = wechat or WechatSandbox()
        self.wecom = wecom or WecomSandbox()
        self.mediacentre = mediacentre or MediaCentreSandbox()
        self._running: dict[str, object] = {}

    @property
    def apps(self) -> dict[str, SandboxApp]:
        return {"wechat": self.wechat, "wecom": self.wecom, "mediacentre": self.mediacentre}

    @property
    def urls(self) -> dict[str, str]:
        return {name: app.base_url for name, app in self.apps.items() if name in self._running}

    def start(self) -> SandboxServers:
        from media_matrix.sandbox.common import Running

        if self._running:
            return self
        try:
            for offset, name in enumerate(self.ORDER):
                port = self.port + offset if self.port else 0
                self._running[name] = Running(self.apps[name], self.host, port, self.verbose)
        except OSError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (in parallel: each waits for its serve loop to notice)."""
        import threading

        stoppers = [
            threading.Thread(target=running.stop)  # type: ignore[attr-defined]
            for running in self._running.values()
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self._running.clear()

    def __enter__(self) -> SandboxServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
