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


def _slot_heads(slots: Sequence[datetime], tz: Any) -> list[tuple[datetime, str, str]]:
    """(UTC instant, local ISO text, label) of each slot: computed once per slot list, then
    shared by every channel that has it (a week of 40 channels repeats the same few dozen)."""
    out = []
    for s in slots:
        local = s.astimezone(tz)
        out.append((s.astimezone(UTC), local.isoformat(timespec="seconds"), slot_text(local)))
    return out


def _stamp(raw: str, tz: Any, seen: dict[str, tuple[datetime, str] | None]) -> Any:
    """(UTC instant, local ISO text) of a stored time, parsed once per distinct text (the
    bookings of one slot share it); None when absent."""
    if raw not in seen:
        at = from_iso(raw)
        seen[raw] = (
            None
            if at is None
            else (at.astimezone(UTC), at.astimezone(tz).isoformat(timespec="seconds"))
        )
    return seen[raw]


def place_bookings(
    slots: Sequence[datetime],
    capacity: int,
    bookings: Iterable[dict[str, Any]],
    tz: Any,
    *,
    heads: Sequence[tuple[datetime, str, str]] | None = None,
    stamps: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Put each booking in its slot (by ``slot_at``, else ``scheduled_at``); pure.
    Returns (slots with items and room left, bookings at no slot time). ``heads`` (the
    slots' :func:`_slot_heads`) and ``stamps`` (parsed times) may be shared between calls."""
    if heads is None:
        heads = _slot_heads(slots, tz)
    seen: dict[str, Any] = {} if stamps is None else stamps
    table = {
        key: {"at": at, "label": label, "capacity": capacity, "items": []}
        for key, at, label in heads
    }
    other = []
    for row in bookings:
        stamp = _stamp(row["slot_at"] or row["scheduled_at"], tz, seen)
        if stamp is None:
            continue
        item = {
            "kind": "booked",
            "delivery_id": row["id"],
            "pack_id": row["pack_id"],
            "title": row["title"],
            "status": row["status"],
            "urgent": bool(row["urgent"]),
            "at": stamp[1],
        }
        slot = table.get(stamp[0])
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
    # channels often share their slots: their times and labels are worked out once
    cache: dict[tuple[Any, ...], tuple[list[datetime], list[tuple[datetime, str, str]]]] = {}
    stamps: dict[str, Any] = {}
    for chan in channels:
        key = (tuple(chan.slots), chan.quiet_hours)
        if key not in cache:
            times = planner.slot_times(PlanChannel.from_config(chan), start, end, tz)
            cache[key] = (times, _slot_heads(times, tz))
        times, heads = cache[key]
        slots, other = place_bookings(
            times, chan.per_slot, by_channel.get(chan.name, []), tz, heads=heads, stamps=stamps
        )
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
