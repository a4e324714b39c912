"""Console benchmark: 100,000 packs and 1,000,000 deliveries; p50/p95 server time of the main
pages beside the raw SQL that reads the same rows, measured in the same run.

    python3 bench/web.py                     # build a fresh database in a temp folder, measure
    python3 bench/web.py --db /tmp/web.db    # keep (and reuse) the database
    python3 bench/web.py --packs 20000 --deliveries 200000   # smaller

Server time: the WSGI app called in process through Flask's test client (no socket), signed in
as an admin, --repeat requests per page. Targets: every page p95 < 300 ms and within 3x its
raw SQL. Two floor rows (no target) measured in the same run: an empty-body route and an empty
page extending base.html, through the same sign-in and hooks: what any page costs before it
reads a row. The app's start-up objects are frozen out of the garbage collector first
(``settle_heap``), as ``serve`` does.

What each raw baseline reads (the rows and checks its page cannot do without):
    /calendar             the week's live bookings from now to the seventh local midnight (the
                          page's window; it read to now + 7 days before), with the columns the
                          grid shows (urgent, scheduled time) in its order (added Nov 2026).
    /calendar/proposals   the bookings counting in the window by slot time *or* scheduled time
                          (a retried delivery keeps its slot: the planner must count both), with
                          the columns it reads (claim and retry times); then, for the window's
                          free slots, that many approved candidates in rank order, each checked
                          against one channel's live deliveries (the planner may not propose a
                          pack already on the channel). Until Nov 2026 this baseline read only
                          the scheduled-time range, no candidate for the current week
                          ("fully booked": but today's remaining slots are free, the bench books
                          days 1-14) and the free week's candidates without that check: each
                          skipped reads its page cannot do without. The free slots are counted
                          untimed from the database, so a --db reused on a later day stays
                          honest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

COUNTIES = {"华龙区": 720000, "濮阳县": 1050000, "清丰县": 650000, "南乐县": 500000,
            "范县": 510000, "台前县": 370000}  # fmt: skip
CITY = "市级"
ZONE = ZoneInfo("Asia/Shanghai")
GROUPS = ("youth", "farmers", "workers", "seniors", "officials", "public")
TOPICS = ("health", "food_safety", "water", "safety", "fire", "weather", "disaster", "agriculture")
CHANNELS = 40
WORDS = ("防汛", "抗旱", "一氧化碳", "中毒", "消防", "安全", "节水", "灌溉", "疫苗", "流感",
         "寒潮", "预警", "农药", "食品", "谣言", "核查", "人工智能", "地震", "避险", "湿地",
         "秸秆", "禁烧", "老年人", "防跌倒", "近视", "防控", "电信诈骗", "量子计算", "心脑血管",
         "大棚")  # fmt: skip
QUERY = "地下水回补"  # in 1% of the packs: a search an editor makes
COMMON_QUERY = "人工智能"  # in most of them: the worst case
TARGET_MS = 300.0
TARGET_RATIO = 3.0


def write_config(folder: Path, db: Path) -> Path:
    import yaml

    counties = [*COUNTIES, CITY]
    channels = []
    for i in range(CHANNELS):
        channels.append(
            {
                "name": f"ch{i:02d}",
                "type": "webhook",
                "county": counties[i % len(counties)],
                "audience": ["public", GROUPS[i % 5]],
                "reach": 1000 + i * 97,
                "slots": ["0 8,12,18 * * *"],
                "per_slot": 2,
                "url": "http://127.0.0.1:9/cms",
                "secret": "s",
            }
        )
    cfg = {"timezone": "Asia/Shanghai", "database": str(db), "counties": COUNTIES,
           "channels": channels}  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _text(i: int, n: int) -> str:
    return "，".join(WORDS[(i * 7 + k * 11) % len(WORDS)] + "知识要点" for k in range(n))


def build(db: Path, n_packs: int, n_deliveries: int, now: datetime) -> None:
    """Everything in one transaction with executemany (the FTS index fills through its
    triggers, as it does in production)."""
    from media_matrix.store import open_store

    store = open_store(db)
    conn = store.conn
    conn.execute("BEGIN")
    start = now - timedelta(days=330)
    packs = []
    for i in range(1, n_packs + 1):
        at = (start + timedelta(seconds=i * 360 * 86400 // n_packs)).isoformat()
        status = "approved" if i % 10 < 7 else ("new" if i % 10 < 9 else "rejected")
        county = CITY if i % 3 else list(COUNTIES)[i % 6]
        body = _text(i + 2, 12)
        rare = "地下水回补" if i % 100 == 0 else ""
        packs.append((i, f"g{i}", f"科普{i}：{_text(i, 2)}{rare}", _text(i + 1, 3), body,
                      f"<p>{body}</p>", county, at, at, at, f"h{i}", status))  # fmt: skip
    conn.executemany(
        "INSERT INTO packs (id, guid, title, summary, text, content_html, county, published_at,"
        " fetched_at, updated_at, content_hash, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        packs,
    )
    conn.executemany(
        "INSERT INTO pack_sources (pack_id, feed, guid, url, item_hash, first_seen_at,"
        " last_seen_at) VALUES (?, 'kepu-china', ?, NULL, ?, ?, ?)",
        [(p[0], p[1], p[10], p[8], p[8]) for p in packs],
    )
    tags = []
    for i in range(1, n_packs + 1):
        tags.append((i, "group", GROUPS[i % len(GROUPS)], "bench", packs[i - 1][8]))
        tags.append((i, "topic", TOPICS[i % len(TOPICS)], "bench", packs[i - 1][8]))
    conn.executemany(
        "INSERT INTO pack_tags (pack_id, kind, tag, score, reason, updated_at)"
        " VALUES (?, ?, ?, 1, ?, ?)",
        tags,
    )
    # the coming two weeks: queued bookings in the channels' slots, within per_slot (as the
    # planner books them); everything else over the past year in every status
    future = []
    day0 = now.astimezone(ZONE).date()
    for d in range(1, 15):
        for hour in (8, 12, 18):
            slot = datetime.combine(day0 + timedelta(days=d), clock(hour), ZONE)
            for c in range(CHANNELS):
                for _ in range(2):  # per_slot
                    future.append((slot.astimezone(UTC).isoformat(), f"ch{c:02d}"))
    n_past = n_deliveries - len(future)
    span = int((now - start).total_seconds())
    past = ("delivered", "delivered", "delivered", "failed", "dead", "unknown", "delivered",
            "cancelled")  # fmt: skip
    rows = []
    for i in range(n_deliveries):
        pack, edition = i % n_packs + 1, 1
        if i < n_past:
            iso = (start + timedelta(seconds=i * span // n_past)).isoformat()
            channel = f"ch{(i // n_packs + i) % CHANNELS:02d}"
            status = past[i % 8]
        else:
            iso, channel = future[i - n_past]
            status = "queued"
            pack, edition = (i * 7919) % n_packs + 1, 2  # a re-send: never a duplicate
        rows.append((i + 1, f"u{i}", pack, channel, edition, status, iso, iso, iso, iso,
                     iso if status == "delivered" else None,
                     "远端超时" if status in ("failed", "dead") else None))  # fmt: skip
    conn.executemany(
        "INSERT INTO deliveries (id, uid, pack_id, channel, edition, status, slot_at,"
        " scheduled_at, created_at, updated_at, delivered_at, last_error)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.execute(
        "INSERT INTO metrics (delivery_id, day, reads, shares, impressions, source, fetched_at)"
        " SELECT id, date(delivered_at, '+8 hours'), 0, 0, 1000, 'estimated', delivered_at"
        " FROM deliveries WHERE status = 'delivered'"
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    store.close()


def free_in(conn: Any, settings: Any, start: datetime, end: datetime) -> int:
    """Room left (per_slot less live bookings) in every channel's slots in [start, end): as
    many candidates as the planner reads at most there. Counted untimed, in Python, from the
    bookings' own times (the bench writes them without microseconds)."""
    from media_matrix import planner

    booked: Counter[tuple[str, datetime]] = Counter()
    for channel, slot_at in conn.execute(
        "SELECT channel, slot_at FROM deliveries WHERE status != 'cancelled'"
        " AND slot_at >= ? AND slot_at < ?",
        ((start - timedelta(days=1)).isoformat(), (end + timedelta(days=1)).isoformat()),
    ):
        booked[(channel, datetime.fromisoformat(slot_at))] += 1
    free = 0
    for chan in settings.channels:
        for slot in planner.slot_times(chan, start, end, settings.tz):
            free += max(chan.per_slot - booked[(chan.name, slot)], 0)
    return free


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm caches once
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--packs", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from console_fixtures import PASSWORD, login
    from flask import render_template_string

    from media_matrix import users
    from media_matrix.config import load_settings
    from media_matrix.store import open_store
    from media_matrix.web import create_app, settle_heap

    folder = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db = args.db or folder / "web.db"
    config = write_config(folder, db)
    now = datetime.now(UTC)
    if not db.exists():
        t0 = time.perf_counter()
        build(db, args.packs, args.deliveries, now)
        print(f"built {db}: {args.packs:,} packs, {args.deliveries:,} deliveries "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    settings = load_settings(config)
    store = open_store(db)
    if not store.list_users():
        users.add_user(settings, store, "bench", "admin", PASSWORD, by="bench")
    app = create_app(settings, store)
    # the floor: what a signed-in request costs with no row read (Flask, session, user, hooks)
    app.add_url_rule("/_bench/empty", "bench_empty", lambda: "")
    app.add_url_rule(
        "/_bench/chrome",
        "bench_chrome",
        lambda: render_template_string('{% extends "base.html" %}'),
    )
    client = app.test_client()
    login(client, "bench")
    settle_heap()  # as `serve` does once the app is made

    local_now = now.astimezone(settings.tz)
    month_start = local_now.date().replace(day=1) - timedelta(days=1)
    month_start = month_start.replace(day=1)
    month_end = local_now.date().replace(day=1) - timedelta(days=1)
    week_lo = now.isoformat()
    lo = datetime.combine(month_start, datetime.min.time(), settings.tz).isoformat()
    hi = datetime.combine(month_end + timedelta(days=1), datetime.min.time(), settings.tz)
    hi = hi.isoformat()
    conn = store.conn
    order = "ORDER BY COALESCE(published_at, fetched_at) DESC, id DESC LIMIT 50"
    cols = "id, title, summary, status, urgent, county, published_at, fetched_at"
    fts = f"id IN (SELECT rowid FROM packs_fts WHERE packs_fts MATCH '\"{QUERY}\"')"
    fts_common = f"id IN (SELECT rowid FROM packs_fts WHERE packs_fts MATCH '\"{COMMON_QUERY}\"')"

    # the window's live bookings (here slot_at = scheduled_at): no channel here has a daily
    # quota, so the planner needs no other booking to count
    window_bookings = (
        "SELECT d.id, d.pack_id, d.channel, d.status, d.urgent, d.slot_at, d.scheduled_at,"
        " d.claimed_at, d.next_attempt_at, p.title FROM deliveries d"
        " JOIN packs p ON p.id = d.pack_id WHERE d.status != 'cancelled'"
        " AND ((d.scheduled_at >= ? AND d.scheduled_at < ?) OR (d.slot_at >= ? AND d.slot_at < ?))"
    )
    # the free slots' candidates, freshest first, each checked against a channel's bookings
    candidates = (
        "SELECT p.id, p.title, p.county, (SELECT json_group_array(tag) FROM pack_tags t"
        " WHERE t.pack_id = p.id AND t.removed = 0) FROM packs p WHERE p.status = 'approved'"
        " AND p.urgent = 0 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.pack_id = p.id"
        " AND d.channel = 'ch00' AND d.status != 'cancelled')"
        " ORDER BY coalesce(p.published_at, p.fetched_at) DESC, p.id LIMIT ?"
    )
    week_start = datetime.combine(local_now.date(), datetime.min.time(), settings.tz)
    week_end = (week_start + timedelta(days=7)).isoformat()
    free_week = local_now.date() + timedelta(days=15)  # bookings end on day 14
    free_lo = datetime.combine(free_week, datetime.min.time(), settings.tz)
    free_hi = (free_lo + timedelta(days=7)).isoformat()
    free_slots = CHANNELS * 21 * 2  # 3 slots a day, per_slot 2
    week_free = free_in(conn, settings, now, week_start + timedelta(days=7))

    def raw(*statements: tuple[str, tuple]) -> Callable[[], None]:
        def run() -> None:
            for sql, params in statements:
                conn.execute(sql, params).fetchall()

        return run

    pages = [
        ("/packs", "/packs", raw(
            ("SELECT count(*) FROM packs", ()),
            (f"SELECT {cols} FROM packs {order}", ()),
        )),
        (f"/packs?q={QUERY}", f"/packs?q={QUERY}", raw(
            (f"SELECT count(*) FROM packs WHERE {fts}", ()),
            (f"SELECT {cols} FROM packs WHERE {fts} {order}", ()),
        )),
        (f"/packs?q={COMMON_QUERY} (most packs)", f"/packs?q={COMMON_QUERY}", raw(
            (f"SELECT count(*) FROM packs WHERE {fts_common}", ()),
            (f"SELECT {cols} FROM packs WHERE {fts_common} {order}", ()),
        )),
        ("/calendar", "/calendar", raw(
            ("SELECT d.id, d.pack_id, d.channel, d.status, d.urgent, d.slot_at, d.scheduled_at,"
             " p.title FROM deliveries d JOIN packs p ON p.id = d.pack_id"
             " WHERE d.status != 'cancelled' AND d.scheduled_at >= ? AND d.scheduled_at < ?"
             " ORDER BY d.scheduled_at, d.id", (week_lo, week_end)),
        )),
        # The planner needs the bookings counting on the window's days (by slot, claim and
        # retry time) and, for free slots only, that many candidates in rank order: this week
        # is fully booked (no candidate is read), the week after next is empty.
        ("/calendar/proposals (htmx, 拟排)", "/calendar/proposals", raw(
            (window_bookings, (week_lo, week_end) * 2),
            (candidates, (week_free,)),
        )),
        ("/calendar/proposals (free week)", f"/calendar/proposals?week={free_week}", raw(
            (window_bookings, (free_lo.isoformat(), free_hi) * 2),
            (candidates, (free_slots,)),
        )),
        ("/deliveries", "/deliveries", raw(
            ("SELECT count(*) FROM deliveries", ()),
            ("SELECT d.*, p.title FROM deliveries d JOIN packs p ON p.id = d.pack_id"
             " ORDER BY d.scheduled_at DESC, d.id DESC LIMIT 50", ()),
        )),
        # the status page: per-channel counts (from the table triggers keep, as the page reads
        # them), each channel's next queued time, the latest errors, the feeds and their packs
        ("/status", "/status", raw(
            ("SELECT channel, status, n FROM delivery_status_counts WHERE n > 0", ()),
            ("SELECT channel, min(scheduled_at) FROM deliveries WHERE status = 'queued'"
             " GROUP BY channel", ()),
            ("SELECT d.id, d.last_error, p.title FROM deliveries d JOIN packs p"
             " ON p.id = d.pack_id WHERE d.last_error IS NOT NULL AND d.last_error != ''"
             " ORDER BY d.updated_at DESC, d.id DESC LIMIT 10", ()),
            ("SELECT * FROM feeds", ()),
            ("SELECT feed, COUNT(DISTINCT pack_id) FROM pack_sources GROUP BY feed", ()),
            ("SELECT status, count(*) FROM packs GROUP BY status", ()),
        )),
        ("/stats (month, county x group)",
         f"/stats?from={month_start}&to={month_end}&by=county&by=group", raw(
            # the month's rows from the stats index, each delivery's reduced metric rows and
            # each pack's groups from the tables kept by triggers (the product's inputs; with
            # metrics and pack_tags joined per delivery instead it takes several times longer)
            ("SELECT d.channel, ps.groups, count(*), sum(d.status = 'delivered'),"
             " sum(d.status IN ('failed', 'dead')),"
             " sum(CASE WHEN f.nm > 0 THEN f.mr ELSE f.ei END)"
             " FROM deliveries d INDEXED BY deliveries_stats"
             " LEFT JOIN delivery_figures f ON f.delivery_id = d.id"
             " LEFT JOIN pack_tag_sets ps ON ps.pack_id = d.pack_id"
             " WHERE d.scheduled_at >= ? AND d.scheduled_at < ? GROUP BY 1, 2", (lo, hi)),
        )),
    ]  # fmt: skip
    print(f"{'page':36} {'p50 ms':>8} {'p95 ms':>8} {'raw p50':>8} {'raw p95':>8} "
          f"{'ratio':>6}  verdict")  # fmt: skip
    failed = False
    for label, url in (
        ("(floor: empty-body route)", "/_bench/empty"),
        ("(floor: empty page in base.html)", "/_bench/chrome"),
    ):
        floor = timed(lambda url=url: client.get(url), args.repeat)
        print(
            f"{label:36} {statistics.median(floor):8.1f} {pct(floor, 0.95):8.1f}"
            f" {'-':>8} {'-':>8} {'-':>6}  no target"
        )
    for label, url, raw_fn in pages:

        def get(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        page_ms = timed(get, args.repeat)
        raw_ms = timed(raw_fn, args.repeat)
        p95, r95 = pct(page_ms, 0.95), pct(raw_ms, 0.95)
        ratio = statistics.median(page_ms) / max(statistics.median(raw_ms), 0.001)
        ok = p95 < TARGET_MS and ratio <= TARGET_RATIO
        failed |= not ok
        print(f"{label:36} {statistics.median(page_ms):8.1f} {p95:8.1f} "
              f"{statistics.median(raw_ms):8.1f} {r95:8.1f} {ratio:6.1f}  "
              f"{'ok' if ok else 'MISSES TARGET'}")  # fmt: skip
    store.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
