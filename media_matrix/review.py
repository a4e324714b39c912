"""Editor review: approve, reject, flag urgent. Service functions, no printing.

Transitions (anything else raises :class:`ReviewError`, and nothing changes):

    approve   new -> approved, rejected -> approved   (a rejected pack may be reconsidered)
    reject    new -> rejected, approved -> rejected   (withdraws an approval: the pack's
              deliveries that have not started are cancelled; started ones are left alone and
              reported, the operator decides about them)
    content   a source changed an approved pack: approved -> new (its unstarted deliveries are
              held: dispatch claims only approved packs' deliveries), or approved again by the
              rule of an auto-approve feed; audited with the diff (see content_changed)
    urgent    on/off for new and approved packs (an urgent pack still needs approval before it
              goes out); not for rejected or archived packs

A batch (``approve 3 4 5``) is all or nothing: every pack is checked first, inside one
transaction, so a bad id or a bad transition leaves every pack as it was. Every change writes
one audit row per pack: who, when, action, subject ``pack:ID``, note.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from media_matrix.models import PACK_STATUS_LABELS, PackStatus, pack_subject
from media_matrix.store import NotFound, Store, StoreError

APPROVABLE = (PackStatus.NEW, PackStatus.REJECTED)
REJECTABLE = (PackStatus.NEW, PackStatus.APPROVED)
FLAGGABLE = (PackStatus.NEW, PackStatus.APPROVED)


class ReviewError(StoreError):
    """A review action that the pack's status does not allow (exit 1 in the CLI)."""


@dataclass
class ReviewResult:
    """What one action did to each pack."""

    action: str
    by: str
    pack_ids: list[int]
    before: dict[int, str]
    after: str | None = None
    cancelled_deliveries: dict[int, list[int]] = field(default_factory=dict)
    started_deliveries: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "by": self.by,
            "packs": [
                {
                    "id": i,
                    "before": self.before[i],
                    "after": self.after,
                    "cancelled_deliveries": self.cancelled_deliveries.get(i, []),
                    "started_deliveries": self.started_deliveries.get(i, []),
                }
                for i in self.pack_ids
            ],
        }


subject = pack_subject  # the audit subject of a pack (kept here for the faces)


def _ids(ids: Iterable[int]) -> list[int]:
    out = list(dict.fromkeys(int(i) for i in ids))
    if not out:
        raise ValueError("no pack id given")
    return out


def _statuses(store: Store, ids: list[int]) -> dict[int, str]:
    found = {p.id: p.status for p in store.list_packs(ids=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"pack {missing[0]} not found")
    return found


def _check(statuses: dict[int, str], allowed: tuple[PackStatus, ...], verb: str) -> None:
    bad = [(i, s) for i, s in statuses.items() if s not in allowed]
    if bad:
        listed = ", ".join(f"{i} ({PACK_STATUS_LABELS.get(s, s)} {s})" for i, s in bad)
        wanted = " / ".join(f"{PACK_STATUS_LABELS[s]} {s}" for s in allowed)
        raise ReviewError(
            f"无法{verb}: 内容包 {listed}; 只有 {wanted} 的内容包可以{verb} "
            f"(cannot {_EN[verb]} pack {bad[0][0]}: it is {bad[0][1]}); 未做任何更改"
        )


_EN = {"通过": "approve", "驳回": "reject", "标记紧急": "flag"}


def approve(store: Store, ids: Iterable[int], by: str, note: str | None = None) -> ReviewResult:
    """Approve packs (new or rejected); all or nothing."""
    pack_ids = _ids(ids)
    with store.transaction():
        before = _statuses(store, pack_ids)
        _check(before, APPROVABLE, "通过")
        store.set_pack_status(pack_ids, PackStatus.APPROVED)
        for pack_id in pack_ids:
            store.audit(by, "approve", subject(pack_id), note)
    return ReviewResult("approve", by, pack_ids, before, after=PackStatus.APPROVED.value)


def reject(store: Store, ids: Iterable[int], by: str, note: str | None = None) -> ReviewResult:
    """Reject packs (new, or approved: withdraws the approval and cancels their deliveries that
    have not started); all or nothing."""
    pack_ids = _ids(ids)
    result = ReviewResult("reject", by, pack_ids, {}, after=PackStatus.REJECTED.value)
    with store.transaction():
        result.before = _statuses(store, pack_ids)
        _check(result.before, REJECTABLE, "驳回")
        store.set_pack_status(pack_ids, PackStatus.REJECTED)
        for pack_id in pack_ids:
            cancelled = store.cancel_queued_for_pack(pack_id)
            started = [
                d["id"]
                for d in store.list_bookings(pack_ids=[pack_id])
                if d["status"] not in ("cancelled", "queued")
            ]
            if cancelled:
                result.cancelled_deliveries[pack_id] = cancelled
            if started:
                result.started_deliveries[pack_id] = started
            extra = []
            if cancelled:
                extra.append("撤回未开始的投递 " + ", ".join(map(str, cancelled)))
            if started:
                extra.append("已开始的投递未动 " + ", ".join(map(str, started)))
            full_note = "; ".join([n for n in (note, *extra) if n]) or None
            store.audit(by, "reject", subject(pack_id), full_note)
    return result


AUDIT_DIFF_MAX = 4000


def content_changed(
    store: Store, pack_id: int, *, feed: str, auto_approve: bool, diff: str
) -> str | None:
    """A source changed a pack's content after it was stored; returns the new status if the
    change moved it.

    An approved pack from a reviewed feed goes back to review (``new``): its deliveries that
    have not started are held (dispatch claims only approved packs' deliveries) until an editor
    approves it again. A pack of an auto-approve feed is approved again by that feed's rule.
    Either way the change is audited with its diff; rejected and archived packs stay so.
    """
    status = _statuses(store, [pack_id])[pack_id]
    if status not in (PackStatus.APPROVED, PackStatus.NEW):
        return None
    if auto_approve:
        store.set_pack_status([pack_id], PackStatus.APPROVED)
        note = _note("内容变更, 按自动通过规则重新通过", diff)
        store.audit(f"auto:{feed}", "reapprove", subject(pack_id), note)
        return PackStatus.APPROVED.value if status != PackStatus.APPROVED else None
    if status != PackStatus.APPROVED:
        return None
    store.set_pack_status([pack_id], PackStatus.NEW)
    held = [
        d["id"]
        for d in store.list_bookings(pack_ids=[pack_id])
        if d["status"] in ("queued", "failed")
    ]
    extra = "; 暂停未开始的投递 " + ", ".join(map(str, held)) if held else ""
    note = _note("内容变更, 退回待审" + extra, diff)
    store.audit(f"ingest:{feed}", "review_again", subject(pack_id), note)
    return PackStatus.NEW.value


def _note(head: str, diff: str) -> str:
    body = diff
    if len(diff) > AUDIT_DIFF_MAX:
        body = diff[:AUDIT_DIFF_MAX] + "\n…(完整差异见 packs show)"
    return f"{head}\n{body}" if body else head


def set_urgent(store: Store, pack_id: int, on: bool, by: str, note: str | None = None) -> bool:
    """Flag (or unflag) a pack as urgent. Returns whether the flag changed; the action is
    audited either way (an editor's explicit act)."""
    with store.transaction():
        pack = store.get_pack(int(pack_id))
        if pack.status not in FLAGGABLE:
            label = PACK_STATUS_LABELS.get(pack.status, pack.status)
            raise ReviewError(
                f"无法标记紧急: 内容包 {pack_id} 状态为 {label} ({pack.status}); "
                "只有待审或已通过的内容包可以标记 (cannot flag a rejected or archived pack)"
            )
        changed = pack.urgent != on
        if changed:
            store.set_pack_urgent(pack.id, on)
        action = "urgent_on" if on else "urgent_off"
        store.audit(by, action, subject(pack.id), note if changed else (note or "未变化"))
    return changed


__all__ = [
    "APPROVABLE",
    "FLAGGABLE",
    "REJECTABLE",
    "ReviewError",
    "ReviewResult",
    "approve",
    "content_changed",
    "reject",
    "set_urgent",
    "subject",
]
