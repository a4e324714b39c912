"""The public face as a plain WSGI app: ``/s/{code}``, ``/o/{token}``, ``/healthz`` and the
群众点单 pages (``/request``, ``/request/{token}``, ``/o/{token}/request``: public/orders.py).

Plain WSGI rather than a framework: three routes, and the redirect is the hot path (see
bench/public.py). Every answer that is not a redirect, a page or the health check is the same
404, byte for byte, whether a code never existed, was malformed or belongs to a disabled
officer; a client whose unknown codes exceed its token bucket gets 429 until it refills. The
bucket's key is an HMAC of the address alone (the agent is the client's to vary), in memory only.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable
from hashlib import sha256
from typing import Any
from urllib.parse import quote

from media_matrix.config import Settings
from media_matrix.links import (
    TokenBuckets,
    classify_agent,
    valid_code,
    valid_token,
)
from media_matrix.public.orders import OrderDesk
from media_matrix.public.pages import officer_page
from media_matrix.public.recorder import HitRecorder
from media_matrix.store import Store, open_store
from media_matrix.tracking import channel_types, officer_week, redirect_target, week_bounds

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_COMMON = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Robots-Tag", "noindex, nofollow"),
]
_PAGE_CSP = (
    "Content-Security-Policy",
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'",
)
_NOT_FOUND = (
    '<!DOCTYPE html><html lang="zh-CN"><meta charset="utf-8"><title>链接无效</title>'
    "<p>链接不存在或已失效。</p></html>"
).encode()
_TOO_MANY = (
    '<!DOCTYPE html><html lang="zh-CN"><meta charset="utf-8"><title>请求过多</title>'
    "<p>请求过于频繁，请稍后再试。</p></html>"
).encode()
_CACHE_MAX = 50_000
_ORDER_PATH = re.compile(r"^/request(/[^/]*)?$|^/o/[^/]+/request$")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


class PublicApp:
    """WSGI callable over one store; ``close()`` writes the buffered hits."""

    def __init__(self, settings: Settings, store: Store, *, static_redirect: str | None = None):
        self.settings = settings
        self.store = store
        self.types = channel_types(settings)
        conf = settings.public
        # The recorder writes on a connection of its own: a flush never holds up the lookups.
        self.recorder = HitRecorder(
            open_store(store.path, migrate=False), settings.timezone, conf.flush_every, own=True
        )
        self.buckets = TokenBuckets(burst=conf.miss_burst, rate=conf.miss_rate)
        self.static_redirect = static_redirect  # bench baseline: a fixed 302, nothing recorded
        self.cache_seconds = conf.cache_seconds
        self._cache: dict[str, tuple[float, int, str]] = {}  # code -> (until, link id, target)
        self.orders = OrderDesk(
            settings,
            store,
            lambda address, agent: self.recorder.client_key(address, agent)[1],
            self._throttle_key,
        )

    def close(self) -> None:
        self.recorder.close()

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "")
        if self.static_redirect is not None:
            return _redirect(start_response, self.static_redirect, method)
        if _ORDER_PATH.match(path):  # 群众点单 (issue 13): the only paths that take a POST
            return self._orders(environ, method, path, start_response)
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"", [("Allow", "GET, HEAD")])
        if path == "/healthz":
            return _answer(start_response, "200 OK", b"ok\n", [], "text/plain; charset=utf-8")
        kind, _, key = path[1:].partition("/")
        if kind not in ("s", "o") or "/" in key:
            return _answer(start_response, "404 Not Found", _NOT_FOUND, [])
        address = environ.get("REMOTE_ADDR") or ""
        throttle = self._throttle_key(address)
        if not self.buckets.allowed(throttle):
            return _answer(
                start_response, "429 Too Many Requests", _TOO_MANY, [("Retry-After", "10")]
            )
        if kind == "s":
            answer = self._link(environ, method, key, address, start_response)
        else:
            answer = self._officer(key, method, start_response)
        if answer is None:
            self.buckets.take(throttle)
            return _answer(start_response, "404 Not Found", _NOT_FOUND, [])
        return answer

    def _orders(
        self, environ: dict[str, Any], method: str, path: str, start_response: StartResponse
    ) -> Iterable[bytes]:
        """The order form, its submission and answer pages; unknown tokens spend the same
        miss bucket as unknown link codes."""
        throttle = self._throttle_key(environ.get("REMOTE_ADDR") or "")
        if not self.buckets.allowed(throttle):
            return _answer(
                start_response, "429 Too Many Requests", _TOO_MANY, [("Retry-After", "10")]
            )
        result = self.orders.handle(environ, method, path)
        if result is None:
            self.buckets.take(throttle)
            return _answer(start_response, "404 Not Found", _NOT_FOUND, [])
        status, body, headers = result
        return _answer(start_response, status, body if method != "HEAD" else b"", headers)

    def _throttle_key(self, address: str) -> str:
        day = self.recorder.today()
        return hmac.new(self.recorder.salt(day), address.encode(), sha256).hexdigest()[:24]

    def _link(
        self,
        environ: dict[str, Any],
        method: str,
        code: str,
        address: str,
        start_response: StartResponse,
    ) -> Iterable[bytes] | None:
        if not valid_code(code):
            return None
        found = self._resolve(code)
        if found is None:
            return None
        link_id, target = found
        agent = environ.get("HTTP_USER_AGENT")
        day, visitor = self.recorder.client_key(address, agent)
        self.recorder.record(link_id, day, classify_agent(agent, method), visitor)
        return _redirect(start_response, target, method)

    def _resolve(self, code: str) -> tuple[int, str] | None:
        """(link id, target) of a live code. Answers are kept ``cache_seconds``: a shared link
        is opened in bursts, and a new target (a WeChat article published, an officer disabled)
        may take that long to show. Unknown codes are never cached."""
        now = time.monotonic()
        cached = self._cache.get(code)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        link = self.store.resolve_link(code)
        if link is None:
            self._cache.pop(code, None)
            return None
        target = redirect_target(self.store, self.types, link)
        if target is None:
            return None
        if self.cache_seconds > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[code] = (now + self.cache_seconds, link["id"], target)
        return link["id"], target

    def _officer(
        self, token: str, method: str, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        if not valid_token(token):
            return None
        officer = self.store.officer_by_token(token)
        if officer is None:
            return None
        since, until = week_bounds(self.settings, None)
        entries = officer_week(self.settings, self.store, officer, since, until)
        body = officer_page(officer, entries, order_url=f"/o/{token}/request").encode("utf-8")
        return _answer(start_response, "200 OK", body if method == "GET" else b"", [_PAGE_CSP])


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    headers: list[tuple[str, str]],
    content_type: str = "text/html; charset=utf-8",
) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), *_COMMON, *headers],
    )
    return [body]


def _redirect(start_response: StartResponse, target: str, method: str) -> list[bytes]:
    # A header is Latin-1 and one line: percent-encode anything else (IRIs, CR/LF from a
    # remote's answer), leaving existing escapes and the URL's delimiters alone.
    location = quote(target, safe=_URL_SAFE)
    start_response("302 Found", [("Location", location), ("Content-Length", "0"), *_COMMON])
    return [b""]


def make_app(settings: Settings, store: Store, **kwargs: Any) -> PublicApp:
    return PublicApp(settings, store, **kwargs)
