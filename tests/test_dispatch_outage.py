"""Outage test: one media centre answers 503 for a while, then recovers.

The dispatcher runs the way the daemon drives it (``dispatch_due`` again and again). Afterwards:
everything is delivered, once; the attempt log shows the failing channel's attempts spaced by
the backoff the policy chose (each gap at least the chosen delay, and not much more), the delays
growing from ``backoff_base`` toward ``backoff_cap``; and the healthy channel, which shares the
worker pool, finished all its deliveries while the outage was still going on.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).parent))

from test_dispatch import add_packs, queue, webhook, write_settings  # noqa: E402

from media_matrix.dispatch import dispatch_due  # noqa: E402
from media_matrix.sandbox import Faults, MediaCentreSandbox  # noqa: E402
from media_matrix.sandbox.common import Running  # noqa: E402
from media_matrix.store import open_store  # noqa: E402
from media_matrix.timeutil import from_iso  # noqa: E402

OUTAGE = 3.0
BASE, CAP = 0.2, 1.0
SLACK = 0.6  # how late a due retry may start: loop tick plus a round blocked on in-flight sends


def test_outage_backs_off_recovers_and_does_not_hold_up_other_channels(tmp_path):
    down = MediaCentreSandbox(faults=Faults(latency=0.1, error_rate=1.0))
    healthy = MediaCentreSandbox(faults=Faults(latency=0.1))
    servers = [Running(down, "127.0.0.1", 0), Running(healthy, "127.0.0.1", 0)]
    try:
        settings = write_settings(
            tmp_path,
            [
                webhook("down", down.url(), concurrency=2),
                webhook("healthy", healthy.url(), concurrency=2),
            ],
            workers=4,
            backoff_base=BASE,
            backoff_cap=CAP,
            max_attempts=40,
            lease_seconds=10,
        )
        store = open_store(settings.database)
        packs = add_packs(store, 10)
        down_ids = queue(store, packs[:6], "down")
        healthy_ids = queue(store, packs, "healthy")

        ended: list[datetime] = []

        def recover() -> None:
            down.faults.error_rate = 0.0
            ended.append(datetime.now(UTC))

        timer = threading.Timer(OUTAGE, recover)
        started = datetime.now(UTC)
        timer.start()
        rng = random.Random(7)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            dispatch_due(settings, store, rng=rng)
            if not store.list_deliveries(status=["queued", "failed", "sending"]):
                break
            time.sleep(0.05)
        timer.join()
        outage_end = ended[0]

        # everything delivered, exactly once per delivery
        rows = store.list_deliveries()
        assert {r["status"] for r in rows} == {"delivered"}
        for r in rows:
            centre = down if r["channel"] == "down" else healthy
            assert centre.manuscripts[r["uid"]]["id"] == r["remote_id"]
        assert len(down.manuscripts) == len(down_ids)
        assert len(healthy.manuscripts) == len(healthy_ids)

        # the healthy channel was not held up: done long before the outage ended
        healthy_rows = store.list_deliveries(ids=healthy_ids)
        last_healthy = max(from_iso(r["delivered_at"]) for r in healthy_rows)
        assert last_healthy < outage_end
        assert (last_healthy - started).total_seconds() < 1.5  # 10 x 0.1 s over 2 slots
        assert all(r["attempts"] == 1 for r in healthy_rows)

        # the failing channel: 503s spaced by the backoff, then delivered after the outage
        first_delays, later_delays = [], []
        for r in store.list_deliveries(ids=down_ids):
            log = store.attempts_of(r["id"])
            assert [a["outcome"] for a in log[:-1]] == ["retry"] * (len(log) - 1)
            assert log[-1]["outcome"] == "delivered" and log[-1]["http_status"] == 201
            assert all(a["http_status"] == 503 for a in log[:-1])
            assert len(log) >= 3  # a 3 s outage with delays of at most 1 s
            assert from_iso(log[-1]["started_at"]) >= outage_end
            assert from_iso(log[-2]["started_at"]) < outage_end
            previous = None
            for before, after in zip(log, log[1:], strict=False):
                delay = before["retry_in"]
                # the policy: decorrelated jitter between base and 3 x the previous delay, capped
                upper = min(CAP, 3 * (previous if previous is not None else BASE))
                assert BASE - 1e-6 <= delay <= upper + 1e-3
                finished = from_iso(before["finished_at"])
                assert abs((from_iso(before["retry_at"]) - finished).total_seconds() - delay) < 0.01
                gap = (from_iso(after["started_at"]) - finished).total_seconds()
                assert delay - 0.01 <= gap <= delay + SLACK, (r["id"], before["n"], gap, delay)
                previous = delay
            delays = [a["retry_in"] for a in log[:-1]]
            first_delays.append(delays[0])
            later_delays += delays[2:]
        assert later_delays and mean(later_delays) > mean(first_delays)  # backing off
        assert down.hits and all(n == 1 for n in down.hits.values())  # 503s came before dedupe
        store.close()
    finally:
        for server in servers:
            server.stop()
