"""The real `media-matrix daemon`, as a subprocess, against a real SQLite file.

Slots are every two seconds: the channels' slot is ``* * * * *`` (every minute, as the planner
sees it) and ``daemon.slot_second: "*/2"`` gives the slot jobs a seconds field, so each slot
minute fires every two seconds (see DaemonConfig). Timing comes from the daemon's own JSON log
lines: ``lateness_ms`` = actual start minus scheduled fire time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from feedserver import LOOPBACK_NETWORK

from media_matrix.cron import last_fire_before
from media_matrix.daemon import slot_trigger
from media_matrix.instance import LOCK_NAME, stale_reason
from media_matrix.models import Item, PackStatus, Tag
from media_matrix.planner import PlanChannel, slot_times
from media_matrix.store import open_store

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30  # a loaded CI machine imports slowly


def write_config(tmp_path: Path, *, feeds: list[dict] | None = None, **daemon: Any) -> Path:
    settings = {
        "slot_second": "*/2",
        "sweep_every": "2s",
        "heartbeat_every": "1s",
        "stale_after": "5s",
        "misfire_grace": "30s",
        **daemon,
    }
    data = {
        "database": "var/daemon.db",
        "templates": str(REPO / "channels"),
        "feeds": feeds or [],
        "channels": [
            {
                "name": name,
                "type": "outbox",
                "county": "市级",
                "audience": ["public"],
                "slots": ["* * * * *"],
                "per_slot": 1,
                "path": f"var/outbox/{name}",
            }
            for name in ("screen-a", "screen-b")
        ],
        "daemon": settings,
        "network": LOOPBACK_NETWORK,  # the feeds are on the loopback FeedServer
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def seed_packs(tmp_path: Path, n: int = 12) -> None:
    store = open_store(tmp_path / "var" / "daemon.db")
    for i in range(n):
        at = f"2024-09-{i + 1:02d}T00:00:00+00:00"
        item = Item(guid=f"p{i}", title=f"科普内容{i}", text="科学知识" * 20, content_hash=f"h{i}")
        item.published_at = at
        pack = store.insert_pack("seed", item, at=at, status=PackStatus.APPROVED)
        store.replace_rule_tags(pack, [Tag("group", "public", 3, "test")], at=at)
    store.close()


class Daemon:
    """`python -m media_matrix --config X daemon`, its JSON log lines collected as they come."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media_matrix", "--config", str(config), "daemon"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=REPO,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self.other: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.other.append(line)

    def of(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.events)
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_for(self, predicate, timeout: float = START_TIMEOUT, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                self.reader.join(2)
                if predicate():
                    return
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.log()}")

    def started(self) -> None:
        self.wait_for(lambda: self.of("daemon_started"), what="daemon_started")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def log(self) -> str:
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in self.events[-30:]) + "".join(
            self.other[-10:]
        )


def fired(daemons: list[Daemon]) -> list[tuple[str, str]]:
    return [(e["channel"], e["scheduled"]) for d in daemons for e in d.of("slot_fired")]


# -- pure pieces (fast) -------------------------------------------------------------------------


def test_slot_trigger_agrees_with_the_planner():
    tz = "Asia/Shanghai"
    chan = PlanChannel("c", slots=("0 8 * * 1-5",))
    start = datetime(2024, 9, 1, tzinfo=UTC)
    end = start + timedelta(days=14)
    trigger = slot_trigger("0 8 * * 1-5", tz)
    fires = []
    fire = trigger.get_next_fire_time(None, start)
    while fire < end:
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    assert fires == slot_times(chan, start, end, tz)  # Monday..Friday, crontab numbering
    every_two = slot_trigger("* * * * *", tz, "*/2")
    first = every_two.get_next_fire_time(None, start)
    assert every_two.get_next_fire_time(first, first) - first == timedelta(seconds=2)


def test_catch_up_picks_the_latest_fire_within_grace():
    trigger = slot_trigger("* * * * *", "Asia/Shanghai")  # every minute
    now = datetime(2024, 9, 10, 0, 10, 30, tzinfo=UTC)
    last = datetime(2024, 9, 10, 0, 5, tzinfo=UTC)
    assert last_fire_before(trigger, now, after=last, grace=600) == now.replace(second=0)
    assert last_fire_before(trigger, now, after=last, grace=20) is None  # 30 s ago: too old
    assert last_fire_before(trigger, now, after=now.replace(second=0), grace=600) is None


def test_stale_lock_rules():
    now = datetime.now(UTC)
    fresh = {"pid": os.getppid(), "host": "h", "heartbeat_at": now.isoformat()}
    assert stale_reason(fresh, 60, host="h", now=now) is None
    old = {**fresh, "heartbeat_at": (now - timedelta(seconds=90)).isoformat()}
    assert "heartbeat" in stale_reason(old, 60, host="h", now=now)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = {**fresh, "pid": dead.pid}
    assert "not running" in stale_reason(gone, 60, host="h", now=now)
    assert stale_reason(gone, 60, host="elsewhere", now=now) is None  # cannot see its pids


# -- the real daemon ----------------------------------------------------------------------------


def test_slots_fire_on_time_and_a_second_daemon_refuses(tmp_path):
    config = write_config(tmp_path)
    seed_packs(tmp_path)
    first = Daemon(config)
    try:
        first.started()
        second = subprocess.run(
            [sys.executable, "-m", "media_matrix", "--config", str(config), "daemon"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=REPO,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"pid {first.proc.pid}" in second.stderr
        assert "拒绝启动" in second.stderr
        first.wait_for(
            lambda: all(
                len(first.of("slot_done", channel=c)) >= 3 for c in ("screen-a", "screen-b")
            ),
            what="three slots per channel",
        )
    finally:
        code = first.stop()
    assert code == 0, first.log()
    assert first.other == []  # every stderr line is one JSON event

    fires = first.of("slot_fired")
    lateness = sorted(e["lateness_ms"] for e in fires)
    print(f"\nslot lateness ms over {len(lateness)} fires: {lateness}")
    assert lateness[-1] < 1000, first.log()
    assert max(Counter(fired([first])).values()) == 1  # each fire time once
    for channel in ("screen-a", "screen-b"):
        times = [
            datetime.fromisoformat(e["scheduled"]) for e in first.of("slot_fired", channel=channel)
        ]
        gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
        assert gaps == {2.0}, times
    # each slot minute filled once (per_slot 1), every later fire of that minute found it full
    store = open_store(tmp_path / "var" / "daemon.db")
    try:
        rows = store.list_deliveries()
        assert rows, first.log()
        per_slot = Counter((r["channel"], r["slot_at"]) for r in rows)
        assert max(per_slot.values()) == 1
        assert len({(r["pack_id"], r["channel"]) for r in rows}) == len(rows)
        assert not [r for r in rows if r["status"] == "sending"]
        assert store.get_lock(LOCK_NAME) is None
    finally:
        store.close()
    assert first.of("daemon_stopped", lock_released=True, exit_code=0)


def test_missed_slot_is_caught_up_once_after_restart(tmp_path):
    config = write_config(tmp_path)
    seed_packs(tmp_path)
    crashed = Daemon(config)
    crashed.started()
    crashed.wait_for(
        lambda: all(crashed.of("slot_fired", channel=c) for c in ("screen-a", "screen-b")),
        what="first slot per channel",
    )
    crashed.stop(signal.SIGKILL)  # a crash: the lock stays, with a dead pid
    last_before = {
        c: crashed.of("slot_fired", channel=c)[-1]["scheduled"] for c in ("screen-a", "screen-b")
    }
    time.sleep(4.5)  # at least two fire times pass while no daemon runs

    restarted = Daemon(config)
    try:
        restarted.started()
        restarted.wait_for(
            lambda: len(restarted.of("slot_fired", catchup=True)) == 2, what="two catch-up runs"
        )
        time.sleep(0.5)
    finally:
        assert restarted.stop() == 0
    assert restarted.of("lock_takeover"), "a dead holder's lock is taken over"
    catchups = restarted.of("slot_fired", catchup=True)
    print(
        "\nlast run before the crash:",
        last_before,
        "\ncaught up:",
        [(e["channel"], e["scheduled"], e["lateness_ms"]) for e in catchups],
    )
    assert sorted(e["channel"] for e in catchups) == ["screen-a", "screen-b"]  # once per slot
    for e in catchups:
        missed = datetime.fromisoformat(e["scheduled"]) - datetime.fromisoformat(
            last_before[e["channel"]]
        )
        # the latest missed fire time only: the ones between were coalesced into it
        assert missed >= timedelta(seconds=4), (e, last_before)
        assert e["lateness_ms"] > 0  # run after its time, at the restart

    again = Daemon(config)  # a second restart must not run those fire times again
    try:
        again.started()
        again.wait_for(lambda: again.of("slot_fired", catchup=False), what="a regular slot")
    finally:
        assert again.stop() == 0
    everything = fired([crashed, restarted, again])
    print("fire times run per daemon:", [len(fired([d])) for d in (crashed, restarted, again)])
    assert max(Counter(everything).values()) == 1, everything
    for e in again.of("slot_fired", catchup=True):  # only fire times after the last restart
        assert e["scheduled"] > max(s for c, s in fired([restarted]) if c == e["channel"])

    store = open_store(tmp_path / "var" / "daemon.db")
    try:
        per_slot = Counter((r["channel"], r["slot_at"]) for r in store.list_deliveries())
        assert max(per_slot.values()) == 1
        assert store.get_lock(LOCK_NAME) is None
    finally:
        store.close()


def rss(n: int) -> bytes:
    body = "汛期安全常识与应急避险要点。" * 5
    items = "".join(
        f"<item><title>防汛知识{i}</title><link>https://kp.example/{i}</link><guid>g{i}</guid>"
        f"<pubDate>Mon, 09 Sep 2024 08:00:00 +0800</pubDate>"
        f"<description><![CDATA[<p>{body}{i}</p>]]></description></item>"
        for i in range(n)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>科普中国</title>'
        f"<link>https://kp.example/</link>{items}</channel></rss>"
    ).encode()


def test_sigterm_during_a_run_loses_nothing(tmp_path, feed_server):
    feed_server.add("/slow.xml", body=rss(3), delay=5.0)
    feeds = [{"name": "slow", "kind": "rss", "url": feed_server.url("/slow.xml"), "every": "1h"}]
    config = write_config(tmp_path, feeds=feeds)
    seed_packs(tmp_path)
    daemon = Daemon(config)
    try:
        daemon.started()
        daemon.wait_for(lambda: feed_server.hits("/slow.xml"), what="the slow fetch to start")
        hit = time.monotonic()
        while not daemon.of("slot_done") and time.monotonic() - hit < 2.5:
            time.sleep(0.05)  # let a slot run too, if one comes while the fetch hangs
    finally:
        sent_at = time.monotonic()
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()
    events = [e["event"] for e in daemon.events]
    ingest = daemon.of("ingest", feed="slow")
    assert ingest and ingest[0]["outcome"] == "ok" and ingest[0]["new"] == 3, daemon.log()
    assert ingest[0]["indexed"] >= 3  # the daemon brings the search index up after ingest
    assert events.index("stopping") < events.index("ingest")  # it was in flight, and finished
    assert events[-1] == "daemon_stopped" and daemon.of("daemon_stopped", lock_released=True)
    assert time.monotonic() - sent_at < 15

    store = open_store(tmp_path / "var" / "daemon.db")
    try:
        assert len([p for p in store.list_packs() if "slow" in p.feeds]) == 3
        assert store.get_feed_state("slow")["last_success_at"]
        assert store.query("SELECT pack_id FROM packs_fts_pending") == []
        rows = store.list_deliveries()
        assert not [r for r in rows if r["status"] == "sending" or r["lease_owner"]]
        assert len({(r["pack_id"], r["channel"]) for r in rows}) == len(rows)
        assert store.get_lock(LOCK_NAME) is None
    finally:
        store.close()


def test_sigint_stops_cleanly(tmp_path):
    config = write_config(tmp_path)
    daemon = Daemon(config)
    daemon.started()
    assert daemon.stop(signal.SIGINT) == 0
    assert daemon.of("stopping", reason="SIGINT") and daemon.of(
        "daemon_stopped", lock_released=True
    )
    by_event = defaultdict(int)
    for e in daemon.events:
        by_event[e["event"]] += 1
    assert by_event["daemon_started"] == 1
