"""What the dispatcher hands an adapter and what comes back: the rendered message, the send
result and the typed errors (see :mod:`media_matrix.adapters.base` for the contract).

Its own module so the renderer (which builds messages) and the statistics (which catch the
errors of a WeChat call) need not import the adapters, and the adapters need not import back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from media_matrix.models import Pack

EXCERPT_MAX = 500

Checkpoint = Callable[[dict[str, Any]], None]
"""Called with the whole cumulative remote state; the dispatcher persists it before returning."""


def excerpt(text: str | bytes | None, limit: int = EXCERPT_MAX) -> str:
    """At most ``limit`` characters of a response, for the attempt log."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- what goes in -------------------------------------------------------------------------------


@dataclass
class OutgoingItem:
    """One delivery as the dispatcher hands it over: the pack and the delivery's stable ids."""

    delivery_id: int
    delivery_uid: str  # uuid hex, stable across retries: the Idempotency-Key
    pack: Pack
    scheduled_at: datetime | None = None
    track_url: str | None = None  # the delivery's tracked link (None: not tracked, e.g. preview)

    @property
    def link(self) -> str:
        """The link to show for this item: its tracked link, else the pack's own URL."""
        return self.track_url or self.pack.url or ""


@dataclass
class Message:
    """A rendered unit of sending: one remote call sequence, one result.

    A WeChat slot bundles up to 8 items into one draft; a WeCom news message may carry up to 8;
    webhook and outbox messages carry exactly one.

    ``parts`` are message-level outputs keyed by output name (the template name without ``.j2``,
    e.g. ``"news.json"``, ``"ticker.txt"``); ``item_parts[i]`` are per-item outputs aligned with
    ``items`` (e.g. ``{"article.html": ...}`` for WeChat); ``fields`` holds computed values the
    adapter needs besides the rendered text (e.g. ``fields["articles"]`` for WeChat).
    """

    channel: str
    type: str
    items: list[OutgoingItem]
    parts: dict[str, str | bytes] = field(default_factory=dict)
    item_parts: list[dict[str, str]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def uids(self) -> list[str]:
        return [item.delivery_uid for item in self.items]

    @property
    def key(self) -> str:
        """A stable key for the whole message: the uid itself for one item, else a digest."""
        if len(self.items) == 1:
            return self.items[0].delivery_uid
        return hashlib.sha1("\n".join(self.uids).encode()).hexdigest()


# -- what comes out -----------------------------------------------------------------------------


@dataclass
class SendResult:
    """What the remote said. ``submitted`` results are polled with ``Adapter.poll``."""

    status: Literal["delivered", "submitted"]
    remote_id: str | None = None
    url: str | None = None
    http_status: int | None = None
    excerpt: str = ""
    item_urls: list[str | None] = field(default_factory=list)  # aligned with Message.items
    state: dict[str, Any] = field(default_factory=dict)  # final remote state, to persist

    def __post_init__(self) -> None:
        self.excerpt = excerpt(self.excerpt)


class AdapterError(Exception):
    """Base of every error an adapter raises on purpose."""

    outcome: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        excerpt_text: str = "",
        errcode: int | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.excerpt = excerpt(excerpt_text)
        self.errcode = errcode


class RetryableError(AdapterError):
    """Transient: network, timeout, 5xx, 408/429, WeChat -1. Back off and try again."""

    outcome = "retry"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after  # seconds the remote asked us to wait, if it said


class QuotaError(AdapterError):
    """A quota or rate limit: nothing is wrong with the message; send again after ``reset_at``."""

    outcome = "quota"

    def __init__(self, message: str, *, reset_at: datetime, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_at = reset_at


class AuthError(AdapterError):
    """Bad credentials or missing permission: stop the channel and alert an operator."""

    outcome = "auth"


class RejectedError(AdapterError):
    """The remote refused the content for good: do not retry."""

    outcome = "rejected"


class AmbiguousError(AdapterError):
    """A previous attempt may or may not have reached the remote and it cannot be told: unknown."""

    outcome = "unknown"


class NothingSent(Exception):  # noqa: N818 - an outcome, not a failure
    """Raised by ``reconcile``: certainly nothing public happened, so sending again is safe."""
