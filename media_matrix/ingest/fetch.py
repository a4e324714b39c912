"""Fetch a feed or page: http(s) with conditional GET, or a local path / file:// URL.

http(s) goes through the guarded fetch (address policy at every hop, a total deadline, a
size cap); local paths are only ever configured by the operator or confined by the caller.

Local files get a validator made of their mtime and size, so an unchanged file is a cheap
"not modified" exactly like an HTTP 304.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from media_matrix.httpclient import (
    FetchLimits,
    FetchRefused,
    GuardedAdapter,
    NetworkPolicy,
    guarded_get,
    guarded_session,
)
from media_matrix.timeutil import parse_retry_after

RETRY_AFTER_STATUSES = {429, 503}


class FetchError(Exception):
    """The source could not be fetched; ``retry_after`` (seconds) if the server asked."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class FetchResult:
    url: str  # final URL after redirects (the base for relative links)
    content: bytes | None  # None when not modified
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200

    @property
    def not_modified(self) -> bool:
        return self.content is None

    @property
    def charset(self) -> str | None:
        _, _, params = self.headers.get("content-type", "").partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip("\"' ").lower()
        return None


@dataclass
class FetchOptions:
    user_agent: str
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_bytes: int = 10 * 1024 * 1024
    deadline: float = 60.0  # the whole fetch, redirects included
    max_redirects: int = 5
    network: NetworkPolicy = field(default_factory=NetworkPolicy)


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)


def fetch(
    url: str,
    options: FetchOptions,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    session: requests.Session | None = None,
) -> FetchResult:
    if is_local(url):
        return _fetch_file(local_path(url), options, etag)
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"unsupported URL scheme in {url!r} (expected http, https or a path)")
    return _fetch_http(url, options, etag, last_modified, session)


def _fetch_file(path: Path, options: FetchOptions, etag: str | None) -> FetchResult:
    try:
        stat = path.stat()
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    validator = f"file:{stat.st_mtime_ns}:{stat.st_size}"
    uri = path.resolve().as_uri()
    if etag == validator:
        return FetchResult(url=uri, content=None, etag=validator, status=304)
    if stat.st_size > options.max_bytes:
        raise FetchError(f"{path} is {stat.st_size} bytes, over the {options.max_bytes} cap")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    return FetchResult(url=uri, content=content, etag=validator)


def _fetch_http(
    url: str,
    options: FetchOptions,
    etag: str | None,
    last_modified: str | None,
    session: requests.Session | None,
) -> FetchResult:
    headers = {"User-Agent": options.user_agent, "Accept-Encoding": "gzip, deflate"}
    if etag and not etag.startswith("file:"):
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    if session is None or not isinstance(session.get_adapter(url), GuardedAdapter):
        session = guarded_session(options.network)
    limits = FetchLimits(
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        deadline=options.deadline,
        max_bytes=options.max_bytes,
        max_redirects=options.max_redirects,
    )
    try:
        response = guarded_get(session, url, limits, headers=headers)
    except FetchRefused as exc:
        raise FetchError(str(exc)) from None
    if response.status == 304:
        return FetchResult(
            url=response.url,
            content=None,
            etag=response.headers.get("etag", etag),
            last_modified=response.headers.get("last-modified", last_modified),
            headers=response.headers,
            status=304,
        )
    if response.status >= 300:
        retry_after = None
        if response.status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise FetchError(
            f"HTTP {response.status} {response.reason} from {response.url}",
            retry_after=retry_after,
        )
    return FetchResult(
        url=response.url,
        content=response.content,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        headers=response.headers,
        status=response.status,
    )
