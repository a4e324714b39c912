"""Planner benchmark (issue 4): plan 30 days for 10,000 approved packs across 200 channels, and
the same plan for 1,000 packs measured in the same run; the ratio shows how cost grows.

Run from the repository root:  python bench/planner.py

The daemon's slot-firing lateness (p50/p99 over >= 30 slots) is a separate benchmark; see
bench_daemon_lateness() at the bottom.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media_matrix.config import Campaign  # noqa: E402
from media_matrix.models import KEY_GROUPS, TOPICS  # noqa: E402
from media_matrix.planner import Booking, PlanChannel, PlanPack, plan  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 9, 10, 6, 0, tzinfo=TZ)  # 全国科普日 runs until 09-30: two campaign phases
DAYS = 30
CHANNELS = 200
SMALL, LARGE = 1_000, 10_000
REPEAT = 3
SEED = 20240910

COUNTIES = ["华龙区", "濮阳县", "清丰县", "南乐县", "范县", "台前县"]
SLOTS = [
    ("0 8 * * *",),
    ("0 8,12,18 * * *",),
    ("0 9,15 * * *",),
    ("30 7,11,17,20 * * *",),
    ("0 10 * * 1-5", "0 16 * * 6,0"),
    ("0 8,12,18 * * *", "30 21 * * *"),
]
CAMPAIGNS = [
    Campaign.model_validate(c)
    for c in (
        {"name": "全国科普日", "from": "09-01", "to": "09-30", "topics": ["frontier", "health"]},
        {"name": "科技活动周", "from": "05-18", "to": "05-25", "topics": ["industry", "digital"]},
        {"name": "防灾减灾日", "from": "05-10", "to": "05-16", "topics": ["disaster", "weather"]},
        {"name": "节水宣传周", "from": "03-22", "to": "03-28", "topics": ["water", "ecology"]},
    )
]


def make_channels(rng: random.Random) -> list[PlanChannel]:
    channels = []
    for i in range(CHANNELS):
        audience = rng.sample(KEY_GROUPS, rng.randint(1, 2))
        if rng.random() < 0.4:
            audience.append("public")
        slots = rng.choice(SLOTS)
        quiet = "22:00-07:00" if rng.random() < 0.3 and "30 21 * * *" not in slots else None
        channels.append(
            PlanChannel(
                name=f"channel-{i:03d}",
                county="市级" if rng.random() < 0.2 else rng.choice(COUNTIES),
                audience=tuple(audience),
                slots=slots,
                per_slot=rng.randint(1, 3),
                daily_quota=rng.choice([None, 2, 4, 6]),
                quiet_hours=quiet,
                enabled=rng.random() > 0.05,
            )
        )
    return channels


def make_packs(rng: random.Random, n: int) -> list[PlanPack]:
    topics = list(TOPICS)
    packs = []
    for pid in range(1, n + 1):
        groups = rng.sample(KEY_GROUPS, rng.randint(1, 2)) if rng.random() < 0.8 else ["public"]
        packs.append(
            PlanPack(
                id=pid,
                groups=tuple(groups),
                topics=tuple(rng.sample(topics, rng.randint(1, 2))),
                county="市级" if rng.random() < 0.3 else rng.choice(COUNTIES),
                published_at=NOW.astimezone(UTC) - timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
                urgent=rng.random() < 0.01,
            )
        )
    return packs


def make_bookings(rng: random.Random, packs: list[PlanPack], channels: list[PlanChannel]):
    """One existing delivery per five packs, spread over the coming window and the past week."""
    out = []
    for _ in range(len(packs) // 5):
        at = NOW + timedelta(hours=rng.randint(-7 * 24, DAYS * 24))
        status = rng.choice(["queued", "queued", "delivered", "failed", "cancelled"])
        out.append(Booking(rng.choice(packs).id, rng.choice(channels).name, at, status))
    return out


def measure(n_packs: int) -> tuple[float, int]:
    rng = random.Random(SEED)
    channels = make_channels(rng)
    packs = make_packs(rng, n_packs)
    bookings = make_bookings(rng, packs, channels)
    best = float("inf")
    count = 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = plan(packs, channels, bookings, now=NOW, days=DAYS, tz=TZ, campaigns=CAMPAIGNS)
        best = min(best, time.perf_counter() - started)
        count = len(result)
    return best, count


def bench_planner() -> None:
    print(f"planner: {DAYS} days, {CHANNELS} channels, best of {REPEAT} runs")
    small_s, small_n = measure(SMALL)
    large_s, large_n = measure(LARGE)
    for packs, seconds, assigned in ((SMALL, small_s, small_n), (LARGE, large_s, large_n)):
        print(
            f"  {packs:>6,} packs: {seconds:7.3f} s  {assigned:>6,} assignments  "
            f"{seconds / max(assigned, 1) * 1e6:6.1f} us/assignment"
        )
    ratio = large_s / small_s
    print(f"  ratio {LARGE:,}/{SMALL:,} packs: {ratio:.2f}x time for {LARGE // SMALL}x packs")
    print(f"  assignments ratio: {large_n / max(small_n, 1):.2f}x")
    verdict = "at most linear" if ratio <= LARGE / SMALL * 1.5 else "WORSE THAN LINEAR"
    print(f"  growth: {verdict}")


def bench_daemon_lateness() -> None:
    """The real daemon's slot-firing lateness p50/p99 over >= 30 slots (target p99 < 1 s), with
    a bare sleep-until-target loop as the same-run baseline; see bench/daemon_lateness.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from daemon_lateness import main as daemon_lateness

    daemon_lateness()


if __name__ == "__main__":
    bench_planner()
    bench_daemon_lateness()
