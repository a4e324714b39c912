"""The adapter protocol: what the dispatcher hands an adapter, what it gets back, what it catches.

An adapter turns one rendered :class:`Message` into a remote effect (an article published, a
message posted, a manuscript accepted, a folder dropped) and reports a :class:`SendResult`, or
raises one of the typed errors below. Adapters never touch the store: everything the dispatcher
must persist comes back through return values, exceptions and the ``checkpoint`` callback.

How the dispatcher drives an adapter
------------------------------------

``adapter = make_adapter(channel_config, templates_dir=settings.templates,
timezone=settings.timezone)`` (one per channel, reused), then for each claimed batch::

    message = adapter.render(items)      # render.TemplateError (file + line): dead, not retried
    result = adapter.send(message, checkpoint, state=previous_state)

* A message carries up to ``adapter.max_items`` items: 8 for wechat_mp (one draft, one
  publish) and wecom_robot (news), 1 for webhook and outbox.
* ``checkpoint(state)`` is called by non-idempotent adapters BEFORE and AFTER every remote call
  with a public effect (WeChat draft/add, freepublish/submit, mass/sendall; the WeCom post) and
  after each media upload. ``state`` is the whole cumulative, JSON-safe dict (not a delta);
  persist it (``deliveries.remote_state``) for every delivery in the message, replacing what
  was there, before returning from the callback. ``step`` names the call and ``pending: true``
  means it is in flight (its answer, if lost, leaves the outcome unknown).
* ``previous_state`` is the last state persisted for that delivery by an earlier attempt (after a
  retryable error, or after a crash), ``None`` on the first attempt. Non-idempotent adapters use it
  never to repeat a public effect: WeChat reuses the uploaded media and the draft, looks up a
  publish that may have happened, and raises :class:`AmbiguousError` when it cannot tell. So a
  crash recovery is the same call as a retry: ``send(message, checkpoint, state=recorded)``;
  ``AmbiguousError`` -> mark the delivery ``unknown`` for an operator. Idempotent adapters
  (``idempotent = True``: webhook, outbox) ignore it: resending is safe by construction.
* ``result.status == "submitted"``: asynchronous (WeChat publish and mass send); store
  ``result.remote_id`` and ``result.state`` and call ``adapter.poll(remote_id, state)`` later
  (the sweeper) until it returns ``"delivered"`` or raises. ``result.item_urls`` is aligned with
  ``message.items``; ``result.state`` is the final state to persist.
* Errors: :class:`RetryableError` (back off, honour ``retry_after`` seconds when set),
  :class:`QuotaError` (not the content's fault; reschedule at ``reset_at``, do not count it as a
  failed attempt), :class:`AuthError` (stop the channel and alert), :class:`RejectedError`
  (dead, permanent), :class:`AmbiguousError` (``unknown``). Each has ``http_status``,
  ``excerpt`` (<= 500 chars), ``errcode`` (remote API code or None) and ``outcome`` (a short
  word for the attempt log). Any other exception is a bug: log it and treat as retryable.
* ``reconcile(state, checkpoint)`` asks the remote what happened to an attempt without resending
  blindly: a :class:`SendResult` when the remote has it (WeChat may finish a half-done publish
  here, checkpointing as it goes), ``None`` when it cannot tell, and it raises
  :class:`NothingSent` when it is certain nothing public happened (safe to send again).

State keys: wechat_mp ``mode, uids, thumbs, images, titles, source_urls, step, pending,
draft_media_id, publish_id, msg_data_id, clientmsgid, msg_id`` (+ ``article_id, urls,
publish_status`` once final); wecom_robot ``step, pending, uids``; webhook
``idempotency_key, replayed``; outbox ``folder, written``.

Adapters are thread-safe: one instance per channel may be used from several pool threads.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import requests

from media_matrix.httpclient import (
    FetchLimits,
    FetchRefused,
    NetworkPolicy,
    guarded_get,
    guarded_session,
    make_session,
)
from media_matrix.messages import (
    EXCERPT_MAX,
    AdapterError,
    AmbiguousError,
    AuthError,
    Checkpoint,
    Message,
    NothingSent,
    OutgoingItem,
    QuotaError,
    RejectedError,
    RetryableError,
    SendResult,
    excerpt,
)
from media_matrix.render import default_templates_dir, render_message
from media_matrix.timeutil import parse_retry_after

__all__ = [  # the message types and errors live in media_matrix.messages; re-exported
    "EXCERPT_MAX",
    "AdapterError",
    "AmbiguousError",
    "AuthError",
    "Checkpoint",
    "Message",
    "NothingSent",
    "OutgoingItem",
    "QuotaError",
    "RejectedError",
    "RetryableError",
    "SendResult",
    "excerpt",
]

USER_AGENT = "media-matrix/0.1 (+channel adapter)"
BEIJING = ZoneInfo("Asia/Shanghai")


# -- the protocol -------------------------------------------------------------------------------


@runtime_checkable
class Adapter(Protocol):
    type: ClassVar[str]
    idempotent: ClassVar[bool]
    channel: Any

    def render(self, items: Sequence[OutgoingItem]) -> Message: ...

    def send(
        self,
        message: Message,
        checkpoint: Checkpoint,
        state: Mapping[str, Any] | None = None,
    ) -> SendResult: ...

    def poll(self, remote_id: str, state: Mapping[str, Any]) -> SendResult: ...

    def reconcile(
        self, state: Mapping[str, Any], checkpoint: Checkpoint | None = None
    ) -> SendResult | None: ...

    def close(self) -> None: ...


class BaseAdapter:
    """Shared plumbing: session, rendering, defaults for synchronous idempotent channels."""

    type: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False
    max_items: ClassVar[int] = 1

    def __init__(
        self,
        channel: Any,
        *,
        templates_dir: Path | str | None = None,
        session: requests.Session | None = None,
        timezone: str = "Asia/Shanghai",
        network: NetworkPolicy | None = None,
    ) -> None:
        self.channel = channel
        self.network = network or NetworkPolicy()  # for pack images: untrusted URLs
        self.templates_dir = Path(templates_dir) if templates_dir is not None else None
        self.timezone = timezone
        self._own_session = session is None
        # requests' default session headers already hold a User-Agent: set ours explicitly
        self.session = session or make_session(user_agent=USER_AGENT)

    def render(self, items: Sequence[OutgoingItem]) -> Message:
        return render_message(
            self.channel,
            list(items),
            self.templates_dir or default_templates_dir(),
            timezone=self.timezone,
        )

    def check_items(self, message: Message) -> None:
        if not message.items:
            raise RejectedError(f"{self.channel.name}: empty message")
        if len(message.items) > self.max_items:
            raise RejectedError(
                f"{self.channel.name}: {len(message.items)} items in one message; "
                f"a {self.type} message carries at most {self.max_items}"
            )

    def poll(self, remote_id: str, state: Mapping[str, Any]) -> SendResult:
        raise NotImplementedError(f"{self.type} sends are synchronous; nothing to poll")

    def reconcile(
        self, state: Mapping[str, Any], checkpoint: Checkpoint | None = None
    ) -> SendResult | None:
        if self.idempotent:
            raise NothingSent("idempotent channel: send again with the same key")
        return None

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> BaseAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers shared by the adapters -------------------------------------------------------------


def next_beijing_midnight(now: datetime | None = None) -> datetime:
    """When WeChat's daily quotas reset (00:00 Asia/Shanghai), as an aware UTC datetime."""
    local = (now or datetime.now(UTC)).astimezone(BEIJING)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(UTC)


def http_error(resp: requests.Response, what: str) -> AdapterError:
    """Map a non-2xx HTTP status to the error type the dispatcher expects."""
    status = resp.status_code
    body = excerpt(resp.text)
    if status in (408, 429) or status >= 500:
        return RetryableError(
            f"{what}: HTTP {status}",
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            http_status=status,
            excerpt_text=body,
        )
    if status in (401, 403):
        return AuthError(f"{what}: HTTP {status}", http_status=status, excerpt_text=body)
    return RejectedError(f"{what}: HTTP {status}", http_status=status, excerpt_text=body)


def network_error(exc: requests.RequestException, what: str) -> RetryableError:
    kind = "timed out" if isinstance(exc, requests.Timeout) else "network error"
    return RetryableError(f"{what}: {kind}: {exc}")


@dataclass
class LoadedImage:
    source: str
    data: bytes
    content_type: str
    filename: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


IMAGE_MAX_BYTES = 10 * 1024 * 1024
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def sniff_image_type(data: bytes) -> str | None:
    for signature, ctype in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def load_image(
    src: str,
    session: requests.Session,
    *,
    timeout: float = 15.0,
    max_bytes: int = IMAGE_MAX_BYTES,
    network: NetworkPolicy | None = None,
    local_root: str | None = None,
    trusted: Collection[str] = (),
) -> LoadedImage | None:
    """Read an image from a file:// URL or a plain path, or fetch it over http(s).

    Pack content is untrusted: http(s) goes through the guarded fetch (``network`` policy,
    a deadline of ``timeout`` for the whole fetch; ``session`` is for channel APIs only and is
    not used for it), and a local file is read only inside the pack's own folder
    (``local_root``) or when the operator configured it (``trusted``, e.g. covers).
    Returns None (the caller drops the image) when it cannot be read, is refused, is too big or
    is not an image; never raises for a bad image, since one broken picture must not stop a
    delivery.
    """
    parts = urlsplit(src)
    try:
        if parts.scheme in ("http", "https"):
            policy = network or NetworkPolicy()
            limits = FetchLimits(
                connect_timeout=timeout, read_timeout=timeout, deadline=timeout, max_bytes=max_bytes
            )
            fetched = guarded_get(guarded_session(policy), src, limits)
            if fetched.status != 200:
                return None
            data = fetched.content
            name = Path(unquote(parts.path)).name or "image"
        elif parts.scheme in ("file", ""):
            path = Path(unquote(parts.path) if parts.scheme == "file" else src)
            if src not in trusted and not _inside_root(path, local_root):
                return None
            if not path.is_file() or path.stat().st_size > max_bytes:
                return None
            data = path.read_bytes()
            name = path.name
        else:
            return None
    except (OSError, FetchRefused):
        return None
    ctype = sniff_image_type(data)
    if ctype is None:
        return None
    ext = mimetypes.guess_extension(ctype) or ".img"
    if ext == ".jpe":
        ext = ".jpg"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:60] or "image"
    return LoadedImage(source=src, data=data, content_type=ctype, filename=stem + ext)


def _inside_root(path: Path, root: str | None) -> bool:
    try:
        return bool(root) and path.resolve().is_relative_to(Path(root).resolve())  # type: ignore[arg-type]
    except (OSError, ValueError):
        return False


class SlidingWindowLimiter:
    """At most ``limit`` events per ``period`` seconds per key; thread-safe; never sleeps.

    ``acquire(key)`` records an event or raises :class:`QuotaError` whose ``reset_at`` is when the
    oldest event in the window leaves it, so a dispatcher can reschedule instead of blocking a
    worker for up to a minute.
    """

    def __init__(
        self, limit: int, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        import threading

        self.limit = limit
        self.period = period
        self.clock = clock
        self._events: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: int | None = None) -> None:
        limit = limit or self.limit
        with self._lock:
            now = self.clock()
            events = [t for t in self._events.get(key, []) if now - t < self.period]
            if len(events) >= limit:
                wait = self.period - (now - events[0])
                self._events[key] = events
                raise QuotaError(
                    f"rate limit: {limit} messages per {self.period:g}s; next slot in {wait:.1f}s",
                    reset_at=datetime.now(UTC) + timedelta(seconds=wait),
                )
            events.append(now)
            self._events[key] = events

    def release(self, key: str) -> None:
        """Give back the newest slot (the request never reached the remote)."""
        with self._lock:
            events = self._events.get(key)
            if events:
                events.pop()

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._events.clear()
            else:
                self._events.pop(key, None)
