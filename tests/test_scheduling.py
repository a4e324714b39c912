"""Queueing rules, queue --auto, plan and status over a real SQLite file, with a fixed clock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from media_matrix import review, scheduling
from media_matrix.config import load_settings
from media_matrix.ingest import run_ingest
from media_matrix.models import Item, PackStatus, Tag
from media_matrix.store import NotFound, open_store
from media_matrix.store.deliveries import AlreadyQueued

REPO = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 9, 10, 6, 0, tzinfo=TZ)  # a Tuesday, 全国科普日 running


def local(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(TZ).strftime("%m-%d %H:%M")


CHANNELS = [
    {
        "name": "city",
        "type": "outbox",
        "county": "市级",
        "audience": ["public"],
        "slots": ["0 8,20 * * *"],
        "per_slot": 2,
        "daily_quota": 3,
        "path": "var/out/city",
    },
    {
        "name": "qingfeng",
        "type": "outbox",
        "county": "清丰县",
        "audience": ["farmers"],
        "slots": ["0 9,15 * * *"],
        "per_slot": 1,
        "daily_quota": 2,
        "path": "var/out/qingfeng",
    },
    {
        "name": "screen",
        "type": "outbox",
        "county": "华龙区",
        "audience": ["public", "seniors"],
        "slots": ["0 7-21/2 * * *"],
        "per_slot": 1,
        "quiet_hours": "22:00-07:00",
        "path": "var/out/screen",
    },
    {
        "name": "off",
        "type": "outbox",
        "enabled": False,
        "slots": ["0 8 * * *"],
        "path": "var/out/off",
    },
]


def write_config(tmp_path: Path, **extra) -> Path:
    data = {
        "database": "var/sched.db",
        "templates": str(REPO / "channels"),
        "channels": CHANNELS,
        "campaigns": [{"name": "全国科普日", "from": "09-01", "to": "09-30", "topics": ["health"]}],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def add_pack(
    store,
    title: str,
    *,
    groups=("public",),
    topics=(),
    county="市级",
    published="2024-09-01T00:00:00+00:00",
    status=PackStatus.APPROVED,
) -> int:
    item = Item(
        guid=title,
        title=title,
        text=title * 10,
        content_hash=f"h-{title}",
        county=county,
        published_at=published,
    )
    pack_id = store.insert_pack("test", item, at=published, status=status)
    tags = [Tag("group", g, 3.0, "test") for g in groups]
    tags += [Tag("topic", t, 3.0, "test") for t in topics]
    store.replace_rule_tags(pack_id, tags, at=published)
    return pack_id


@pytest.fixture
def project(tmp_path):
    config = write_config(tmp_path)
    settings = load_settings(config)
    store = open_store(settings.database)
    yield settings, store, config
    store.close()


# -- queue one pack -----------------------------------------------------------------------------


def test_only_approved_packs_are_queued(project):
    settings, store, _ = project
    new = add_pack(store, "待审", status=PackStatus.NEW)
    rejected = add_pack(store, "驳回", status=PackStatus.REJECTED)
    for pack in (new, rejected):
        with pytest.raises(scheduling.NotApproved, match="只有已通过"):
            scheduling.queue_pack(settings, store, pack, "city", by="ed", now=NOW)
    with pytest.raises(NotFound):
        scheduling.queue_pack(settings, store, 999, "city", by="ed", now=NOW)
    with pytest.raises(scheduling.UnknownChannel, match="nope"):
        scheduling.queue_pack(settings, store, new, "nope", by="ed", now=NOW)
    assert store.list_deliveries() == []


def test_next_free_slot_respects_per_slot_and_daily_quota(project):
    settings, store, _ = project
    packs = [add_pack(store, f"农技{i}", groups=("farmers",), county="清丰县") for i in range(3)]
    got = [scheduling.queue_pack(settings, store, p, "qingfeng", by="ed", now=NOW) for p in packs]
    # per_slot 1 at 09:00 and 15:00, so the third goes to the next morning
    assert [local(q.scheduled_at) for q in got] == ["09-10 09:00", "09-10 15:00", "09-11 09:00"]
    assert all(q.slot_at == q.scheduled_at and not q.warnings for q in got)
    audit = store.audit_log(subject=f"pack:{packs[0]}")
    assert audit[0]["action"] == "queue" and "qingfeng" in audit[0]["note"]


def test_no_double_queue_unless_resend(project):
    settings, store, _ = project
    pack = add_pack(store, "科普")
    first = scheduling.queue_pack(settings, store, pack, "city", by="ed", now=NOW)
    with pytest.raises(AlreadyQueued, match="--resend"):
        scheduling.queue_pack(settings, store, pack, "city", by="ed", now=NOW)
    with pytest.raises(AlreadyQueued):  # a hand-timed queue is no way around it
        scheduling.queue_pack(settings, store, pack, "city", NOW, by="ed", now=NOW)
    again = scheduling.queue_pack(settings, store, pack, "city", by="ed", resend=True, now=NOW)
    rows = store.list_deliveries(pack_id=pack, channel="city")
    assert [(r["id"], r["edition"]) for r in rows] == [
        (first.delivery_id, 1),
        (again.delivery_id, 2),
    ]
    # both editions share the 08:00 slot (per_slot 2)
    assert local(first.scheduled_at) == local(again.scheduled_at) == "09-10 08:00"
    assert store.audit_log(limit=1)[0]["action"] == "resend"
    # the planner never adds a third
    report = scheduling.queue_auto(settings, store, 2, NOW, channels=["city"])
    assert pack not in {q.pack_id for q in report.queued}


def test_queue_at_a_given_time(project):
    settings, store, _ = project
    pack = add_pack(store, "科普", groups=("seniors",), county="华龙区")
    at = scheduling.parse_when("2024-09-10T23:00", settings.tz)  # naive: config time zone
    assert at == datetime(2024, 9, 10, 15, 0, tzinfo=UTC)
    queued = scheduling.queue_pack(settings, store, pack, "screen", at, by="ed", now=NOW)
    assert queued.scheduled_at == "2024-09-10T15:00:00.000000+00:00" and queued.slot_at is None
    assert any("免打扰" in w for w in queued.warnings)
    assert scheduling.parse_when("2024-09-10T08:00+00:00", settings.tz).hour == 8
    with pytest.raises(ValueError, match="ISO"):
        scheduling.parse_when("tomorrow", settings.tz)


def test_audience_warns_county_refuses_disabled_refuses(project):
    settings, store, _ = project
    seniors_city = add_pack(store, "老年健康", groups=("seniors",))
    queued = scheduling.queue_pack(settings, store, seniors_city, "qingfeng", by="ed", now=NOW)
    assert any("受众不匹配" in w for w in queued.warnings)

    fanxian = add_pack(store, "范县新闻", groups=("farmers",), county="范县")
    with pytest.raises(scheduling.ChannelMismatch, match="范县"):
        scheduling.queue_pack(settings, store, fanxian, "qingfeng", by="ed", now=NOW)
    forced = scheduling.queue_pack(
        settings, store, fanxian, "qingfeng", by="ed", force=True, now=NOW
    )
    assert any("county mismatch" in w for w in forced.warnings)

    with pytest.raises(scheduling.SchedulingError, match="停用"):
        scheduling.queue_pack(settings, store, seniors_city, "off", by="ed", now=NOW)


def test_unqueue_only_while_queued(project):
    settings, store, _ = project
    a, b = add_pack(store, "a"), add_pack(store, "b")
    qa = scheduling.queue_pack(settings, store, a, "city", by="ed", now=NOW)
    qb = scheduling.queue_pack(settings, store, b, "city", by="ed", now=NOW)
    before = scheduling.unqueue(store, qa.delivery_id, "ed", "换一篇")
    assert before["status"] == "queued"
    assert store.get_delivery(qa.delivery_id)["status"] == "cancelled"
    assert store.audit_log(limit=1)[0]["action"] == "unqueue"
    with pytest.raises(scheduling.NotQueued, match="已撤回过"):
        scheduling.unqueue(store, qa.delivery_id, "ed")
    # a sender claimed b: no taking it back
    store.execute(
        "UPDATE deliveries SET status = 'sending', lease_owner = 'x',"
        " lease_until = '2999-01-01T00:00:00+00:00' WHERE id = ?",
        (qb.delivery_id,),
    )
    with pytest.raises(scheduling.NotQueued, match="发送中"):
        scheduling.unqueue(store, qb.delivery_id, "ed")
    assert store.get_delivery(qb.delivery_id)["status"] == "sending"
    # still queued but under a live lease (claimed a moment ago): the SQL guard refuses too
    store.execute("UPDATE deliveries SET status = 'queued' WHERE id = ?", (qb.delivery_id,))
    assert store.cancel_queued(qb.delivery_id) is False
    with pytest.raises(NotFound):
        scheduling.unqueue(store, 4242, "ed")
    # an unqueued pack may be queued again (the cancelled delivery does not count)
    again = scheduling.queue_pack(settings, store, a, "city", by="ed", now=NOW)
    assert store.get_delivery(again.delivery_id)["edition"] == 2


# -- the planner through the store --------------------------------------------------------------


def seed(store) -> dict[str, int]:
    ids = {}
    for i in range(6):
        ids[f"public{i}"] = add_pack(
            store, f"公众{i}", published=f"2024-09-0{i + 1}T00:00:00+00:00"
        )
    ids["health"] = add_pack(
        store, "健康", topics=("health",), published="2024-08-01T00:00:00+00:00"
    )
    for i in range(3):
        ids[f"farm{i}"] = add_pack(store, f"农技{i}", groups=("farmers",), county="清丰县")
    ids["seniors"] = add_pack(store, "老年", groups=("seniors",), county="华龙区")
    ids["new"] = add_pack(store, "未审", status=PackStatus.NEW)
    return ids


def check_invariants(settings, store) -> None:
    rows = [r for r in store.list_deliveries() if r["status"] != "cancelled"]
    pairs = Counter((r["pack_id"], r["channel"], r["edition"]) for r in rows)
    assert max(pairs.values(), default=0) == 1
    live = Counter((r["pack_id"], r["channel"]) for r in rows)
    assert max(live.values(), default=0) == 1  # nothing was re-sent here
    for chan in settings.channels:
        mine = [r for r in rows if r["channel"] == chan.name]
        per_slot = Counter(r["slot_at"] for r in mine if r["slot_at"] and not r["urgent"])
        assert max(per_slot.values(), default=0) <= chan.per_slot, chan.name
        if chan.daily_quota:
            per_day = Counter(local(r["scheduled_at"])[:5] for r in mine)
            assert max(per_day.values(), default=0) <= chan.daily_quota, chan.name
    statuses = {p.id: p.status for p in store.list_packs()}
    assert all(statuses[r["pack_id"]] == "approved" for r in rows)


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=60,
    )


def test_queue_auto_end_to_end_cli(project):
    settings, store, config = project
    ids = seed(store)
    review.set_urgent(store, ids["seniors"], True, "值班")
    now = "2024-09-10T06:00"

    planned = run_cli(config, "plan", "--days", "2", "--now", now, "--json")
    assert planned.returncode == 0, planned.stderr
    view = json.loads(planned.stdout)
    proposals = {
        (item["pack_id"], c["name"], item["at"])
        for c in view["channels"]
        for item in [i for s in c["slots"] for i in s["items"]] + c["other"]
        if item["kind"] == "proposal"
    }
    assert proposals

    # a moved clock plans only: --now without --dry-run is refused, with it nothing is written
    refused = run_cli(config, "queue", "--auto", "--days", "2", "--now", now, "--json")
    assert refused.returncode == 2 and "--now" in refused.stderr
    auto = run_cli(config, "queue", "--auto", "--days", "2", "--now", now, "--dry-run", "--json")
    assert auto.returncode == 0, auto.stderr
    report = json.loads(auto.stdout)
    assert report["dry_run"] is True and report["queued"]
    assert store.list_deliveries() == [] and store.audit_log(limit=1)[0]["action"] != "queue_auto"
    written = scheduling.queue_auto(
        settings, store, 2, datetime.fromisoformat(now).replace(tzinfo=TZ)
    )
    assert [(q.pack_id, q.channel, q.scheduled_at) for q in written.queued] == [
        (q["pack_id"], q["channel"], q["scheduled_at"]) for q in report["queued"]
    ]
    queued = {
        (q["pack_id"], q["channel"], datetime.fromisoformat(q["scheduled_at"]).astimezone(TZ))
        for q in report["queued"]
    }
    # plan shows exactly what queue --auto then does
    assert queued == {(p, c, datetime.fromisoformat(at)) for p, c, at in proposals}
    check_invariants(settings, store)

    # campaign first: the 全国科普日 health pack takes the first city slot despite being older
    city = sorted(
        (q for q in report["queued"] if q["channel"] == "city" and not q["urgent"]),
        key=lambda q: q["scheduled_at"],
    )
    assert city[0]["pack_id"] == ids["health"] and "全国科普日" in city[0]["reason"]
    # urgent: at once to every matching enabled channel (screen and city), not the disabled one
    urgent = [q for q in report["queued"] if q["urgent"]]
    assert {q["channel"] for q in urgent} == {"screen", "city"}
    assert all(q["pack_id"] == ids["seniors"] for q in urgent)
    assert all(q["scheduled_at"] == "2024-09-09T22:00:00.000000+00:00" for q in urgent)
    # county: 清丰县 farming packs only on qingfeng (and not on 华龙区's screen)
    farm = {q["channel"] for q in report["queued"] if q["pack_id"] == ids["farm0"]}
    assert farm <= {"qingfeng", "city"} and "qingfeng" in farm
    assert ids["new"] not in {q["pack_id"] for q in report["queued"]}

    again = scheduling.queue_auto(
        settings, store, 2, datetime.fromisoformat(now).replace(tzinfo=TZ)
    )
    assert again.queued == []
    table = run_cli(config, "plan", "--days", "1", "--now", now)
    assert "星期二" in table.stdout and "排队中" in table.stdout
    audit = store.audit_log(limit=1)[0]
    assert audit["action"] == "queue_auto" and audit["subject"] == "plan"


def test_concurrent_planners_never_overfill(project):
    settings, store, _ = project
    seed(store)
    errors: list[BaseException] = []

    def planner_run() -> None:
        own = open_store(settings.database)
        try:
            scheduling.queue_auto(settings, own, 3, NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=planner_run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check_invariants(settings, store)


def test_fill_slot_fills_only_that_slot(project):
    settings, store, _ = project
    seed(store)
    slot = datetime(2024, 9, 10, 8, 0, tzinfo=TZ)
    report = scheduling.fill_slot(settings, store, "city", slot)
    assert len(report.queued) == 2  # per_slot
    assert {q.scheduled_at for q in report.queued} == {"2024-09-10T00:00:00.000000+00:00"}
    assert scheduling.fill_slot(settings, store, "city", slot).queued == []
    assert store.audit_log() == []  # the daemon's fills are in its log, not the editors'


def cli_inprocess(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (fast): exit code, stdout, stderr."""
    from media_matrix.cli import cli
    from media_matrix.cli.common import run_guarded

    code = run_guarded(cli, ["--config", str(config), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_exit_codes(project, capsys):
    settings, store, config = project
    new = add_pack(store, "未审", status=PackStatus.NEW)
    ok = add_pack(store, "已审")
    store.close()
    cases = [
        (("queue", str(ok), "--channel", "city", "--at", "2024-13-45"), 2, "ISO"),
        (("queue", str(ok), "--channel", "nope"), 2, "未知渠道"),
        (("plan", "--channel", "nope"), 2, "未知渠道"),
        (("queue", str(ok)), 2, "用法"),
        (("queue", "--auto", str(ok)), 2, "--auto"),
        (("queue", str(new), "--channel", "city"), 1, "只有已通过"),
        (("queue", str(ok), "--channel", "city", "--now", "2024-09-10T06:00"), 2, "--now"),
        (("queue", str(ok), "--channel", "city", "--dry-run"), 2, "--dry-run"),
        (("queue", str(ok), "--channel", "city", "--at", "2020-01-01T08:00"), 2, "2020-01-01"),
        (("queue", str(ok), "--channel", "city", "--at", "now"), 0, "指定时间"),
        (("queue", str(ok), "--channel", "city"), 1, "--resend"),
        (("unqueue", "999"), 1, "not found"),
    ]
    for args, code, text in cases:
        got, out, err = cli_inprocess(capsys, config, *args)
        assert got == code, (args, out, err)
        assert text in out + err, (args, out, err)


def test_status_json(tmp_path):
    feeds = [
        {"name": "good", "kind": "rss", "url": str(REPO / "content_packs/samples/kepu_china.xml")},
        {"name": "broken", "kind": "rss", "url": str(tmp_path / "missing.xml")},
    ]
    config = write_config(tmp_path, feeds=feeds)
    settings = load_settings(config)
    store = open_store(settings.database)
    run_ingest(settings, store)
    pack = add_pack(store, "科普")
    scheduling.queue_pack(settings, store, pack, "city", by="ed")
    store.close()

    result = run_cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    health = {f["name"]: f["health"] for f in view["feeds"]}
    assert health == {"good": "ok", "broken": "failing"}
    assert view["daemon"] == {"running": False}
    channels = {c["name"]: c for c in view["channels"]}
    assert channels["city"]["queued"] == 1 and channels["screen"]["queued"] == 0
    assert len(channels["city"]["next_slots"]) == 3
    assert all(s.endswith("+08:00") for s in channels["city"]["next_slots"])
    assert channels["off"]["enabled"] is False
    assert any(e["kind"] == "feed" and e["subject"] == "broken" for e in view["errors"])
    table = run_cli(config, "status")
    assert "渠道与队列" in table.stdout and "失败" in table.stdout


# -- the planner reading the store lazily ------------------------------------------------------


def test_store_candidates_plan_as_the_planner_does_with_every_pack(project, monkeypatch):
    """Planning from the store a batch at a time (candidates in rank order, packs booked on a
    channel left out in SQL, only the bookings counting on the window's days) gives exactly
    the plan of the in-memory planner handed every approved pack and every booking, and reads
    only part of the packs."""
    import random

    from media_matrix import planner
    from media_matrix.planner import Booking, PlanChannel, PlanPack

    settings, store, _ = project
    rng = random.Random(9)
    counties = ["市级", "清丰县", "华龙区", "范县"]
    groups = ["public", "farmers", "seniors", "youth"]
    ids = []
    for i in range(120):
        day = rng.randint(1, 9)  # many ties in published_at: ties go by id
        ids.append(
            add_pack(
                store,
                f"包{i}",
                groups=tuple(rng.sample(groups, rng.randint(1, 2))),
                topics=tuple(rng.sample(["health", "water", "food"], rng.randint(0, 2))),
                county=rng.choice(counties),
                published=f"2024-0{rng.choice([7, 8])}-0{day}T00:00:00+00:00",
                status=rng.choice([PackStatus.APPROVED] * 4 + [PackStatus.NEW]),
            )
        )
    names = [c.name for c in settings.channels]
    approved = [p.id for p in store.list_packs(status=PackStatus.APPROVED)]
    for pack_id in rng.sample(approved, 50):  # booked long before and within the window
        at = rng.choice(["2024-06-01T00:00:00+00:00", "2024-09-11T01:00:00+00:00"])
        delivery = store.queue_delivery(pack_id, rng.choice(names), scheduled_at=at, slot_at=at)
        if rng.random() < 0.3:
            store.cancel_queued(delivery)
    chans = [PlanChannel.from_config(c) for c in settings.channels]
    now = NOW.astimezone(UTC)
    everything = [PlanPack.from_pack(p) for p in store.list_packs(status=PackStatus.APPROVED)]
    all_bookings = [Booking.from_delivery(r) for r in store.list_bookings(channels=names)]
    read = []
    real = store.plan_candidates

    def counting(*args, **kwargs):
        rows = real(*args, **kwargs)
        read.extend(r["id"] for r in rows)
        return rows

    monkeypatch.setattr(store, "plan_candidates", counting)
    monkeypatch.setattr(scheduling._StoreCandidates, "FIRST", 2)  # page often
    monkeypatch.setattr(scheduling._StoreCandidates, "MOST", 4)
    for days in (0.5, 3, 25):  # 25 days cross the end of 全国科普日 (09-30)
        end = now + timedelta(days=days)
        window = scheduling._counting_rows(store, chans, now, end, settings.tz)
        kwargs = dict(now=now, days=days, tz=settings.tz, campaigns=settings.campaigns)
        expected = planner.plan(everything, chans, all_bookings, **kwargs)
        read.clear()
        got = planner.plan(
            scheduling._StoreCandidates(store),
            chans,
            [Booking.from_delivery(r) for r in window],
            **kwargs,
        )
        assert expected, days
        assert got == expected, days
        if days < 25:
            assert len(set(read)) < len(everything), (days, len(set(read)))
    # 群众点单 first on the county's channels: linked packs, then packs of an ordered topic,
    # the same from the store as in memory (and it changes the plan)
    demand = {"清丰县": planner.Demand(frozenset(rng.sample(approved, 3)), frozenset({"water"}))}
    for days in (0.5, 3):
        end = now + timedelta(days=days)
        window = scheduling._counting_rows(store, chans, now, end, settings.tz)
        kwargs = dict(now=now, days=days, tz=settings.tz, campaigns=settings.campaigns)
        plain = planner.plan(everything, chans, all_bookings, **kwargs)
        expected = planner.plan(everything, chans, all_bookings, demand=demand, **kwargs)
        got = planner.plan(
            scheduling._StoreCandidates(store),
            chans,
            [Booking.from_delivery(r) for r in window],
            demand=demand,
            **kwargs,
        )
        assert got == expected, days
        assert expected != plain, days
        assert any("群众点单" in a.reason for a in got if a.channel == "qingfeng"), days


def test_store_candidates_first_read_is_the_room_left(project, monkeypatch):
    """The planner tells the store how many packs the free slots can take: a channel's
    candidates come in one read of that many (not a small read and a doubling), and the plan
    stays the in-memory planner's."""
    from media_matrix import planner
    from media_matrix.planner import Booking, PlanChannel, PlanPack

    settings, store, _ = project
    for i in range(30):
        add_pack(store, f"包{i}", published=f"2024-08-{i % 28 + 1:02d}T00:00:00+00:00")
    everything = [PlanPack.from_pack(p) for p in store.list_packs(status=PackStatus.APPROVED)]
    chan = PlanChannel("room", slots=("0 8 * * *",), per_slot=3)
    now = NOW.astimezone(UTC)
    first = planner.slot_times(chan, now, now + timedelta(days=1), settings.tz)[0]
    booked = [Booking(everything[-1].id, "room", first)]  # one of the 6 places is taken
    limits = []
    real = store.plan_candidates

    def counting(*args, **kwargs):
        limits.append(kwargs["limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "plan_candidates", counting)
    kwargs = dict(now=now, days=2, tz=settings.tz)
    got = planner.plan(scheduling._StoreCandidates(store), [chan], booked, **kwargs)
    assert got == planner.plan(everything, [chan], booked, **kwargs)
    assert len(got) == 5
    assert limits == [5]
