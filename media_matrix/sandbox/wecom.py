"""A loopback WeCom group robot: ``POST /cgi-bin/webhook/send?key=KEY``.

* 20 messages a minute per key (sliding 60 s window), then errcode 45009 "api freq out of limit".
* Unknown key (when ``keys`` is set) or no key: 93000 "invalid webhook url".
* Payload checks: msgtype text (content 1..2048 bytes), markdown (content 1..4096 bytes),
  news (1..8 articles, title 1..128 bytes, description <= 512 bytes, url required), image
  (base64 + md5). Unknown msgtype: 40008; empty content: 44004; a limit broken: 40058
  (the sandbox's choice for "invalid parameter"); bad JSON: 40035.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import deque
from typing import Any

from media_matrix.sandbox.common import Faults, Request, Response, SandboxApp


def _err(code: int, msg: str) -> Response:
    return Response.json({"errcode": code, "errmsg": f"{msg}, hint: [sandbox]"})


class WecomSandbox(SandboxApp):
    name = "wecom"
    persistent = ("messages",)

    def __init__(
        self,
        *,
        keys: set[str] | None = None,
        per_minute: int = 20,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(faults)
        self.keys = set(keys) if keys else None
        self.per_minute = per_minute
        self.messages: list[dict[str, Any]] = []  # accepted, in order
        self.rejected: list[tuple[str, int]] = []  # (key, errcode)
        self._windows: dict[str, deque[float]] = {}

    def url(self, key: str) -> str:
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def accepted(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["key"] == key]

    def route(self, req: Request) -> Response:
        if req.path.rstrip("/") != "/cgi-bin/webhook/send":
            return Response(404, b"not found")
        if req.method != "POST":
            return _err(43002, "require POST method")
        key = req.query.get("key", "")
        if not key or (self.keys is not None and key not in self.keys):
            return _err(93000, "invalid webhook url")
        try:
            payload = req.json()
        except (ValueError, UnicodeDecodeError):
            return self._reject(key, 40035, "invalid json")
        problem = self._validate(payload)
        if problem:
            return self._reject(key, *problem)
        with self.lock:
            now = self.now()
            window = self._windows.setdefault(key, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.per_minute:
                self.rejected.append((key, 45009))
                return _err(45009, "api freq out of limit")
            window.append(now)
            self.messages.append({"key": key, "msgtype": payload["msgtype"], "payload": payload})
        return Response.json({"errcode": 0, "errmsg": "ok"})

    def _reject(self, key: str, code: int, msg: str) -> Response:
        with self.lock:
            self.rejected.append((key, code))
        return _err(code, msg)

    @staticmethod
    def _validate(payload: Any) -> tuple[int, str] | None:
        if not isinstance(payload, dict):
            return 40035, "invalid json"
        kind = payload.get("msgtype")
        body = payload.get(kind) if isinstance(kind, str) else None
        if kind not in ("text", "markdown", "news", "image") or not isinstance(body, dict):
            return 40008, "invalid message type"
        if kind in ("text", "markdown"):
            content = str(body.get("content") or "")
            limit = 2048 if kind == "text" else 4096
            if not content.strip():
                return 44004, "empty content"
            if len(content.encode()) > limit:
                return 40058, f"{kind}.content exceed max length {limit}"
            return None
        if kind == "news":
            articles = body.get("articles")
            if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
                return 40058, "news.articles count must be 1-8"
            for art in articles:
                if not isinstance(art, dict):
                    return 40058, "news.articles invalid"
                title = str(art.get("title") or "")
                if not title or len(title.encode()) > 128:
                    return 40058, "news.articles.title invalid (1-128 bytes)"
                if len(str(art.get("description") or "").encode()) > 512:
                    return 40058, "news.articles.description exceed max length 512"
                if not str(art.get("url") or "").startswith(("http://", "https://")):
                    return 40058, "news.articles.url invalid"
            return None
        try:
            raw = base64.b64decode(str(body.get("base64", "")), validate=True)
        except (binascii.Error, ValueError):
            return 40058, "image.base64 invalid"
        if not raw or hashlib.md5(raw).hexdigest() != body.get("md5"):  # noqa: S324 - API's choice
            return 40058, "image.md5 mismatch"
        if len(raw) > 2 * 1024 * 1024:
            return 40058, "image too large"
        return None
