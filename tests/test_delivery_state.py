"""The delivery state machine: one table of allowed status changes, enforced by the store.

Every (old, new) pair of statuses is tried on a real SQLite file: the allowed ones are applied,
the others are refused by the store whoever writes them (the engine's methods or a raw UPDATE).
"""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from media_matrix.models import (
    DELIVERY_TRANSITIONS,
    DeliveryStatus,
    InvalidStatusChange,
    can_transition,
    check_transition,
)
from media_matrix.store import open_store
from media_matrix.store.dispatching import InvalidTransition

S = DeliveryStatus
ALLOWED = {
    (S.QUEUED, S.SENDING),
    (S.QUEUED, S.CANCELLED),
    (S.SENDING, S.DELIVERED),
    (S.SENDING, S.SUBMITTED),
    (S.SENDING, S.FAILED),
    (S.SENDING, S.DEAD),
    (S.SENDING, S.UNKNOWN),
    (S.SENDING, S.QUEUED),
    (S.SUBMITTED, S.DELIVERED),
    (S.SUBMITTED, S.DEAD),
    (S.SUBMITTED, S.UNKNOWN),
    (S.FAILED, S.SENDING),
    (S.FAILED, S.QUEUED),
    (S.FAILED, S.CANCELLED),
    (S.DEAD, S.QUEUED),
    (S.DEAD, S.CANCELLED),
    (S.UNKNOWN, S.QUEUED),
    (S.UNKNOWN, S.CANCELLED),
    (S.CANCELLED, S.QUEUED),
}
PAIRS = [(a, b) for a, b in itertools.product(S, S) if a != b]


def test_the_table_is_exactly_the_documented_one():
    table = {(a, b) for a, targets in DELIVERY_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED
    assert set(DELIVERY_TRANSITIONS) == set(S)
    assert not DELIVERY_TRANSITIONS[S.DELIVERED]  # final


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}>{b}" for a, b in PAIRS])
def test_every_pair_in_python(old, new):
    assert can_transition(old, new) == ((old, new) in ALLOWED)
    if (old, new) in ALLOWED:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidStatusChange, match=f"{old}.*{new}"):
            check_transition(old, new)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(tmp_path_factory.mktemp("state") / "s.db")
    s.execute(
        "INSERT INTO packs (guid, title, fetched_at, updated_at, content_hash, status)"
        " VALUES ('g', 't', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00', 'h',"
        " 'approved')"
    )
    yield s
    s.close()


def _row(store, status: str) -> int:
    """A delivery inserted directly in ``status`` (inserts are not status changes)."""
    n = store.query_one("SELECT count(*) AS n FROM deliveries")["n"]
    return int(
        store.execute(
            "INSERT INTO deliveries (uid, pack_id, channel, edition, status, scheduled_at,"
            " created_at, updated_at, lease_owner, lease_until)"
            " VALUES (?, 1, 'c', ?, ?, '2026-11-01T00:00:00+00:00', 'x', 'x', ?, ?)",
            (
                f"u{n}",
                n + 1,
                status,
                "o" if status == "sending" else None,
                "2099-01-01T00:00:00.000000+00:00" if status == "sending" else None,
            ),
        ).lastrowid
    )


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}>{b}" for a, b in PAIRS])
def test_every_pair_in_the_store_raw_update(store, old, new):
    delivery = _row(store, old)
    update = "UPDATE deliveries SET status = ? WHERE id = ?"
    if (old, new) in ALLOWED:
        store.execute(update, (str(new), delivery))
        assert store.deliveries_by_id([delivery])[0]["status"] == new
    else:
        with pytest.raises(sqlite3.IntegrityError, match="state machine"):
            store.execute(update, (str(new), delivery))
        assert store.deliveries_by_id([delivery])[0]["status"] == old


MARKS = {
    S.DELIVERED: lambda st, i, old: st.mark_delivered(
        i, owner=None, at="2026-11-01T00:00:00.000000+00:00", remote_id="r", url=None, expect=old
    ),
    S.FAILED: lambda st, i, old: st.mark_failed(
        i,
        owner=None,
        at="2026-11-01T00:00:00.000000+00:00",
        next_attempt_at="2026-11-01T00:01:00.000000+00:00",
        error="e",
        expect=old,
    ),
    S.DEAD: lambda st, i, old: st.mark_dead(
        i, owner=None, at="2026-11-01T00:00:00.000000+00:00", error="e", expect=old
    ),
    S.UNKNOWN: lambda st, i, old: st.mark_unknown(
        i, owner=None, at="2026-11-01T00:00:00.000000+00:00", error="e", expect=old
    ),
}
MARK_PAIRS = [(a, b) for a in S for b in MARKS if a != b]


@pytest.mark.parametrize(("old", "new"), MARK_PAIRS, ids=[f"{a}>{b}" for a, b in MARK_PAIRS])
def test_outcome_writes_go_through_the_table(store, old, new):
    delivery = _row(store, old)
    if (old, new) in ALLOWED:
        assert MARKS[new](store, delivery, str(old)) is True
        assert store.deliveries_by_id([delivery])[0]["status"] == new
    else:
        with pytest.raises(InvalidStatusChange):
            MARKS[new](store, delivery, str(old))
        assert store.deliveries_by_id([delivery])[0]["status"] == old


@pytest.mark.parametrize("old", list(S))
def test_operator_retry_and_cancel_follow_the_table(store, old):
    delivery = _row(store, old)
    if (old, S.QUEUED) in ALLOWED and old != S.SENDING:
        assert store.retry_delivery(delivery)["status"] == "queued"
    else:
        with pytest.raises(InvalidTransition):
            store.retry_delivery(delivery)
    delivery = _row(store, old)
    if (old, S.CANCELLED) in ALLOWED:
        assert store.cancel_delivery(delivery)["status"] == "cancelled"
    else:
        with pytest.raises(InvalidTransition):
            store.cancel_delivery(delivery)


def test_kept_counts_follow_every_change_above(store):
    """The status page's per-channel counts (kept by triggers) equal a count of the rows,
    after every allowed change and every refused one the tests above made on this store."""
    counted: dict[str, dict[str, int]] = {}
    for row in store.query(
        "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status"
    ):
        counted.setdefault(row["channel"], {})[row["status"]] = row["n"]
    assert store.delivery_counts() == counted
    assert sum(counted["c"].values()) > len(PAIRS)  # the changes above really happened here
