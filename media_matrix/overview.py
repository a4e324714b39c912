"""What `status` and the console's home page show: feeds' health, queue depth per channel,
the next slots, the last errors and the daemon's lock, in one read of the store.

It reads across the flow (ingest's feed state, scheduling's queue, the daemon's lock), so it
sits above those modules rather than inside any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from media_matrix import planner
from media_matrix.config import Settings
from media_matrix.ingest import feed_overview
from media_matrix.instance import LOCK_NAME, describe_lock
from media_matrix.planner import PlanChannel
from media_matrix.store import Store
from media_matrix.timeutil import utcnow


def status_view(settings: Settings, store: Store, now: datetime | None = None) -> dict[str, Any]:
    """Feeds' health, queue depth per channel, the next slots, the last errors, the daemon."""

    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = (now or utcnow()).astimezone(UTC)
    tz = settings.tz
    feeds = [
        {**row, "item_errors": len(row["item_errors"])} for row in feed_overview(settings, store)
    ]
    counts = store.delivery_counts()
    next_queued = store.next_queued()
    channels = []
    for chan in settings.channels:
        by_status = counts.get(chan.name, {})
        upcoming = planner.next_slots(PlanChannel.from_config(chan), now, 3, tz)
        channels.append(
            {
                "name": chan.name,
                "type": chan.type,
                "county": chan.county,
                "enabled": chan.enabled,
                "queued": by_status.get("queued", 0),
                "in_flight": by_status.get("sending", 0) + by_status.get("submitted", 0),
                "failed": by_status.get("failed", 0),
                "dead": by_status.get("dead", 0),
                "unknown": by_status.get("unknown", 0),
                "delivered": by_status.get("delivered", 0),
                "next_queued_at": next_queued.get(chan.name),
                "next_slots": [s.astimezone(tz).isoformat(timespec="seconds") for s in upcoming],
            }
        )
    errors = [
        {
            "kind": "feed",
            "subject": f["name"],
            "error": f["last_error"],
            "at": f["last_fetch_at"],
        }
        for f in feeds
        if f["last_error"]
    ]
    errors += [
        {
            "kind": "feed_item",
            "subject": f"{e['feed']}: {e['subject']}",
            "error": e["error"],
            "at": e["at"],
        }
        for e in store.item_errors()
    ]
    errors += [
        {
            "kind": "delivery",
            "subject": f"投递 {d['id']} ({d['channel']}, 内容包 {d['pack_id']})",
            "error": d["last_error"],
            "at": d["updated_at"],
            "status": d["status"],
        }
        for d in store.recent_delivery_errors(10)
    ]
    errors.sort(key=lambda e: e["at"] or "", reverse=True)
    return {
        "now": now.astimezone(tz).isoformat(timespec="seconds"),
        "timezone": settings.timezone,
        "daemon": describe_lock(settings, store.get_lock(LOCK_NAME)),
        "packs": store.count_packs_by_status(),
        "feeds": feeds,
        "channels": channels,
        "errors": errors[:20],
    }
