"""Quotas on the day things are sent, over a simulated week.

A clock steps through seven days hour by hour on a real SQLite file with real sandboxes on
loopback (WeChat, a media-centre webhook that fails now and then, an outbox folder). Every path
that queues is used: the planner's daily fill of the slots, urgent packs, manual batches
(``run --once``), editors' hand-timed deliveries (whose full day only warns) and retries after
failures. Whatever was queued, on no local day does a channel send more than its daily_quota,
counted from the attempt log (the moment each send started), not from the bookings.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).parent))

from test_dispatch import add_packs, outbox, webhook, wechat, write_settings  # noqa: E402

from media_matrix import review, scheduling  # noqa: E402
from media_matrix.dispatch import dispatch_due, sweep  # noqa: E402
from media_matrix.flow import run_once  # noqa: E402
from media_matrix.sandbox import MediaCentreSandbox, SandboxServers, WechatSandbox  # noqa: E402
from media_matrix.store import open_store  # noqa: E402
from media_matrix.timeutil import from_iso  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2031, 3, 3, 0, 0, tzinfo=TZ)  # a Monday, in the future (no --at in the past)
QUOTAS = {"wx": 4, "cms": 4, "screen": 5}


def sends_per_day(store) -> Counter:
    """(channel, local day) -> deliveries whose send went out that day, from the attempt log."""
    rows = store.query(
        """
        SELECT d.channel, a.delivery_id, a.started_at FROM attempts a
        JOIN deliveries d ON d.id = a.delivery_id
        WHERE a.kind IN ('send', 'recover') AND a.outcome IN ('delivered', 'submitted')
        """
    )
    return Counter((r["channel"], from_iso(r["started_at"]).astimezone(TZ).date()) for r in rows)


def test_no_local_day_sends_more_than_the_daily_quota(tmp_path):
    centre = MediaCentreSandbox()
    wx = WechatSandbox(publish_polls=1, publish_seconds=0.0)
    with SandboxServers(wechat=wx, mediacentre=centre) as sb:
        settings = write_settings(
            tmp_path,
            [
                wechat("wx", sb.wechat.base_url, slots=["0 8 * * *"], per_slot=4, daily_quota=4),
                webhook("cms", centre.url(), slots=["0 9,15 * * *"], per_slot=2, daily_quota=4),
                outbox(
                    "screen",
                    tmp_path / "screen",
                    slots=["0 8,12,18 * * *"],
                    per_slot=2,
                    daily_quota=5,
                ),
            ],
            backoff_base=600,
            backoff_cap=3600,
            max_attempts=6,
        )
        store = open_store(settings.database)
        packs = add_packs(store, 120, prefix="W")
        spare = iter(packs[100:])
        for hour in range(7 * 24):
            now = START + timedelta(hours=hour)
            day, at = hour // 24, now.hour
            if at == 0:  # the planner books the day's slots
                scheduling.queue_auto(settings, store, 1, now, include_urgent=False)
            if at == 10:  # an operator's manual batch, every day
                run_once(settings, store, now=now, publish_wait=0)
            if at == 11 and day in (1, 4):  # an urgent warning
                pack = next(spare)
                review.set_urgent(store, pack, True, "值班")
                scheduling.queue_urgent(settings, store, now, pack_ids=[pack])
            if at == 13 and day in (2, 3):  # an editor's hand-timed deliveries on a full day
                for channel in ("cms", "screen", "wx"):
                    scheduling.queue_pack(
                        settings, store, next(spare), channel, now + timedelta(hours=1), now=now
                    )
            if at == 14 and day in (0, 5):  # the media centre stumbles: retries follow
                centre.faults.fail_next(3, status=503)
            dispatch_due(settings, store, now=now)
            sweep(settings, store, now=now)
        counts = sends_per_day(store)
        store.close()
    for (channel, day), n in sorted(counts.items()):
        assert n <= QUOTAS[channel], (channel, day, n)
    # the week was busy enough to reach the quotas (else the check proves nothing)
    for channel, quota in QUOTAS.items():
        assert max(n for (c, _), n in counts.items() if c == channel) == quota, channel
    assert len({d for (_, d) in counts}) == 7


def test_a_manual_batch_is_booked_when_it_is_sent(tmp_path):
    """`run --once` at 10:00 on a channel whose slot is tomorrow 08:00: the batch is booked now
    (today, counted in today's quota), not into tomorrow's slot."""
    with SandboxServers() as sb:
        settings = write_settings(
            tmp_path,
            [webhook("cms", sb.mediacentre.url(), slots=["0 8 * * *"], per_slot=2, daily_quota=3)],
        )
        store = open_store(settings.database)
        add_packs(store, 6, prefix="M")
        now = datetime(2031, 3, 3, 10, 0, tzinfo=TZ)
        report = run_once(settings, store, now=now, publish_wait=0)
        assert len(report.deliveries) == 2  # per_slot holds for the batch
        for row in report.deliveries:
            assert row["status"] == "delivered"
            assert from_iso(row["slot_at"]).astimezone(TZ) == now
        again = run_once(settings, store, now=now + timedelta(hours=1), publish_wait=0)
        assert len(again.deliveries) == 1  # today's quota (3) holds across manual batches
        view = scheduling.plan_view(settings, store, 2, "cms", now + timedelta(hours=2))
        tomorrow = [s for c in view["channels"] for s in c["slots"]][0]
        assert len([i for i in tomorrow["items"] if i["kind"] == "proposal"]) == 2
        store.close()
