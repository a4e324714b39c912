"""What every console view shares: the settings and store of the app, the signed-in user,
the permission marker each view carries, county scope, and small formatting helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, current_app, g, request

from media_matrix import orders, users
from media_matrix.config import Settings
from media_matrix.models import DELIVERY_STATUS_LABELS
from media_matrix.store import Store
from media_matrix.timeutil import from_iso, local_text

F = TypeVar("F", bound=Callable[..., Any])
PAGE_SIZE = 50


def needs(action: str) -> Callable[[F], F]:
    """Mark a view with the permission it needs (a key of users.PERMISSIONS). The app checks
    it before the view runs; a state-changing view without a mark is refused (deny by default).
    """

    def mark(func: F) -> F:
        func._needs = action  # type: ignore[attr-defined]
        return func

    return mark


def settings() -> Settings:
    return current_app.config["MM_SETTINGS"]


def store() -> Store:
    return current_app.config["MM_STORE"]


def user() -> dict[str, Any]:
    return g.user


def by() -> str:
    """Who acts: the signed-in user's name, the ``by`` of every audited action."""
    return str(g.user["name"])


def can(action: str) -> bool:
    return g.get("user") is not None and users.allowed(g.user["role"], action)


def county_scope() -> str | None:
    """The county the signed-in user is bound to (None: the city level, sees every county):
    what /requests and /officers show and act on."""
    u = g.user
    return None if orders.is_city_user(u) else u.get("county")


def scoped_channels() -> list[str] | None:
    """Channel names the user may see and act on in the delivery log; None: all of them."""
    u = g.get("user")
    if not u or u["role"] != "operator" or not u.get("county"):
        return None
    return [c.name for c in settings().channels if c.county == u["county"]]


def require_channel(channel: str) -> None:
    """403 unless the user's county scope covers this channel."""
    allowed = scoped_channels()
    if allowed is not None and channel not in allowed:
        abort(403)


def local(at: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if not at:
        return ""
    return local_text(at, settings().tz, fmt)


WEEKDAYS = "一二三四五六日"


def slot_label(at: Any) -> str:
    """'11-30 周一 09:00' in the config time zone."""
    text = local(at, "%m-%d %H:%M")
    when = from_iso(at) if isinstance(at, str) else at
    if not text or when is None:
        return text
    day, clock = text.split(" ")
    return f"{day} 周{WEEKDAYS[when.astimezone(settings().tz).weekday()]} {clock}"


def page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def page_count(total: int) -> int:
    """Pages of ``PAGE_SIZE`` rows that ``total`` rows fill (at least one, shown empty)."""
    return max(1, -(-total // PAGE_SIZE))


def form_ids(name: str = "ids") -> list[int]:
    """Integer ids from a form list; anything else is a bad request."""
    out = []
    for raw in request.form.getlist(name):
        if not raw.strip().isdigit():
            abort(400)
        out.append(int(raw))
    return out


def delivery_status(status: str) -> str:
    """A delivery status as editors read it (the status itself when it has no label)."""
    return DELIVERY_STATUS_LABELS.get(status, status)


def channel_title(name: str) -> str:
    return settings().channel_title(name)


def safe_url(url: Any) -> str:
    """Links a stranger wrote (feeds, remote answers) only as http(s); anything else is
    neutralised ("javascript:", "data:", ...)."""
    text = str(url or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else "#"
