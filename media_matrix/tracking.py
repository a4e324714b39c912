"""Tracked-link services between the store and its users (dispatch, the public face, the CLI).

* ``attach_links``: every item about to be rendered gets its delivery's tracked link
  (created on first render, the same on every retry) as ``item.track_url``.
* ``redirect_target``: where ``/s/{code}`` sends a visitor now.
* ``officer_week``: an officer's packs of a week with their personal links (page and kit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from media_matrix.config import Settings
from media_matrix.links import (
    PublicCopy,
    best_public_url,
    new_code,
    officer_url,
    track_url,
)
from media_matrix.models import Pack
from media_matrix.render import shorten, strip_html
from media_matrix.store import Store
from media_matrix.timeutil import to_iso, utcnow


def attach_links(store: Store, base_url: str, items: Iterable[Any]) -> None:
    """Give each outgoing item (``delivery_id``) the tracked link of its delivery."""
    items = list(items)
    if not items:
        return
    codes = store.delivery_links([item.delivery_id for item in items], new_code)
    for item in items:
        item.track_url = track_url(base_url, codes[item.delivery_id])


def delivery_track_urls(store: Store, base_url: str, delivery_ids: Sequence[int]) -> dict[int, str]:
    """Tracked links of deliveries that have one (rendered at least once)."""
    out = {}
    for delivery_id in delivery_ids:
        for link in store.links_of(delivery_id=delivery_id):
            out[delivery_id] = track_url(base_url, link["code"])
    return out


def channel_types(settings: Settings) -> dict[str, str]:
    return {c.name: c.type for c in settings.channels}


def redirect_target(store: Store, types: dict[str, str], link: dict[str, Any]) -> str | None:
    """The best public URL of the link's pack (see ``links.best_public_url``), never the
    link's own delivery: 阅读原文 under a WeChat article must not lead back to the article."""
    copies = [
        PublicCopy(types.get(row["channel"], ""), row["url"], row["delivered_at"])
        for row in store.public_copies(link["pack_id"])
        if row["id"] != link["delivery_id"]
    ]
    return best_public_url(copies, link["source_url"])


# -- officers -----------------------------------------------------------------------------------


@dataclass
class OfficerEntry:
    """One pack on an officer's page or sheet: what to copy, and the officer's own link."""

    pack: Pack
    link: str

    @property
    def copy_text(self) -> str:
        """Ready to paste into a WeChat group: title, one-line summary, the personal link."""
        summary = shorten(strip_html(self.pack.summary) or strip_html(self.pack.text), 80)
        lines = [f"【科普】{self.pack.title}"]
        if summary:
            lines.append(summary)
        lines.append(f"阅读全文：{self.link}")
        return "\n".join(lines)


def week_bounds(
    settings: Settings, week: str | None, now: datetime | None = None
) -> tuple[str, str]:
    """UTC bounds of an ISO week like ``2026-W48`` in the config zone, or of the last 7 days."""
    tz = settings.tz
    if week:
        year, _, number = week.upper().partition("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
        start = datetime.combine(monday, time(0), tz)
        return to_iso(start) or "", to_iso(start + timedelta(days=7)) or ""
    end = now or utcnow()
    return to_iso(end - timedelta(days=7)) or "", to_iso(end + timedelta(seconds=1)) or ""


def officer_week(
    settings: Settings, store: Store, officer: dict[str, Any], since: str, until: str
) -> list[OfficerEntry]:
    """The officer's packs of the period, each with the officer's personal tracked link."""
    pack_ids = store.packs_for_officer(officer["county"], officer["groups"], since, until)
    codes = store.officer_links(officer["id"], pack_ids, new_code)
    packs = {p.id: p for p in store.list_packs(ids=pack_ids, full=True)} if pack_ids else {}
    base = settings.public.base_url
    return [OfficerEntry(packs[i], track_url(base, codes[i])) for i in pack_ids if i in packs]


def officer_page_url(settings: Settings, officer: dict[str, Any]) -> str:
    return officer_url(settings.public.base_url, officer["token"])
