"""Fenced senders: every write a sender makes holds only while it holds an unexpired lease.

The end-to-end case runs a real ``media-matrix dispatch --once`` process against the WeChat
sandbox on loopback, stops it (SIGSTOP) the moment its draft/add reaches the sandbox, lets its
lease expire, recovers the delivery with a sweeper in this process (which publishes it), then
resumes the first process (SIGCONT): it must stop at its next checkpoint instead of submitting
its own draft, so WeChat publishes the article exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_dispatch import add_packs, queue, wechat, write_settings  # noqa: E402

from media_matrix.dispatch import sweep  # noqa: E402
from media_matrix.sandbox import SandboxServers, WechatSandbox  # noqa: E402
from media_matrix.store import open_store  # noqa: E402
from media_matrix.store.dispatching import LeaseLost  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "f.db")
    yield s
    s.close()


def _claimed(store, owner: str, lease: float = 60.0) -> tuple[int, datetime]:
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "c")
    now = datetime.now(UTC)
    rows = store.claim_due(
        now=_iso(now), owner=owner, lease_until=_iso(now + timedelta(seconds=lease)), channels=["c"]
    )
    assert [r["id"] for r in rows] == [delivery]
    return delivery, now


def test_a_checkpoint_after_a_takeover_writes_nothing_and_raises(store):
    delivery, now = _claimed(store, "first", lease=1)
    store.save_remote_state([delivery], {"step": "a"}, at=_iso(now), owner="first")
    later = now + timedelta(seconds=5)
    taken = store.take_over(
        [delivery], owner="sweeper", lease_until=_iso(later + timedelta(60)), now=_iso(later)
    )
    assert [r["id"] for r in taken] == [delivery]
    with pytest.raises(LeaseLost, match="first"):
        store.save_remote_state([delivery], {"step": "b"}, at=_iso(later), owner="first")
    assert store.get_delivery(delivery)["remote_state"] == {"step": "a"}
    with pytest.raises(LeaseLost):
        store.start_attempts([delivery], owner="first", started_at=_iso(later))
    assert store.attempts_of(delivery) == []
    assert store.renew_leases([delivery], "first", _iso(later), now=_iso(later)) == []
    assert not store.mark_delivered(
        delivery, owner="first", at=_iso(later), remote_id="x", url=None
    )
    assert store.get_delivery(delivery)["status"] == "sending"


def test_an_expired_lease_is_lost_even_before_anyone_takes_it(store):
    """A sender that stalled past its lease must stop: a sweeper may be taking it right now."""
    delivery, now = _claimed(store, "first", lease=1)
    late = _iso(now + timedelta(seconds=2))
    assert store.renew_leases([delivery], "first", late, now=late) == []
    with pytest.raises(LeaseLost):
        store.save_remote_state([delivery], {"step": "b"}, at=late, owner="first")
    soon = _iso(now + timedelta(seconds=0.5))
    assert store.renew_leases([delivery], "first", late, now=soon) == [delivery]


class StallingWechat(WechatSandbox):
    """Stops the sending process (SIGSTOP) when its first draft/add arrives, then answers: the
    answer waits in the stopped sender's socket until it is resumed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stall_pid: int | None = None
        self.stalled = threading.Event()

    def _draft_add(self, req: Any, appid: str, body: Any) -> Any:
        if self.stall_pid and not self.stalled.is_set():
            os.kill(self.stall_pid, signal.SIGSTOP)
            self.stalled.set()
        return super()._draft_add(req, appid, body)


def test_a_sender_stalled_past_its_lease_does_not_publish_twice(tmp_path):
    wx = StallingWechat(publish_polls=1, publish_seconds=0.0)
    with SandboxServers(wechat=wx) as sb:
        settings = write_settings(tmp_path, [wechat("wx", sb.wechat.base_url)], lease_seconds=1.0)
        store = open_store(settings.database)
        (delivery,) = queue(store, add_packs(store, 1), "wx")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "media_matrix",
                "--config",
                str(tmp_path / "config.yaml"),
                "dispatch",
                "--once",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wx.stall_pid = first.pid
        try:
            assert wx.stalled.wait(60), first.communicate(timeout=5)[0]
            time.sleep(settings.dispatch.lease_seconds + 0.3)  # the lease runs out meanwhile
            report = sweep(settings, store, wait=5.0)
            assert report.recovered == 1 and report.delivered == 1, report
            assert len(wx.publishes) == 1
        finally:
            os.kill(first.pid, signal.SIGCONT)
        output = first.communicate(timeout=60)[0]
        assert first.returncode == 0, output
        row = store.get_delivery(delivery)
        assert row["status"] == "delivered"
        assert len(wx.all_drafts) == 2  # the stalled sender's draft stays a draft
        assert len(wx.publishes) == 1 and len(wx.published) == 1, output
        assert row["remote_id"] == wx.published[0].publish_id
        kinds = [(a["kind"], a["outcome"]) for a in store.attempts_of(delivery)]
        assert kinds == [
            ("send", "interrupted"),
            ("recover", "submitted"),
            ("poll", "delivered"),
            ("fence", "lease_lost"),  # the resumed sender noticed and stopped
        ]
        store.close()
