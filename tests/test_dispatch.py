"""Dispatch engine: pure retry policy, atomic claims, every outcome against the sandbox over real
HTTP, sweeper recovery, per-channel limits, operator actions and the attempt log."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from media_matrix import scheduling
from media_matrix.config import Settings, load_settings
from media_matrix.dispatch import (
    dispatch_due,
    exhausted,
    group_into_messages,
    local_day_bounds,
    message_key,
    next_attempt_delay,
    reusable_state,
    sweep,
)
from media_matrix.flow import pull_stats
from media_matrix.models import Item, PackStatus
from media_matrix.sandbox import (
    Faults,
    MediaCentreSandbox,
    SandboxServers,
    WechatSandbox,
    WecomSandbox,
)
from media_matrix.sandbox.common import Request, Response, Running
from media_matrix.store import Store, open_store
from media_matrix.store.dispatching import InvalidTransition
from media_matrix.timeutil import from_iso

REPO = Path(__file__).resolve().parents[1]
PAST = "2026-01-01T00:00:00+00:00"
SECRET = "sandbox-secret"
APPID = "wx-sandbox-appid"


# -- helpers (also used by test_dispatch_crash and test_dispatch_outage) ------------------------


def write_settings(
    folder: Path,
    channels: list[dict[str, Any]],
    *,
    templates: Path | None = None,
    timezone: str = "Asia/Shanghai",
    **dispatch_opts: Any,
) -> Settings:
    opts = {
        "lease_seconds": 5,
        "max_attempts": 4,
        "backoff_base": 0.05,
        "backoff_cap": 0.5,
        "workers": 4,
        **dispatch_opts,
    }
    data = {
        "timezone": timezone,
        "database": str(folder / "db.sqlite"),
        "templates": str(templates or REPO / "channels"),
        "dispatch": opts,
        "channels": channels,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_settings(path)


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": url, "secret": SECRET, **extra}


def wechat(name: str, api_base: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "wechat_mp",
        "appid": APPID,
        "secret": SECRET,
        "api_base": api_base,
        **extra,
    }


def outbox(name: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "outbox", "path": str(path), **extra}


def wecom(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "wecom_robot", "webhook_url": url, **extra}


def add_packs(store: Store, n: int, prefix: str = "P") -> list[int]:
    ids = []
    for i in range(n):
        item = Item(
            guid=f"{prefix}-{i}",
            title=f"{prefix}{i} 秋冬季流感防护指南",
            url=f"https://www.kepuchina.cn/a/{prefix}-{i}",
            summary="流感高发季节，老年人和儿童要注意防护。",
            content_html="<p>流感是由流感病毒引起的急性呼吸道传染病。</p><p>勤洗手、多通风。</p>",
            text="流感是由流感病毒引起的急性呼吸道传染病。勤洗手、多通风。",
            content_hash=f"{prefix}-hash-{i}",
            source="科普中国",
        )
        ids.append(store.insert_pack("test", item, at=PAST, status=PackStatus.APPROVED))
    return ids


def queue(
    store: Store, pack_ids: list[int], channel: str, *, at: str = PAST, slot: str | None = None
) -> list[int]:
    return [
        store.queue_delivery(pid, channel, scheduled_at=at, slot_at=slot or at) for pid in pack_ids
    ]


def statuses(store: Store, ids: list[int] | None = None) -> dict[int, str]:
    rows = store.list_deliveries(ids=ids) if ids is not None else store.list_deliveries()
    return {r["id"]: r["status"] for r in rows}


def later(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


class CountingCentre(MediaCentreSandbox):
    """A media centre that also records the most requests it served at once, per path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.active_total = 0
        self.peak_total = 0

    def handle(self, req: Request) -> Response | None:
        path = req.path
        with self.lock:
            self.active[path] = self.active.get(path, 0) + 1
            self.peak[path] = max(self.peak.get(path, 0), self.active[path])
            self.active_total += 1
            self.peak_total = max(self.peak_total, self.active_total)
        try:
            return super().handle(req)
        finally:
            with self.lock:
                self.active[path] -= 1
                self.active_total -= 1


@pytest.fixture
def sandbox() -> Iterator[SandboxServers]:
    servers = SandboxServers(
        wechat=WechatSandbox(publish_polls=1), wecom=WecomSandbox(), mediacentre=CountingCentre()
    )
    with servers:
        yield servers


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path


# -- pure decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
def test_delay_is_capped_and_never_negative(jitter):
    rng = random.Random(1)
    for attempt in range(1, 40):
        for _ in range(50):
            delay = next_attempt_delay(attempt, 2.0, 60.0, rng, jitter=jitter)
            assert 0.0 <= delay <= 60.0


def test_full_jitter_stays_under_the_exponential_step():
    rng = random.Random(2)
    for attempt in range(1, 8):
        step = min(100.0, 1.0 * 2 ** (attempt - 1))
        delays = [next_attempt_delay(attempt, 1.0, 100.0, rng, jitter="full") for _ in range(500)]
        assert max(delays) <= step
        assert min(delays) < step * 0.1  # full jitter reaches down to zero
        assert sum(delays) / len(delays) == pytest.approx(step / 2, rel=0.15)


def test_equal_jitter_keeps_half_the_step():
    rng = random.Random(3)
    for attempt in range(1, 8):
        step = min(30.0, 1.0 * 2 ** (attempt - 1))
        delays = [next_attempt_delay(attempt, 1.0, 30.0, rng, jitter="equal") for _ in range(300)]
        assert step / 2 <= min(delays) and max(delays) <= step


def test_decorrelated_jitter_grows_from_base_and_depends_on_the_previous_delay():
    rng = random.Random(4)
    for _ in range(300):
        first = next_attempt_delay(1, 1.0, 1000.0, rng)
        assert 1.0 <= first <= 3.0
        nxt = next_attempt_delay(2, 1.0, 1000.0, rng, previous=first)
        assert 1.0 <= nxt <= 3 * first
    # a chain grows about exponentially on average until the cap
    means = []
    for attempt_count in (1, 4, 8):
        total = 0.0
        for _ in range(300):
            previous = None
            for attempt in range(1, attempt_count + 1):
                previous = next_attempt_delay(attempt, 1.0, 1e9, rng, previous=previous)
            total += previous or 0
        means.append(total / 300)
    assert means[0] < means[1] < means[2]
    assert next_attempt_delay(50, 1.0, 10.0, rng, previous=1e6) <= 10.0


def test_delay_rejects_nonsense():
    with pytest.raises(ValueError):
        next_attempt_delay(0, 1.0, 10.0)
    with pytest.raises(ValueError):
        next_attempt_delay(1, 0.0, 10.0)
    with pytest.raises(ValueError):
        next_attempt_delay(1, 1.0, 10.0, jitter="fancy")  # type: ignore[arg-type]


def test_delay_is_deterministic_for_a_seeded_rng():
    a = [next_attempt_delay(n, 1.0, 60.0, random.Random(9)) for n in range(1, 6)]
    b = [next_attempt_delay(n, 1.0, 60.0, random.Random(9)) for n in range(1, 6)]
    assert a == b


def test_exhausted_and_local_day_bounds():
    assert not exhausted(5, 6) and exhausted(6, 6) and exhausted(7, 6)
    tz = ZoneInfo("Asia/Shanghai")
    start, end = local_day_bounds(datetime(2031, 3, 3, 23, 59, tzinfo=tz), tz)
    assert (start, end) == ("2031-03-02T16:00:00.000000+00:00", "2031-03-03T16:00:00.000000+00:00")


def _row(i: int, slot: str, **extra: Any) -> dict[str, Any]:
    return {"id": i, "uid": f"u{i}", "slot_at": slot, "scheduled_at": slot, **extra}


def test_grouping_bundles_a_slot_into_messages_of_at_most_eight():
    rows = [_row(i, "s1") for i in range(1, 11)] + [_row(i, "s2") for i in range(11, 14)]
    messages = group_into_messages(rows, 8)
    assert [[r["id"] for r in m] for m in messages] == [
        list(range(1, 9)),
        [9, 10],
        [11, 12, 13],
    ]
    assert group_into_messages(rows, 1) == [[r] for r in rows]


def test_grouping_keeps_an_earlier_batch_together_in_its_recorded_order():
    state = {"uids": ["u3", "u1", "u2"], "draft_media_id": "D1"}
    rows = [
        _row(1, "s1", batch="B", remote_state=state),
        _row(2, "s1", batch="B", remote_state=state),
        _row(4, "s1"),
        _row(3, "s1", batch="B", remote_state=state),
    ]
    messages = group_into_messages(rows, 8)
    assert [[r["id"] for r in m] for m in messages] == [[3, 1, 2], [4]]


def test_reusable_state_drops_a_draft_made_for_other_deliveries():
    state = {"uids": ["a", "b"], "draft_media_id": "D", "thumbs": {"x": "M"}, "mode": "publish"}
    assert reusable_state(state, ["a", "b"]) == state
    assert reusable_state(state, ["a"]) == {"mode": "publish", "thumbs": {"x": "M"}}
    public = {**state, "step": "submit", "pending": True}
    assert reusable_state(public, ["a"]) == public  # maybe public: the adapter must reconcile
    assert reusable_state({}, ["a"]) is None
    assert message_key(["a"]) == "a" and len(message_key(["a", "b"])) == 40


# -- claims -------------------------------------------------------------------------------------


def _claim_setup(project: Path, n: int) -> tuple[Settings, list[int]]:
    settings = write_settings(project, [webhook("cms", "http://127.0.0.1:9/x")])
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, n), "cms")
    store.close()
    return settings, ids


def test_two_threads_never_claim_the_same_delivery(project):
    settings, ids = _claim_setup(project, 200)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def claim(owner: str) -> None:
        store = Store(settings.database)  # its own connection, as another process would have
        barrier.wait()
        got: list[int] = []
        while True:
            rows = store.claim_due(
                now=datetime.now(UTC).isoformat(),
                owner=owner,
                lease_until=later().isoformat(),
                channels=["cms"],
                limit=7,
            )
            if not rows:
                break
            assert all(r["status"] == "sending" and r["lease_owner"] == owner for r in rows)
            got += [r["id"] for r in rows]
            time.sleep(0.002)  # let the other claimer in
        claimed[owner] = got
        store.close()

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = claimed["t0"], claimed["t1"]
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(ids)
    assert a and b  # both got work: the claims interleaved


CLAIM_SCRIPT = """
import json, sys
from datetime import UTC, datetime, timedelta
from media_matrix.store import Store
store = Store(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
got = []
while True:
    now = datetime.now(UTC)
    rows = store.claim_due(now=now.isoformat(), owner=sys.argv[2],
                           lease_until=(now + timedelta(hours=1)).isoformat(),
                           channels=["cms"], limit=5)
    if not rows:
        break
    got += [r["id"] for r in rows]
print(json.dumps(got))
"""


def test_two_processes_never_claim_the_same_delivery(project):
    settings, ids = _claim_setup(project, 300)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_SCRIPT, str(settings.database), f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # start both at once
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert not set(results[0]) & set(results[1])
    assert sorted(results[0] + results[1]) == sorted(ids)


def test_only_due_deliveries_are_claimed(project):
    settings = write_settings(project, [webhook("cms", "http://127.0.0.1:9/x")])
    store = open_store(settings.database)
    packs = add_packs(store, 4)
    now = datetime.now(UTC)
    due = queue(store, packs[:1], "cms")[0]
    future = queue(store, packs[1:2], "cms", at=(now + timedelta(hours=1)).isoformat())[0]
    retry_later, retry_now = queue(store, packs[2:], "cms")
    for delivery_id, when in ((retry_later, now + timedelta(hours=1)), (retry_now, now)):
        store.claim_due(
            now=now.isoformat(), owner="x", lease_until=later().isoformat(), channels=["cms"]
        )
        store.mark_failed(
            delivery_id, owner="x", at=now.isoformat(), next_attempt_at=when.isoformat(), error="e"
        )
        store.release_claims([due, retry_later, retry_now], "x")
    rows = store.claim_due(
        now=(now + timedelta(seconds=1)).isoformat(),
        owner="y",
        lease_until=later().isoformat(),
        channels=["cms"],
    )
    assert sorted(r["id"] for r in rows) == sorted([due, retry_now])
    assert statuses(store)[future] == "queued" and statuses(store)[retry_later] == "failed"
    store.close()


# -- outcomes over real HTTP --------------------------------------------------------------------


def test_webhook_delivered_with_a_complete_attempt_log(project, sandbox):
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())])
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 3), "cms")
    report = dispatch_due(settings, store)
    assert (report.claimed, report.delivered, report.messages) == (3, 3, 3)
    for delivery in store.list_deliveries(ids=ids):
        assert delivery["status"] == "delivered"
        manuscript = sandbox.mediacentre.manuscripts[delivery["uid"]]
        assert delivery["remote_id"] == manuscript["id"]
        assert delivery["url"].endswith("/manuscripts/" + manuscript["id"])
        assert delivery["lease_owner"] is None and delivery["lease_until"] is None
        assert delivery["attempts"] == 1 and delivery["delivered_at"]
        (attempt,) = store.attempts_of(delivery["id"])
        assert attempt["n"] == 1 and attempt["kind"] == "send"
        assert attempt["outcome"] == "delivered" and attempt["http_status"] == 201
        assert attempt["remote_id"] == manuscript["id"]
        assert '"status": "accepted"' in attempt["excerpt"]
        assert attempt["owner"] == report.owner and attempt["batch"] == delivery["uid"]
        assert from_iso(attempt["started_at"]) <= from_iso(attempt["finished_at"])
        assert attempt["error"] is None
    assert dispatch_due(settings, store).claimed == 0  # nothing left
    store.close()


def test_retryable_failure_backs_off_then_succeeds_with_the_same_key(project, sandbox):
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url())], backoff_base=30, backoff_cap=600
    )
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    sandbox.mediacentre.faults.fail_next(2, status=503)
    before = datetime.now(UTC)
    first = dispatch_due(settings, store)
    assert first.retrying == 1
    row = store.get_delivery(delivery_id)
    assert row["status"] == "failed" and "503" in row["last_error"]
    wait = (from_iso(row["next_attempt_at"]) - before).total_seconds()
    assert 30 <= wait <= 90 + 5  # decorrelated: between base and 3 x base on the first retry
    assert dispatch_due(settings, store).claimed == 0  # not due yet
    second = dispatch_due(settings, store, now=later())
    assert second.retrying == 1
    third = dispatch_due(settings, store, now=later(2 * 3600))
    assert third.delivered == 1
    attempts = store.attempts_of(delivery_id)
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert [a["http_status"] for a in attempts] == [503, 503, 201]
    assert attempts[0]["retry_in"] >= 30 and attempts[0]["retry_at"]
    assert attempts[1]["retry_in"] <= 3 * attempts[0]["retry_in"] + 0.01
    uid = store.get_delivery(delivery_id)["uid"]
    assert sandbox.mediacentre.hits[uid] == 1  # 503s are answered before the key is looked at
    assert len(sandbox.mediacentre.manuscripts) == 1
    store.close()


def test_after_max_attempts_the_delivery_is_dead(project, sandbox):
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())], max_attempts=3)
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    sandbox.mediacentre.faults.fail_next(10, status=503)
    for hours in range(3):
        dispatch_due(settings, store, now=later(3600 * (hours + 1) * 10))
    row = store.get_delivery(delivery_id)
    assert row["status"] == "dead" and row["attempts"] == 3
    assert row["last_error"].startswith("gave up after 3 attempts")
    assert dispatch_due(settings, store, now=later(10**6)).claimed == 0
    store.close()


def test_rejected_content_is_dead_at_once(project, sandbox):
    # the CMS requires a title; a field map that drops it gets 422 Unprocessable
    channel = webhook("cms", sandbox.mediacentre.url(), field_map={"title": ""})
    settings = write_settings(project, [channel])
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    report = dispatch_due(settings, store)
    assert report.dead == 1
    row = store.get_delivery(delivery_id)
    assert row["status"] == "dead" and "422" in row["last_error"]
    (attempt,) = store.attempts_of(delivery_id)
    assert attempt["outcome"] == "rejected" and attempt["http_status"] == 422
    assert "missing fields" in attempt["excerpt"]
    store.close()


def test_auth_error_fails_the_delivery_and_pauses_the_channel(project, sandbox):
    bad = webhook("bad", sandbox.mediacentre.url(), secret="wrong", concurrency=1)
    good = webhook("good", sandbox.mediacentre.url("/good/manuscripts"))
    settings = write_settings(project, [bad, good], workers=1)
    store = open_store(settings.database)
    packs = add_packs(store, 4)
    bad_ids = queue(store, packs, "bad")
    good_ids = queue(store, packs, "good")
    report = dispatch_due(settings, store)
    assert "bad" in report.paused and "401" in report.paused["bad"]
    states = statuses(store, bad_ids)
    failed = [i for i in bad_ids if states[i] == "failed"]
    assert len(failed) == 1  # the first one told us; the rest went back untouched
    assert all(states[i] == "queued" for i in bad_ids if i not in failed)
    assert report.released == 3
    row = store.get_delivery(failed[0])
    assert "401" in row["last_error"] and row["next_attempt_at"]
    assert all(store.get_delivery(i)["attempts"] == 0 for i in bad_ids if i not in failed)
    assert all(s == "delivered" for s in statuses(store, good_ids).values())  # not held up
    assert any(a["action"] == "channel.paused" for a in store.audit_log(subject="channel:bad"))
    (attempt,) = store.attempts_of(failed[0])
    assert attempt["outcome"] == "auth" and attempt["http_status"] == 401
    store.close()


def test_quota_reschedules_at_the_reset_without_counting(project, sandbox):
    sandbox.wechat.api_daily_limits["draft/add"] = 0
    settings = write_settings(project, [wechat("wx", sandbox.wechat.base_url)])
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 2), "wx")
    report = dispatch_due(settings, store)
    assert report.quota == 2 and report.messages == 1
    for row in store.list_deliveries(ids=ids):
        assert row["status"] == "failed" and row["attempts"] == 0
        assert "45009" in row["last_error"]
        local = from_iso(row["next_attempt_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
        assert (local.hour, local.minute) == (0, 0)  # WeChat quotas reset at Beijing midnight
        (attempt,) = store.attempts_of(row["id"])
        assert attempt["outcome"] == "quota" and attempt["retry_at"] == row["next_attempt_at"]
    # the quota attempt does not count toward the rate window either
    assert store.recent_messages("wx", PAST) == 0
    store.close()


def test_rate_per_minute_limits_messages_per_run_and_window(project, sandbox):
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url(), rate_per_minute=3)]
    )
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 5), "cms")
    first = dispatch_due(settings, store)
    assert first.delivered == 3
    assert dispatch_due(settings, store).claimed == 0  # the minute is used up
    assert sorted(statuses(store, ids).values()).count("queued") == 2
    after_a_minute = dispatch_due(settings, store, now=later(61))
    assert after_a_minute.delivered == 2
    store.close()


def test_wechat_slot_is_one_draft_polled_to_delivered_with_each_article_url(project, sandbox):
    settings = write_settings(project, [wechat("wx", sandbox.wechat.base_url)])
    store = open_store(settings.database)
    packs = add_packs(store, 10)
    slot_a = queue(store, packs[:9], "wx", slot="2026-01-01T00:00:00+00:00")
    slot_b = queue(store, packs[9:], "wx", slot="2026-01-01T04:00:00+00:00")
    report = dispatch_due(settings, store)
    assert report.messages == 3 and report.submitted == 10  # 8 + 1 from slot a, 1 from slot b
    assert len(sandbox.wechat.all_drafts) == 3
    assert sorted(len(d["articles"]) for d in sandbox.wechat.all_drafts) == [1, 1, 8]
    rows = store.list_deliveries(ids=slot_a[:8])
    assert len({r["remote_id"] for r in rows}) == 1 and len({r["batch"] for r in rows}) == 1
    polled = sweep(settings, store, wait=10)
    assert polled.delivered == 10 and polled.submitted == 0
    published = {
        a["title"]: url
        for p in sandbox.wechat.published
        for a, url in zip(p.articles, p.urls, strict=True)
    }
    for row in store.list_deliveries(ids=slot_a + slot_b):
        assert row["status"] == "delivered"
        assert row["url"] == published[row["pack_title"]]
        outcomes = [(a["kind"], a["outcome"]) for a in store.attempts_of(row["id"])]
        assert outcomes == [("send", "submitted"), ("poll", "delivered")]
    assert sorted(sandbox.wechat.published_titles) == sorted(published)
    store.close()


def test_wechat_publish_failure_is_dead_with_the_reason(project, sandbox):
    sandbox.wechat.queue_outcomes(4)
    settings = write_settings(project, [wechat("wx", sandbox.wechat.base_url)])
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 2), "wx")
    dispatch_due(settings, store)
    sweep(settings, store, wait=10)
    for row in store.list_deliveries(ids=ids):
        assert row["status"] == "dead"
        assert "publish_status 4" in row["last_error"] and "审核" in row["last_error"]
        assert store.attempts_of(row["id"])[-1]["outcome"] == "rejected"
    assert sandbox.wechat.published == []
    store.close()


def test_lost_answer_on_a_non_idempotent_channel_ends_unknown_never_twice(project, sandbox):
    key = f"k-{time.time_ns()}"
    settings = write_settings(
        project, [wecom("robot", sandbox.wecom.url(key), timeout=0.5)], backoff_cap=0.1
    )
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "robot")
    sandbox.wecom.faults.hang_next(1, seconds=2, after=True)  # it posts, the answer is lost
    first = dispatch_due(settings, store)
    assert first.retrying == 1
    second = dispatch_due(settings, store, now=later())
    assert second.unknown == 1
    row = store.get_delivery(delivery_id)
    assert row["status"] == "unknown" and "cannot tell" in row["last_error"]
    assert len(sandbox.wecom.accepted(key)) == 1  # sent once, not twice
    assert [a["outcome"] for a in store.attempts_of(delivery_id)] == ["retry", "unknown"]
    store.close()


def test_template_error_is_recorded_with_file_and_line(project, sandbox):
    templates = project / "channels"
    shutil.copytree(REPO / "channels", templates)
    (templates / "webhook" / "manuscript.json.j2").write_text(
        '{\n  "title": {{ pack.title | tojson }},\n  "x": {{ pack.nonexistent }}\n}\n'
    )
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url())], templates=templates
    )
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    report = dispatch_due(settings, store)
    assert report.retrying == 1
    (attempt,) = store.attempts_of(delivery_id)
    assert attempt["outcome"] == "render"
    assert "webhook/manuscript.json.j2, line 3" in attempt["error"]
    assert sandbox.mediacentre.requests == 0
    store.close()


def test_outbox_delivered_as_one_folder(project, sandbox):
    folder = project / "screen"
    settings = write_settings(project, [outbox("screen", folder)])
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 3), "screen")
    assert dispatch_due(settings, store).delivered == 3
    for row in store.list_deliveries(ids=ids):
        assert (folder / row["uid"] / "DONE").exists()
        assert row["url"] == (folder / row["uid"]).as_uri()
    assert len(list(folder.iterdir())) == 3
    store.close()


def test_messages_are_rendered_in_the_configured_time_zone(project):
    folder = project / "screen"
    settings = write_settings(project, [outbox("screen", folder)], timezone="Europe/Berlin")
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "screen", at="2026-01-01T00:00:00+00:00")
    assert dispatch_due(settings, store).delivered == 1
    uid = store.get_delivery(delivery_id)["uid"]
    playlist = json.loads((folder / uid / "playlist.json").read_text(encoding="utf-8"))
    assert json.dumps(playlist).count("2026-01-01T01:00:00+01:00") >= 1
    store.close()


def test_channel_concurrency_and_the_pool_bound_hold(project):
    centre = CountingCentre(faults=Faults(latency=0.15))
    running = Running(centre, "127.0.0.1", 0)
    try:
        channels = [
            webhook("a", centre.url("/a/manuscripts"), concurrency=3),
            webhook("b", centre.url("/b/manuscripts"), concurrency=1),
            webhook("c", centre.url("/c/manuscripts"), concurrency=2),
        ]
        settings = write_settings(project, channels, workers=5)
        store = open_store(settings.database)
        packs = add_packs(store, 8)
        for name in "abc":
            queue(store, packs, name)
        started = time.monotonic()
        report = dispatch_due(settings, store)
        elapsed = time.monotonic() - started
        assert report.delivered == 24
        # the limits hold (how close a busy machine gets to them varies: upper bounds)
        assert 1 <= centre.peak["/a/manuscripts"] <= 3
        assert centre.peak["/b/manuscripts"] == 1
        assert 1 <= centre.peak["/c/manuscripts"] <= 2
        assert 3 <= centre.peak_total <= 5  # the channels did run side by side
        # b (8 x 0.15 s one at a time) bounds the run; the others run beside it. All 24 one
        # after another would take 3.6 s.
        assert elapsed < 24 * 0.15 * 0.8
        store.close()
    finally:
        running.stop()


def test_leases_are_renewed_while_a_slow_send_is_in_flight(project):
    centre = MediaCentreSandbox(faults=Faults(latency=1.2))
    running = Running(centre, "127.0.0.1", 0)
    try:
        settings = write_settings(project, [webhook("cms", centre.url())], lease_seconds=0.4)
        store = open_store(settings.database)
        (delivery_id,) = queue(store, add_packs(store, 1), "cms")
        swept: list[Any] = []

        def sweeper() -> None:
            other = Store(settings.database)
            time.sleep(0.8)  # twice the lease: a dead sender's lease would have expired
            swept.append(sweep(settings, other))
            other.close()

        thread = threading.Thread(target=sweeper)
        thread.start()
        report = dispatch_due(settings, store)
        thread.join()
        assert report.delivered == 1
        assert swept[0].expired == 0  # the heartbeat kept the lease
        assert [a["outcome"] for a in store.attempts_of(delivery_id)] == ["delivered"]
        assert centre.hits[store.get_delivery(delivery_id)["uid"]] == 1
        store.close()
    finally:
        running.stop()


# -- sweeper recovery ---------------------------------------------------------------------------


class Crash(BaseException):
    """Stands in for SIGKILL: escapes every ``except Exception`` and leaves the lease behind."""


def _expire_leases(settings: Settings) -> None:
    time.sleep(settings.dispatch.lease_seconds + 0.1)


def test_claimed_but_never_started_goes_back_to_the_queue(project, sandbox):
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url())], lease_seconds=0.2
    )
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 2), "cms")
    now = datetime.now(UTC)
    store.claim_due(
        now=now.isoformat(),
        owner="ghost",
        lease_until=(now + timedelta(seconds=0.2)).isoformat(),
        channels=["cms"],
    )
    _expire_leases(settings)
    report = sweep(settings, store)
    assert (report.expired, report.released, report.recovered) == (2, 2, 0)
    assert set(statuses(store, ids).values()) == {"queued"}
    assert sandbox.mediacentre.requests == 0
    assert dispatch_due(settings, store).delivered == 2
    store.close()


def test_crashed_webhook_send_is_resent_with_the_same_key(project, sandbox, monkeypatch):
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url())], lease_seconds=0.3
    )
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    # the process dies after the CMS accepted the manuscript, before the outcome was stored
    original = store.mark_delivered

    def die(*args: Any, **kwargs: Any) -> bool:
        raise Crash()

    monkeypatch.setattr(store, "mark_delivered", die)
    dispatch_due(settings, store)
    monkeypatch.setattr(store, "mark_delivered", original)
    row = store.get_delivery(delivery_id)
    assert row["status"] == "sending"
    _expire_leases(settings)
    report = sweep(settings, store)
    assert (report.expired, report.recovered, report.delivered) == (1, 1, 1)
    row = store.get_delivery(delivery_id)
    assert row["status"] == "delivered"
    assert len(sandbox.mediacentre.manuscripts) == 1  # the CMS deduped the resend by key
    assert sandbox.mediacentre.hits[row["uid"]] == 2
    assert row["remote_id"] == sandbox.mediacentre.manuscripts[row["uid"]]["id"]
    first, second = store.attempts_of(delivery_id)
    assert first["outcome"] == "interrupted" and "lease of dispatch:" in first["error"]
    assert (second["kind"], second["outcome"]) == ("recover", "delivered")
    assert json.loads(second["excerpt"])["id"] == row["remote_id"]
    store.close()


def test_crash_after_wechat_submit_is_reconciled_not_republished(project, monkeypatch):
    wx = WechatSandbox(publish_polls=1, publish_seconds=0.0)
    with SandboxServers(wechat=wx) as sb:
        settings = write_settings(project, [wechat("wx", sb.wechat.base_url)], lease_seconds=0.3)
        store = open_store(settings.database)
        ids = queue(store, add_packs(store, 3), "wx")
        original = store.save_remote_state

        def save(ids_: Any, state: dict[str, Any], **kw: Any) -> None:
            if state.get("publish_id"):  # submit went through; the process dies right here
                raise Crash()
            original(ids_, state, **kw)

        monkeypatch.setattr(store, "save_remote_state", save)
        dispatch_due(settings, store)
        monkeypatch.setattr(store, "save_remote_state", original)
        recorded = store.get_delivery(ids[0])["remote_state"]
        assert recorded["step"] == "submit" and recorded["pending"] is True
        assert len(sb.wechat.publishes) == 1
        _expire_leases(settings)
        report = sweep(settings, store)
        # the draft is gone and its publish_id was never recorded; titles are no proof, but each
        # article's 阅读原文 is its delivery's own tracked link, which the publish list shows back
        assert report.recovered == 3 and report.delivered == 3 and report.unknown == 0
        assert len(sb.wechat.publishes) == 1  # never submitted twice
        assert len(sb.wechat.published) == 1
        article = sb.wechat.published[0]
        for row in store.list_deliveries(ids=ids):
            assert row["status"] == "delivered" and row["url"] in article.urls
            kinds = [(a["kind"], a["outcome"]) for a in store.attempts_of(row["id"])]
            assert kinds == [("send", "interrupted"), ("recover", "delivered")]
        store.close()


def test_a_resent_edition_is_never_matched_to_the_older_article_by_title(project):
    """Edition 2 of a pack whose draft vanished before any submit (deleted by hand) must not be
    taken for edition 1's article, which carries the same title."""
    wx = WechatSandbox(publish_polls=1, publish_seconds=0.0)
    with SandboxServers(wechat=wx) as sb:
        settings = write_settings(project, [wechat("wx", sb.wechat.base_url)], lease_seconds=0.3)
        store = open_store(settings.database)
        (pack,) = add_packs(store, 1)
        (first,) = queue(store, [pack], "wx")
        dispatch_due(settings, store)
        sweep(settings, store, wait=3)
        assert store.get_delivery(first)["status"] == "delivered"
        title = wx.published[0].articles[0]["title"]
        second = store.queue_delivery(pack, "wx", scheduled_at=PAST, resend=True)
        now = datetime.now(UTC)
        (row,) = store.claim_due(
            now=now.isoformat(), owner="lost", lease_until=now.isoformat(), channels=["wx"]
        )
        state = {
            "mode": "publish",
            "uids": [row["uid"]],
            "titles": [title],
            "step": "submit",
            "pending": True,
            "draft_media_id": "DRAFT_deleted_by_hand",
        }
        store.save_remote_state([second], state, at=now.isoformat())
        _expire_leases(settings)
        report = sweep(settings, store)
        assert report.unknown_ids == [second]
        row = store.get_delivery(second)
        assert row["status"] == "unknown" and row["url"] is None
        assert wx.published[0].article_id in row["last_error"]  # named, never taken
        assert len(wx.publishes) == 1
        store.close()


def test_crash_with_a_post_in_flight_on_wecom_is_unknown(project, sandbox, monkeypatch):
    key = f"k-{time.time_ns()}"
    settings = write_settings(project, [wecom("robot", sandbox.wecom.url(key))], lease_seconds=0.3)
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "robot")

    def die(*args: Any, **kwargs: Any) -> Any:
        raise Crash()  # the process dies with the POST going out: nobody can tell if it left

    monkeypatch.setattr(requests.Session, "post", die)
    dispatch_due(settings, store)
    monkeypatch.undo()
    assert store.get_delivery(delivery_id)["remote_state"]["pending"] is True
    _expire_leases(settings)
    report = sweep(settings, store)
    assert report.unknown_ids == [delivery_id]
    assert store.get_delivery(delivery_id)["status"] == "unknown"
    assert sandbox.wecom.accepted(key) == []  # never sent blindly
    store.close()


# -- operator actions ---------------------------------------------------------------------------


def test_retry_and_cancel(project, sandbox):
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())], max_attempts=1)
    store = open_store(settings.database)
    a, b, c = queue(store, add_packs(store, 3), "cms")
    store.cancel_delivery(c)
    sandbox.mediacentre.faults.fail_next(2, status=503)
    dispatch_due(settings, store)
    assert statuses(store) == {a: "dead", b: "dead", c: "cancelled"}
    fresh = queue(store, add_packs(store, 1, "Q"), "cms")[0]
    with pytest.raises(InvalidTransition):
        store.retry_delivery(fresh)  # queued: nothing to retry
    store.retry_delivery(a)
    store.retry_delivery(c)
    row = store.get_delivery(a)
    assert (row["status"], row["attempts"], row["remote_state"]) == ("queued", 0, {})
    report = dispatch_due(settings, store)
    assert report.delivered == 3  # a, c and the new one
    with pytest.raises(InvalidTransition):
        store.retry_delivery(a)  # delivered
    with pytest.raises(InvalidTransition):
        store.cancel_delivery(a)
    actions = [e["action"] for e in store.audit_log()]
    assert actions.count("delivery.retry") == 2 and actions.count("delivery.cancel") == 1
    # the attempt log keeps the dead attempt; numbering continues
    assert [x["n"] for x in store.attempts_of(a)] == [1, 2]
    store.close()


def test_cancel_is_refused_while_sending(project):
    settings = write_settings(project, [webhook("cms", "http://127.0.0.1:9/x")])
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    store.claim_due(
        now=datetime.now(UTC).isoformat(),
        owner="x",
        lease_until=later().isoformat(),
        channels=["cms"],
    )
    with pytest.raises(InvalidTransition):
        store.cancel_delivery(delivery_id)
    store.close()


# -- CLI ----------------------------------------------------------------------------------------


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(project / "config.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run(capsys: Any, project: Path, *args: str) -> tuple[int, str, str]:
    """The same command in this process (fast): exit code, stdout, stderr."""
    from media_matrix.cli import cli
    from media_matrix.cli.common import run_guarded

    capsys.readouterr()
    code = run_guarded(cli, ["--config", str(project / "config.yaml"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_dispatch_once_and_deliveries(project, sandbox, capsys):
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())], max_attempts=1)
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 3), "cms")
    store.close()
    sandbox.mediacentre.faults.fail_next(1, status=503)
    result = _cli(project, "dispatch", "--once", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dispatch"]["claimed"] == 3 and out["dispatch"]["delivered"] == 2
    code, text, _ = _run(capsys, project, "deliveries", "--json")
    listing = json.loads(text)
    assert code == 0 and len(listing) == 3
    assert {
        "id",
        "pack_id",
        "channel",
        "status",
        "scheduled_at",
        "attempts",
        "remote_id",
        "url",
        "last_error",
    } <= set(listing[0])
    dead = json.loads(_run(capsys, project, "deliveries", "--status", "dead", "--json")[1])
    assert len(dead) == 1 and "503" in dead[0]["last_error"]
    dead_id = str(dead[0]["id"])
    shown = json.loads(_run(capsys, project, "deliveries", "show", dead_id, "--json")[1])
    assert shown["attempt_log"][0]["http_status"] == 503
    text = _cli(project, "deliveries", "show", dead_id).stdout
    assert "尝试记录" in text and "暂时失败" in text
    assert _run(capsys, project, "deliveries", "retry", dead_id)[0] == 0
    assert _run(capsys, project, "dispatch", "--once")[0] == 0
    final = json.loads(_run(capsys, project, "deliveries", "--channel", "cms", "--json")[1])
    assert {d["status"] for d in final} == {"delivered"} and len(final) == len(ids)
    code, _, err = _run(capsys, project, "deliveries", "cancel", str(ids[0]))
    assert code == 1 and "cannot be cancelled" in err
    assert _run(capsys, project, "deliveries", "show", "999")[0] == 1
    assert _run(capsys, project, "deliveries", "--status", "nope")[0] == 2
    assert _run(capsys, project, "dispatch", "--once", "--channel", "nope")[0] == 2


def test_operator_retry_keeps_the_remote_state_of_a_failed_delivery(project, sandbox):
    """A failed WeChat attempt may have lost the answer to a submit: the retry must let the
    adapter look it up, so the recorded state survives an operator's retry."""
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())])
    store = open_store(settings.database)
    (failed, dead) = queue(store, add_packs(store, 2), "cms")
    state = {"step": "submit", "pending": True, "draft_media_id": "m1"}
    store.save_remote_state([failed, dead], state, at=datetime.now(UTC).isoformat())
    for delivery, status in ((failed, "failed"), (dead, "dead")):  # through the state machine
        store.execute("UPDATE deliveries SET status = 'sending' WHERE id = ?", (delivery,))
        store.execute("UPDATE deliveries SET status = ? WHERE id = ?", (status, delivery))
    store.retry_delivery(failed)
    store.retry_delivery(dead)
    assert store.get_delivery(failed)["remote_state"] == state
    assert store.get_delivery(dead)["remote_state"] == {}
    store.close()


# -- rate and backlog: limits inside the claim's transaction (issue 10) -------------------------


def test_rate_budget_is_taken_in_the_claim_transaction_across_paths(project, sandbox):
    """Four dispatchers (each its own connection, like the daemon's slot job, its sweep, a CLI
    `dispatch --once` and the web) start together: the channel's rate holds for all of them."""
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url(), rate_per_minute=3)]
    )
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 12), "cms")
    barrier = threading.Barrier(4)
    reports: list[Any] = []

    def run() -> None:
        own = open_store(settings.database)
        barrier.wait()
        reports.append(dispatch_due(settings, own))
        own.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.claimed for r in reports) == 3
    assert sorted(statuses(store, ids).values()).count("delivered") == 3
    now = datetime.now(UTC).isoformat()
    claim = {"owner": "x", "lease_until": now, "channels": ["cms"], "now": now}
    assert store.claim_due(**claim, rates={"cms": 3}, window_start=PAST) == []
    store.close()


def test_claims_come_in_bounded_batches(project, sandbox):
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())], claim_batch=5)
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 12), "cms")
    assert dispatch_due(settings, store).claimed == 5
    assert dispatch_due(settings, store).claimed == 5
    assert dispatch_due(settings, store).claimed == 2
    assert set(statuses(store, ids).values()) == {"delivered"}
    store.close()


def test_daily_quota_holds_at_the_claim_on_the_local_day_of_sending(project, sandbox):
    settings = write_settings(
        project, [webhook("cms", sandbox.mediacentre.url(), daily_quota=2)], claim_batch=50
    )
    store = open_store(settings.database)
    ids = queue(store, add_packs(store, 5), "cms")  # hand-timed, all due: no planner involved
    tz = ZoneInfo("Asia/Shanghai")
    evening = datetime(2031, 3, 3, 23, 50, tzinfo=tz)
    assert dispatch_due(settings, store, now=evening).delivered == 2
    assert dispatch_due(settings, store, now=evening + timedelta(minutes=5)).claimed == 0
    after_midnight = datetime(2031, 3, 4, 0, 5, tzinfo=tz)  # a new local day, 16:05 UTC
    assert dispatch_due(settings, store, now=after_midnight).delivered == 2
    assert sorted(statuses(store, ids).values()).count("queued") == 1
    store.close()


def test_a_submitted_delivery_too_old_becomes_unknown_with_the_reason(project):
    wx = WechatSandbox(publish_polls=10_000, publish_seconds=10_000)  # never finishes
    with SandboxServers(wechat=wx) as sb:
        settings = write_settings(
            project, [wechat("wx", sb.wechat.base_url)], submitted_max_age="24h"
        )
        store = open_store(settings.database)
        (delivery,) = queue(store, add_packs(store, 1), "wx")
        assert dispatch_due(settings, store).submitted == 1
        assert sweep(settings, store, now=later(23 * 3600)).unknown == 0
        assert store.get_delivery(delivery)["status"] == "submitted"
        report = sweep(settings, store, now=later(25 * 3600))
        assert report.unknown_ids == [delivery]
        row = store.get_delivery(delivery)
        assert row["status"] == "unknown"
        assert "submitted_max_age" in row["last_error"] and row["remote_id"] in row["last_error"]
        assert sweep(settings, store, now=later(26 * 3600)).polled == 0  # polled no more
        store.close()


def test_every_stored_delivery_time_has_one_format(project, sandbox):
    """UTC, fixed microsecond precision: text order is time order (issue 10)."""
    settings = write_settings(project, [webhook("cms", sandbox.mediacentre.url())])
    store = open_store(settings.database)
    pack = add_packs(store, 1)[0]
    scheduling_now = datetime.now(UTC) - timedelta(seconds=1)
    scheduling.queue_pack(settings, store, pack, "cms", scheduling_now, now=scheduling_now)
    dispatch_due(settings, store)
    shape = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
    columns = {
        "deliveries": ("scheduled_at", "created_at", "updated_at", "delivered_at", "claimed_at"),
        "attempts": ("started_at", "finished_at"),
    }
    seen = 0
    for table, names in columns.items():
        for row in store.query(f"SELECT {', '.join(names)} FROM {table}"):
            for name, value in row.items():
                assert value is not None and shape.match(value), (table, name, value)
                seen += 1
    assert seen == 7
    store.close()


def test_the_estimate_is_written_when_a_delivery_becomes_delivered(project, sandbox):
    """No `stats pull` needed: right after dispatch every delivered row has its estimated
    reach; a poll that finishes a WeChat publish writes it too (issue 10)."""
    settings = write_settings(
        project,
        [
            webhook("cms", sandbox.mediacentre.url(), reach=3000),
            wechat("wx", sandbox.wechat.base_url, reach=52000),
        ],
    )
    store = open_store(settings.database)
    packs = add_packs(store, 2)
    (cms,) = queue(store, packs[:1], "cms")
    (wx,) = queue(store, packs[1:], "wx")
    report = dispatch_due(settings, store)
    assert report.delivered == 1 and report.submitted == 1 and report.estimated == 1
    (row,) = [m for m in store.metrics_of(cms) if m["source"] == "estimated"]
    assert row["impressions"] == 3000
    assert store.metrics_of(wx) == []  # not delivered yet: no estimate
    polled = sweep(settings, store, wait=5)
    assert polled.delivered == 1 and polled.estimated == 1
    assert [m["impressions"] for m in store.metrics_of(wx)] == [52000]
    pulled = pull_stats(settings, store, days=1)
    assert pulled["estimated_rows"] == 0  # pull refreshes measured figures only
    store.close()


_OUTBOX_WRITER = """
import sys, time
from pathlib import Path
from media_matrix.adapters.outbox import _lock
tmp = Path(sys.argv[1])
lock = _lock(tmp.with_name(tmp.name + ".lock"))
if sys.argv[2] == "folder":
    tmp.mkdir()
    (tmp / "article.html").write_text("half")
print("ready", flush=True)
time.sleep(60)
"""


def test_outbox_recovery_removes_what_a_sigkill_left(project, sandbox):
    """Writers killed (SIGKILL) mid-write leave a temp folder and its `.lock`, or a bare `.lock`;
    the next write removes them, but never a live writer's (issue 10)."""
    root = project / "screen"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def writer(name: str, kind: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _OUTBOX_WRITER, str(root / name), kind],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    killed = [writer(".tmp-a-0001", "folder"), writer(".tmp-b-0002", "lock")]
    live = writer(".tmp-c-0003", "folder")
    try:
        for proc in killed:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        before = sorted(p.name for p in root.iterdir())
        assert ".tmp-a-0001.lock" in before and ".tmp-b-0002.lock" in before
        settings = write_settings(project, [outbox("screen", root)])
        store = open_store(settings.database)
        (delivery,) = queue(store, add_packs(store, 1), "screen")
        assert dispatch_due(settings, store).delivered == 1
        left = sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))
        assert left == [".tmp-c-0003", ".tmp-c-0003.lock"]  # the live writer's, untouched
        assert (root / ".tmp-c-0003" / "article.html").read_text() == "half"
        store.close()
    finally:
        live.kill()
        live.wait(10)
