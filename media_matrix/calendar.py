"""The console calendar: a channel's slots over a window with what is booked in each. Reads
only the window's deliveries (the planner's proposals are computed separately, by
``scheduling.plan_view``, because they need every approved pack and booking).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from media_matrix import planner
from media_matrix.config import Settings
from media_matrix.planner import PlanChannel
from media_matrix.store import Store
from media_matrix.timeutil import from_iso, to_iso

WEEKDAYS = "一二三四五六日"


def slot_text(at: datetime) -> str:
    """'11-30 周一 09:00' (``at`` already in the config time zone)."""
    return f"{at:%m-%d} 周{WEEKDAYS[at.weekday()]} {at:%H:%M}"


def place_bookings(
    slots: Sequence[datetime], capacity: int, bookings: Iterable[dict[str, Any]], tz: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Put each booking in its slot (by ``slot_at``, else ``scheduled_at``); pure.
    Returns (slots with items and room left, bookings at no slot time)."""
    table = {}
    for s in slots:
        local = s.astimezone(tz)
        table[s.astimezone(UTC)] = {
            "at": local.isoformat(timespec="seconds"),
            "label": slot_text(local),
            "capacity": capacity,
            "items": [],
        }
    other = []
    for row in bookings:
        at = from_iso(row["slot_at"] or row["scheduled_at"])
        if at is None:
            continue
        item = {
            "kind": "booked",
            "delivery_id": row["id"],
            "pack_id": row["pack_id"],
            "title": row["title"],
            "status": row["status"],
            "urgent": bool(row["urgent"]),
            "at": at.astimezone(tz).isoformat(timespec="seconds"),
        }
        slot = table.get(at.astimezone(UTC))
        (slot["items"] if slot is not None else other).append(item)
    for slot in table.values():
        slot["open"] = max(capacity - len(slot["items"]), 0)
    return list(table.values()), other


def week_view(
    settings: Settings, store: Store, start: datetime, end: datetime, channels: Sequence[Any]
) -> list[dict[str, Any]]:
    """Per channel: its slots in [start, end) with their bookings, and bookings off-slot."""
    tz = settings.tz
    rows = store.bookings_between([c.name for c in channels], to_iso(start), to_iso(end))
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_channel.setdefault(row["channel"], []).append(row)
    out = []
    cache: dict[tuple[Any, ...], list[datetime]] = {}  # channels often share their slots
    for chan in channels:
        key = (tuple(chan.slots), chan.quiet_hours)
        if key not in cache:
            cache[key] = planner.slot_times(PlanChannel.from_config(chan), start, end, tz)
        times = cache[key]
        slots, other = place_bookings(times, chan.per_slot, by_channel.get(chan.name, []), tz)
        out.append(
            {
                "name": chan.name,
                "type": chan.type,
                "county": chan.county,
                "enabled": chan.enabled,
                "per_slot": chan.per_slot,
                "daily_quota": chan.daily_quota,
                "slots": slots,
                "other": other,
            }
        )
    return out
