"""Editor review over a real SQLite file: transitions, all-or-nothing batches, the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from media_matrix import review
from media_matrix.models import Item, PackStatus
from media_matrix.store import NotFound, open_store
from media_matrix.timeutil import now_iso

REPO = Path(__file__).resolve().parent.parent


def add_pack(store, title: str, status: PackStatus = PackStatus.NEW) -> int:
    item = Item(guid=title, title=title, text=title * 5, content_hash=f"h-{title}")
    return store.insert_pack("test", item, at=now_iso(), status=status)


@pytest.fixture
def store(tmp_path):
    store = open_store(tmp_path / "review.db")
    yield store
    store.close()


def statuses(store, ids):
    return {p.id: p.status for p in store.list_packs(ids=list(ids))}


def test_approve_new_and_rejected_packs_with_audit(store):
    a, b = add_pack(store, "a"), add_pack(store, "b", PackStatus.REJECTED)
    result = review.approve(store, [a, b], "张编辑", "内容准确")
    assert result.before == {a: "new", b: "rejected"}
    assert statuses(store, [a, b]) == {a: "approved", b: "approved"}
    log = store.audit_log()
    assert [(r["who"], r["action"], r["subject"], r["note"]) for r in reversed(log)] == [
        ("张编辑", "approve", f"pack:{a}", "内容准确"),
        ("张编辑", "approve", f"pack:{b}", "内容准确"),
    ]
    assert all(r["at"].endswith("+00:00") for r in log)


def test_batch_is_all_or_nothing(store):
    new, approved = add_pack(store, "new"), add_pack(store, "ok", PackStatus.APPROVED)
    with pytest.raises(review.ReviewError, match=str(approved)):
        review.approve(store, [new, approved], "ed")
    assert statuses(store, [new, approved]) == {new: "new", approved: "approved"}
    with pytest.raises(NotFound):
        review.approve(store, [new, 9999], "ed")
    assert statuses(store, [new]) == {new: "new"}
    assert store.audit_log() == []


def test_archived_and_repeated_transitions_are_refused(store):
    archived = add_pack(store, "old", PackStatus.ARCHIVED)
    rejected = add_pack(store, "no", PackStatus.REJECTED)
    for action in (review.approve, review.reject):
        with pytest.raises(review.ReviewError):
            action(store, [archived], "ed")
    with pytest.raises(review.ReviewError, match="驳回"):
        review.reject(store, [rejected], "ed")
    with pytest.raises(ValueError):
        review.approve(store, [], "ed")


def test_reject_approved_cancels_unstarted_deliveries_only(store):
    pack = add_pack(store, "p", PackStatus.APPROVED)
    queued = store.queue_delivery(pack, "a", scheduled_at="2030-01-01T00:00:00+00:00")
    sent = store.queue_delivery(pack, "b", scheduled_at="2020-01-01T00:00:00+00:00")
    store.execute("UPDATE deliveries SET status = 'sending' WHERE id = ?", (sent,))
    store.execute("UPDATE deliveries SET status = 'delivered' WHERE id = ?", (sent,))
    result = review.reject(store, [pack], "李编辑", "数据有误")
    assert result.cancelled_deliveries == {pack: [queued]}
    assert result.started_deliveries == {pack: [sent]}
    assert store.get_delivery(queued)["status"] == "cancelled"
    assert store.get_delivery(sent)["status"] == "delivered"
    note = store.audit_log()[0]["note"]
    assert "数据有误" in note and f"撤回未开始的投递 {queued}" in note
    # reconsidered: a rejected pack may be approved again
    review.approve(store, [pack], "李编辑")
    assert statuses(store, [pack]) == {pack: "approved"}


def test_urgent_flag(store):
    pack = add_pack(store, "寒潮预警")
    assert review.set_urgent(store, pack, True, "值班编辑") is True
    assert store.get_pack(pack).urgent
    assert review.set_urgent(store, pack, True, "值班编辑") is False  # already on: audited anyway
    assert review.set_urgent(store, pack, False, "值班编辑") is True
    assert not store.get_pack(pack).urgent
    actions = [r["action"] for r in reversed(store.audit_log())]
    assert actions == ["urgent_on", "urgent_on", "urgent_off"]
    rejected = add_pack(store, "x", PackStatus.REJECTED)
    with pytest.raises(review.ReviewError):
        review.set_urgent(store, rejected, True, "ed")
    with pytest.raises(NotFound):
        review.set_urgent(store, 12345, True, "ed")


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=60,
    )


class _Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


def cli_inprocess(capsys, config: Path, *args: str) -> _Result:
    """The CLI in this process (fast), with the same exit-code mapping as `main`."""
    from media_matrix.cli import cli
    from media_matrix.cli.common import run_guarded

    code = run_guarded(cli, ["--config", str(config), *args])
    captured = capsys.readouterr()
    return _Result(code, captured.out, captured.err)


def test_cli_review_and_audit(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": "var/t.db"}), encoding="utf-8")
    store = open_store(tmp_path / "var" / "t.db")
    a, b = add_pack(store, "a"), add_pack(store, "b")
    store.close()

    ok = run_cli(config, "packs", "approve", str(a), str(b), "--by", "王编辑", "--note", "好")
    assert ok.returncode == 0, ok.stderr
    assert "已通过 2 个内容包" in ok.stdout
    again = cli_inprocess(capsys, config, "packs", "approve", str(a))
    assert again.returncode == 1 and "只有" in again.stderr
    missing = cli_inprocess(capsys, config, "packs", "reject", "999")
    assert missing.returncode == 1
    urgent = cli_inprocess(capsys, config, "packs", "urgent", str(a), "--by", "王编辑", "--json")
    assert urgent.returncode == 0, urgent.stderr
    assert json.loads(urgent.stdout)["urgent"] is True
    off = cli_inprocess(capsys, config, "packs", "urgent", str(a), "--off", "--by", "王编辑")
    assert off.returncode == 0 and "非紧急" in off.stdout

    log = cli_inprocess(capsys, config, "audit", "--json", "--limit", "3")
    assert log.returncode == 0
    rows = json.loads(log.stdout)
    assert [r["action"] for r in rows] == ["urgent_off", "urgent_on", "approve"]
    assert {r["who"] for r in rows} == {"王编辑"}
    table = cli_inprocess(capsys, config, "audit")
    assert "操作日志" in table.stdout and "标记紧急" in table.stdout
