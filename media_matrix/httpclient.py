"""HTTP sessions for feeds and channel adapters, and the guarded fetch for untrusted URLs.

The environment is honoured only when it configures something (a proxy or a netrc): then
requests reads it as usual. Otherwise ``trust_env`` is off, because requests' per-request
environment look-ups find nothing yet cost a good share of a small request's CPU. A CA bundle
from ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` is kept either way.

URLs a stranger controls (feeds, article pages, pack images) go through :func:`guarded_get`:

* the address actually connected to (``getpeername()`` of the real socket, so DNS rebinding
  between a check and the connect changes nothing) must be public, unless allow-listed in
  ``network.allow``; loopback, private, link-local, shared, multicast, reserved and unspecified
  ranges are refused, IPv4-mapped IPv6 included (with a proxy, the proxy is the peer);
* redirects are followed by hand, each hop's URL checked (http(s) only) and connected through
  the same check, at most ``max_redirects`` of them;
* the whole fetch has a deadline: a watchdog shuts the socket down when it passes, so a server
  sending a byte a second cannot hold a worker however short each read is.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from media_matrix.netpolicy import NetworkPolicy, network_policy

__reexported__ = (network_policy,)  # callers import the policy from here too

_ENV_NETWORK = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc")
REDIRECT_STATUSES = {301, 302, 303, 307, 308}


def environment_configures_network() -> bool:
    if any(key.lower() in _ENV_NETWORK for key in os.environ):
        return True
    home = Path.home()
    return (home / ".netrc").exists() or (home / "_netrc").exists()


# -- sessions ---------------------------------------------------------------------------------


class _Watch:
    """The deadline of one guarded fetch: shuts down every socket it used when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._conns: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def add(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self.expired:
                raise NewConnectionError(conn, "fetch deadline passed")
            self._conns.append(conn)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


class PeerRefused(NewConnectionError):
    """The connected peer is not an address untrusted fetches may reach."""

    def __init__(self, conn: Any, why: str) -> None:
        super().__init__(conn, why)
        self.why = why


class _GuardMixin:
    policy: NetworkPolicy

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            host, port = sock.getpeername()[:2]
            reason = self.policy.refusal(host, port)
        except (OSError, ValueError) as exc:
            reason = f"cannot check the peer address: {exc}"
        if reason:
            sock.close()
            raise PeerRefused(self, f"refused: {reason}")
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections check the peer address against a policy."""

    def __init__(self, policy: NetworkPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attrs = {"policy": self.policy}
        http_conn = type("GuardedHTTPConnection", (_GuardMixin, HTTPConnection), attrs)
        https_conn = type("GuardedHTTPSConnection", (_GuardMixin, HTTPSConnection), attrs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type(
                "GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
            ),
        }

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "policy": self.policy}


def make_session(
    pool: int = 10, *, user_agent: str | None = None, network: NetworkPolicy | None = None
) -> requests.Session:
    """A session pooling ``pool`` connections per host; with ``network``, a guarded one (every
    connection's peer checked against that policy; use it through :func:`guarded_get`)."""
    session = requests.Session()
    session.trust_env = environment_configures_network()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    if user_agent:
        session.headers["User-Agent"] = user_agent
    size = max(10, pool)
    adapter = (
        GuardedAdapter(network, pool_connections=size, pool_maxsize=size)
        if network is not None
        else HTTPAdapter(pool_connections=size, pool_maxsize=size)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_shared: dict[NetworkPolicy, requests.Session] = {}
_shared_lock = threading.Lock()


def guarded_session(policy: NetworkPolicy) -> requests.Session:
    """One pooled guarded session per policy, for callers that hold none (adapters' images)."""
    with _shared_lock:
        session = _shared.get(policy)
        if session is None:
            session = _shared[policy] = make_session(network=policy)
        return session


# -- the guarded fetch ------------------------------------------------------------------------


class FetchRefused(Exception):
    """A guarded fetch failed: refused address or scheme, deadline, size cap, network error."""


@dataclass
class Fetched:
    url: str  # after redirects
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    content: bytes = b""  # read only for 2xx answers


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    deadline: float = 60.0  # the whole fetch, redirects and body included
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5


def check_http_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; FetchRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"refused {url[:200]!r}: only http(s) URLs are fetched")
    return url


def guarded_get(
    session: requests.Session,
    url: str,
    limits: FetchLimits,
    *,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """GET an untrusted URL within ``limits``; ``session`` must come from
    ``make_session(network=...)`` (its adapter checks every peer address)."""
    if not isinstance(session.get_adapter(check_http_url(url)), GuardedAdapter):
        raise TypeError("guarded_get needs a session made with make_session(network=...)")
    watch = _Watch(limits.deadline)
    _current.watch = watch
    watch.start()
    try:
        return _follow(session, url, limits, dict(headers or {}), watch)
    except requests.RequestException as exc:
        if watch.expired:
            message = f"{url} took longer than the {limits.deadline:g} s deadline"
            raise FetchRefused(message) from None
        if isinstance(exc, requests.Timeout):
            raise FetchRefused(f"timed out fetching {url}") from None
        raise FetchRefused(f"cannot fetch {url}: {_reason(exc)}") from None
    finally:
        watch.cancel()
        _current.watch = None


def _follow(
    session: requests.Session,
    url: str,
    limits: FetchLimits,
    headers: dict[str, str],
    watch: _Watch,
) -> Fetched:
    started = time.monotonic()
    for _hop in range(limits.max_redirects + 1):
        check_http_url(url)
        remaining = max(0.01, limits.deadline - (time.monotonic() - started))
        timeout = (min(limits.connect_timeout, remaining), min(limits.read_timeout, remaining))
        with session.get(
            url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            location = response.headers.get("Location")
            if response.status_code in REDIRECT_STATUSES and location:
                url = urljoin(url, location)
                continue
            fetched = Fetched(
                url=url,
                status=response.status_code,
                reason=response.reason or "",
                headers={k.lower(): v for k, v in response.headers.items()},
            )
            if 200 <= response.status_code < 300:
                fetched.content = _read_capped(response, limits.max_bytes, url)
            if watch.expired:
                raise requests.ConnectionError("deadline")
            return fetched
    raise FetchRefused(f"more than {limits.max_redirects} redirects fetching {url}")


def _read_capped(response: requests.Response, max_bytes: int, url: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"{url} declares {declared} bytes, over the {max_bytes} cap")
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"{url} sent more than the {max_bytes}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    """A refusal by the address check as itself; anything else with its type."""
    wrapped = exc.args[0] if exc.args else None
    refused = getattr(wrapped, "reason", wrapped)
    if isinstance(refused, PeerRefused):
        return refused.why
    return f"{type(exc).__name__}: {exc}"
