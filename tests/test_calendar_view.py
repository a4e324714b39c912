"""The calendar's week view and what it shares between channels and requests: slot lists and
labels worked out once per distinct (slots, quiet hours), stored times parsed once per text,
nothing kept from one request to the next (real SQLite, Flask's test client)."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from console_fixtures import PASSWORD, login

from media_matrix import users
from media_matrix.calendar import slot_text, week_view
from media_matrix.config import load_settings
from media_matrix.models import Item, PackStatus
from media_matrix.store import open_store
from media_matrix.timeutil import now_iso, to_iso
from media_matrix.web import create_app, settle_heap

SH = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2030, 1, 7, tzinfo=SH)


def _channel(name: str, per_slot: int, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "type": "webhook",
        "county": "市级",
        "audience": ["public"],
        "slots": ["0 8,12 * * *"],
        "per_slot": per_slot,
        "url": "http://127.0.0.1:9/cms",
        "secret": "s",
        **extra,
    }


@pytest.fixture
def project(tmp_path: Path):
    """Two channels share their slot list (per_slot differs); the third has mornings only."""
    config = {
        "timezone": "Asia/Shanghai",
        "database": str(tmp_path / "mm.db"),
        "counties": {"华龙区": 720000},
        "channels": [
            _channel("a", 1),
            _channel("b", 3),
            _channel("c", 2, slots=["0 8 * * *"]),
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    settings = load_settings(path)
    store = open_store(settings.database)
    yield settings, store
    store.close()


def _pack(store, title: str) -> int:
    item = Item(
        guid=title,
        title=title,
        text=title,
        content_html=f"<p>{title}</p>",
        content_hash=f"h-{title}",
        county="市级",
    )
    return store.insert_pack("test", item, at=now_iso(), status=PackStatus.APPROVED)


def _book(store, pack: int, channel: str, at: datetime, *, slot: bool = True) -> int:
    return store.queue_delivery(
        pack, channel, scheduled_at=to_iso(at), slot_at=to_iso(at) if slot else None
    )


def test_channels_sharing_slots_keep_their_own_room_and_bookings(project):
    settings, store = project
    eight, noon = MONDAY.replace(hour=8), MONDAY.replace(hour=12)
    p1, p2, p3, p4 = (_pack(store, f"科普{i}") for i in range(1, 5))
    _book(store, p1, "a", eight)
    _book(store, p1, "b", eight)  # the same stored slot text on another channel
    _book(store, p2, "b", noon)
    _book(store, p3, "c", noon)  # no slot of c at noon
    _book(store, p4, "a", MONDAY.replace(hour=9, minute=17), slot=False)  # hand-timed

    view = {
        c["name"]: c
        for c in week_view(settings, store, MONDAY, MONDAY + timedelta(days=2), settings.channels)
    }

    def slots(name: str) -> list[tuple[str, str, int, int, list[int]]]:
        return [
            (s["at"], s["label"], s["capacity"], s["open"], [i["pack_id"] for i in s["items"]])
            for s in view[name]["slots"]
        ]

    times = [MONDAY.replace(hour=h) + timedelta(days=d) for d in (0, 1) for h in (8, 12)]
    heads = [(t.isoformat(timespec="seconds"), slot_text(t)) for t in times]
    assert slots("a") == [
        (*heads[0], 1, 0, [p1]),
        (*heads[1], 1, 1, []),
        (*heads[2], 1, 1, []),
        (*heads[3], 1, 1, []),
    ]
    assert slots("b") == [
        (*heads[0], 3, 2, [p1]),
        (*heads[1], 3, 2, [p2]),
        (*heads[2], 3, 3, []),
        (*heads[3], 3, 3, []),
    ]
    assert slots("c") == [(*heads[0], 2, 2, []), (*heads[2], 2, 2, [])]
    assert [(i["pack_id"], i["at"]) for i in view["c"]["other"]] == [
        (p3, noon.isoformat(timespec="seconds"))
    ]
    assert [(i["pack_id"], i["at"]) for i in view["a"]["other"]] == [
        (p4, "2030-01-07T09:17:00+08:00")
    ]
    assert view["b"]["other"] == []
    # one dict per channel and slot: filling one channel's slot never shows on another's
    assert view["a"]["slots"][1] is not view["b"]["slots"][1]


def test_calendar_shows_what_changed_since_the_last_request(project):
    settings, store = project
    users.add_user(settings, store, "ed", "editor", PASSWORD, by="test")
    client = create_app(settings, store, testing=True).test_client()
    login(client, "ed")
    url = f"/calendar?week={MONDAY.date()}"
    before = client.get(url).get_data(as_text=True)
    assert "新到的科普" not in before
    pack = _pack(store, "新到的科普")
    _book(store, pack, "b", MONDAY.replace(hour=12) + timedelta(days=1))
    after = client.get(url).get_data(as_text=True)
    assert after.count("新到的科普") == 1
    left = '<span class="muted">可排 {}</span>'.format  # b's noon slot on day 2: 3 -> 2 left
    assert after.count(left(2)) == before.count(left(2)) + 1
    assert after.count(left(3)) == before.count(left(3)) - 1


def test_settle_heap_sets_start_up_objects_apart():
    before = gc.get_freeze_count()
    kept = [{"made": "at start-up"} for _ in range(100)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
