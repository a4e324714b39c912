"""Dispatching family of the store: claims with a lease, the attempt log's writes, outcomes.

Invariants kept by these statements (the engine in ``dispatch.py`` relies on them):

* ``queued`` has no ``next_attempt_at``; ``failed`` always has one (when to try again).
* ``sending`` has ``lease_owner`` and ``lease_until``; every other status has neither.
* A delivery is claimed (queued/failed -> sending) in one IMMEDIATE transaction whose UPDATE
  re-checks the status, so two dispatchers never claim the same row.
* ``attempts`` on a delivery counts the send attempts that count toward ``max_attempts``
  (a quota reschedule gives its attempt back); the ``attempts`` table logs every attempt, poll
  and recovery, numbered per delivery (``n``), and is only ever appended to and closed.
* Finishing a delivery re-checks that the caller still holds its lease (``owner``), so a
  dispatcher whose lease was taken over by a sweeper cannot overwrite the sweeper's outcome.
* Fencing: a sender's other writes (checkpoints, attempt starts, renewals) hold only while its
  lease is held AND unexpired (:data:`_HELD`); otherwise nothing is written and
  :class:`LeaseLost` stops the sender before its next remote call. The run's owner string
  (unique per run) is the fencing token.
* Every status change is one of ``models.DELIVERY_TRANSITIONS``: the UPDATEs name the allowed
  previous statuses and a trigger generated from the table refuses any other.
* Claims count a channel's rate (deliveries claimed in the last minute) and daily quota
  (deliveries that went out on the local day, by ``claimed_at``) in the claim's transaction.

Times are stored in one format (``timeutil.to_iso``: UTC, microseconds); comparisons go through
``julianday`` so rows from before that format compare correctly too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from media_matrix.models import (
    DELIVERY_TRANSITIONS,
    SENT_STATUSES,
    DeliveryStatus,
    check_transition,
    sources_of,
)
from media_matrix.redact import redact
from media_matrix.store.audit import AuditStore
from media_matrix.store.base import Migration, NotFound, StoreError, dumps, loads
from media_matrix.timeutil import now_iso

_TIME_COLUMNS = {
    "deliveries": (
        "scheduled_at",
        "slot_at",
        "next_attempt_at",
        "lease_until",
        "created_at",
        "updated_at",
        "delivered_at",
        "claimed_at",
    ),
    "attempts": ("started_at", "finished_at", "retry_at"),
}


def _fixed_precision_script() -> str:
    """Times written before the one stored format (whole seconds) get its fixed microseconds:
    ``2026-01-01T00:00:00+00:00`` -> ``2026-01-01T00:00:00.000000+00:00``."""
    return ";\n".join(
        f"UPDATE {table} SET {c} = substr({c}, 1, 19) || '.000000' || substr({c}, 20)"
        f" WHERE length({c}) = 25 AND substr({c}, 20, 1) IN ('+', '-')"
        for table, columns in _TIME_COLUMNS.items()
        for c in columns
    )


def _state_machine_trigger() -> str:
    """A trigger refusing every status change the state machine (``models``) does not list."""
    pairs = ", ".join(
        f"'{old}>{new}'" for old, targets in DELIVERY_TRANSITIONS.items() for new in sorted(targets)
    )
    return f"""
        DROP TRIGGER IF EXISTS deliveries_status_machine;
        CREATE TRIGGER deliveries_status_machine BEFORE UPDATE OF status ON deliveries
        WHEN NEW.status != OLD.status AND (OLD.status || '>' || NEW.status) NOT IN ({pairs})
        BEGIN
            SELECT RAISE(ABORT, 'delivery status change not allowed by the state machine');
        END
        """


MIGRATIONS: list[Migration] = [
    (
        "dispatching_001_attempt_details",
        """
        ALTER TABLE attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'send';
        ALTER TABLE attempts ADD COLUMN owner TEXT;
        ALTER TABLE attempts ADD COLUMN batch TEXT;
        ALTER TABLE attempts ADD COLUMN retry_at TEXT;
        ALTER TABLE attempts ADD COLUMN retry_in REAL;
        CREATE INDEX attempts_started ON attempts (started_at);
        CREATE INDEX deliveries_lease ON deliveries (status, lease_until);
        CREATE INDEX deliveries_batch ON deliveries (batch)
        """,
    ),
    ("dispatching_002_state_machine", _state_machine_trigger()),
    (
        "dispatching_003_claimed_at",
        """
        ALTER TABLE deliveries ADD COLUMN claimed_at TEXT;
        CREATE INDEX deliveries_claimed ON deliveries (channel, claimed_at)
        """,
    ),
    ("dispatching_004_one_time_format", _fixed_precision_script()),
]

# Only an approved pack's deliveries are claimed: a pack sent back to review (its content changed
# at the source) or withdrawn holds its unstarted deliveries until an editor approves it again.
PACK_APPROVED = "pack_id IN (SELECT id FROM packs WHERE status = 'approved')"
RETRYABLE_BY_OPERATOR = tuple(s for s in sources_of(DeliveryStatus.QUEUED) if s != "sending")
CANCELLABLE = sources_of(DeliveryStatus.CANCELLED)
SENT = SENT_STATUSES  # went out, or may have: quota counts them on their claim day
COUNTED_KINDS = ("send", "recover")  # attempt kinds that talk to the remote to send
# The fence every sender write carries: the caller (owner) holds an unexpired lease. Parameters:
# owner, now.
_HELD = "status = 'sending' AND lease_owner = ? AND julianday(lease_until) >= julianday(?)"


class LeaseLost(StoreError):
    """A sender wrote for deliveries whose lease it no longer holds (it expired, or a sweeper
    took it over): nothing was written, and the sender must stop before its next remote call."""


class InvalidTransition(StoreError):
    """An operator action that the delivery's current status does not allow."""


def status_guard(new: str) -> tuple[str, tuple[str, ...]]:
    """``status IN (?, ...)`` and its parameters: the statuses that may become ``new``."""
    sources = sources_of(new)
    return f"status IN ({_marks(sources)})", sources


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    if "remote_state" in row:
        row["remote_state"] = loads(row["remote_state"], {})
    if "urgent" in row:
        row["urgent"] = bool(row["urgent"])
    return row


class DispatchStore(AuditStore):
    """Claims, leases, attempts and delivery transitions. An operator's retry or cancel is
    audited in the same transaction, hence the audit family as its base."""

    # -- claiming -------------------------------------------------------------------------------

    def claim_due(
        self,
        *,
        now: str,
        owner: str,
        lease_until: str,
        channels: Iterable[str],
        limit: int | None = None,
        batch: int | None = None,
        rates: dict[str, int] | None = None,
        window_start: str | None = None,
        quotas: dict[str, int] | None = None,
        day: tuple[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Claim due deliveries of these channels for ``owner`` until ``lease_until``.

        Due: ``queued``, or ``failed`` whose ``next_attempt_at`` has come, with ``scheduled_at``
        at or before ``now``, of a pack that is approved right now. Urgent first, then oldest
        scheduled. Every limit is counted in the claim's own IMMEDIATE transaction, so two
        dispatch paths can never exceed them together:

        * ``rates``: deliveries a channel may claim per minute (those claimed since
          ``window_start`` count);
        * ``quotas``: deliveries a channel may send on the local day ``day`` (UTC bounds, end
          excluded): those that went out that day (sending, submitted, delivered, unknown) count;
        * ``batch``: rows per channel, ``limit``: rows in all (the backlog is never loaded
          whole).

        Returns the claimed rows (status already ``sending``) with ``previous_status``.
        """
        names = list(channels)
        if not names:
            return []
        rates, quotas = rates or {}, quotas or {}
        guard, sources = status_guard(DeliveryStatus.SENDING)
        rows: list[dict[str, Any]] = []
        with self.transaction() as conn:
            for name in names:
                room = [] if limit is None else [limit - len(rows)]
                if batch is not None:
                    room.append(batch)
                if name in rates:
                    room.append(rates[name] - self._claimed_since(conn, name, window_start or now))
                if name in quotas and day is not None:
                    room.append(quotas[name] - self._sent_between(conn, name, *day))
                cap = min(room) if room else -1
                if room and cap <= 0:
                    continue
                due = conn.execute(
                    f"""
                    SELECT id, status FROM deliveries
                    WHERE channel = ?
                      AND (status = 'queued'
                           OR (status = 'failed' AND julianday(next_attempt_at) <= julianday(?)))
                      AND julianday(scheduled_at) <= julianday(?)
                      AND {PACK_APPROVED}
                    ORDER BY urgent DESC, julianday(scheduled_at), id
                    LIMIT ?
                    """,
                    (name, now, now, cap),
                ).fetchall()
                if not due:
                    continue
                previous = dict(due)
                part = [i for i, _ in due]
                cur = conn.execute(
                    f"""
                    UPDATE deliveries
                    SET status = 'sending', lease_owner = ?, lease_until = ?, updated_at = ?,
                        claimed_at = ?
                    WHERE id IN ({_marks(part)}) AND {guard}
                    RETURNING *
                    """,
                    (owner, lease_until, now, now, *part, *sources),
                )
                columns = [c[0] for c in cur.description]
                claimed = [_decode(dict(zip(columns, r, strict=True))) for r in cur.fetchall()]
                for row in claimed:
                    row["previous_status"] = previous[row["id"]]
                rows += sorted(claimed, key=lambda r: part.index(r["id"]))
        return rows

    @staticmethod
    def _claimed_since(conn: Any, channel: str, since: str) -> int:
        """Deliveries of a channel claimed for sending since ``since`` (the rate window)."""
        return int(
            conn.execute(
                "SELECT count(*) FROM deliveries WHERE channel = ?"
                " AND julianday(claimed_at) >= julianday(?)",
                (channel, since),
            ).fetchone()[0]
        )

    @staticmethod
    def _sent_between(conn: Any, channel: str, start: str, end: str) -> int:
        """Deliveries of a channel that went out (or are going out) in ``[start, end)``."""
        return int(
            conn.execute(
                f"""
                SELECT count(*) FROM deliveries
                WHERE channel = ? AND status IN ({_marks(SENT)})
                  AND julianday(claimed_at) >= julianday(?)
                  AND julianday(claimed_at) < julianday(?)
                """,
                (channel, *SENT, start, end),
            ).fetchone()[0]
        )

    def sent_between(self, channel: str, start: str, end: str) -> int:
        with self.lock:
            return self._sent_between(self.conn, channel, start, end)

    def renew_leases(
        self, ids: Sequence[int], owner: str, lease_until: str, *, now: str
    ) -> list[int]:
        """Extend the leases ``owner`` still holds; returns the ids it holds.

        Fencing: the owner (unique per run) is the lease token, and a lease that expired at
        ``now`` is not renewed even if nobody took it over yet -- a sweeper may be about to, so
        the sender must treat it as lost.
        """
        if not ids:
            return []
        with self.transaction() as conn:
            cur = conn.execute(
                f"""
                UPDATE deliveries SET lease_until = ?
                WHERE id IN ({_marks(ids)}) AND {_HELD}
                RETURNING id
                """,
                (lease_until, *ids, owner, now),
            )
            return sorted(r[0] for r in cur.fetchall())

    def release_claims(self, ids: Sequence[int], owner: str, *, at: str | None = None) -> int:
        """Give claimed-but-unsent rows back: queued (or failed, keeping its retry time)."""
        if not ids:
            return 0
        cur = self.execute(
            f"""
            UPDATE deliveries
            SET status = CASE WHEN next_attempt_at IS NULL THEN 'queued' ELSE 'failed' END,
                lease_owner = NULL, lease_until = NULL, updated_at = ?
            WHERE id IN ({_marks(ids)}) AND status = 'sending' AND lease_owner = ?
            """,
            (at or now_iso(), *ids, owner),
        )
        return cur.rowcount

    # -- expired leases (sweeper) -----------------------------------------------------------------

    def expired_leases(
        self, now: str, channels: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Deliveries left in ``sending`` past their lease (their sender crashed or hung)."""
        sql = """
            SELECT * FROM deliveries
            WHERE status = 'sending' AND julianday(lease_until) < julianday(?)
        """
        params: list[Any] = [now]
        if channels is not None:
            names = list(channels)
            if not names:
                return []
            sql += f" AND channel IN ({_marks(names)})"
            params += names
        return [_decode(r) for r in self.query(sql + " ORDER BY id", params)]

    def take_over(
        self, ids: Sequence[int], *, owner: str, lease_until: str, now: str
    ) -> list[dict[str, Any]]:
        """Take the expired leases of these rows for ``owner`` (atomic: one sweeper wins)."""
        if not ids:
            return []
        with self.transaction() as conn:
            cur = conn.execute(
                f"""
                UPDATE deliveries SET lease_owner = ?, lease_until = ?, updated_at = ?
                WHERE id IN ({_marks(ids)}) AND status = 'sending'
                  AND julianday(lease_until) < julianday(?)
                RETURNING *
                """,
                (owner, lease_until, now, *ids, now),
            )
            columns = [c[0] for c in cur.description]
            rows = [_decode(dict(zip(columns, r, strict=True))) for r in cur.fetchall()]
        return sorted(rows, key=lambda r: r["id"])

    def interrupt_open_attempts(self, delivery_id: int, *, at: str, note: str) -> int:
        """Close attempts left open by a crashed sender; returns how many were open."""
        cur = self.execute(
            """
            UPDATE attempts SET finished_at = ?, outcome = 'interrupted', error = ?
            WHERE delivery_id = ? AND finished_at IS NULL
            """,
            (at, redact(note), delivery_id),
        )
        return cur.rowcount

    # -- attempts -----------------------------------------------------------------------------

    def start_attempts(
        self,
        ids: Sequence[int],
        *,
        owner: str,
        started_at: str,
        kind: str = "send",
        batch: str | None = None,
    ) -> dict[int, dict[str, int]]:
        """Open one attempt row per delivery; a counted kind adds to ``deliveries.attempts``.

        Records ``batch`` (the message key) on the deliveries so a sweeper can regroup them.
        A counted kind is a send: ``owner`` must hold the unexpired lease of every delivery, or
        nothing is written and :class:`LeaseLost` is raised. Returns
        ``{delivery_id: {"attempt_id", "n", "attempts"}}``.
        """
        counted = kind in COUNTED_KINDS
        out: dict[int, dict[str, int]] = {}
        with self.transaction() as conn:
            for delivery_id in ids:
                fence = f" AND {_HELD}" if counted else ""
                row = conn.execute(
                    f"""
                    UPDATE deliveries
                    SET attempts = attempts + {1 if counted else 0},
                        batch = coalesce(?, batch), updated_at = ?
                    WHERE id = ?{fence} RETURNING attempts
                    """,
                    (batch, started_at, delivery_id, *((owner, started_at) if counted else ())),
                ).fetchone()
                if row is None:
                    exists = conn.execute(
                        "SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)
                    ).fetchone()
                    if exists is None:
                        raise NotFound(f"delivery {delivery_id} not found")
                    raise LeaseLost(
                        f"{owner} no longer holds the lease of delivery {delivery_id}: "
                        "attempt not started"
                    )
                n = conn.execute(
                    "SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE delivery_id = ?",
                    (delivery_id,),
                ).fetchone()[0]
                cur = conn.execute(
                    """
                    INSERT INTO attempts (delivery_id, n, started_at, kind, owner, batch)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                    (delivery_id, n, started_at, kind, owner, batch),
                )
                out[delivery_id] = {
                    "attempt_id": int(cur.lastrowid or 0),
                    "n": int(n),
                    "attempts": int(row[0]),
                }
        return out

    def finish_attempt(
        self,
        attempt_id: int,
        *,
        finished_at: str,
        outcome: str,
        http_status: int | None = None,
        remote_id: str | None = None,
        error: str | None = None,
        excerpt: str | None = None,
        retry_at: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        self.execute(
            """
            UPDATE attempts SET finished_at = ?, outcome = ?, http_status = ?, remote_id = ?,
                error = ?, excerpt = ?, retry_at = ?, retry_in = ?
            WHERE id = ?
            """,
            (
                finished_at,
                outcome,
                http_status,
                remote_id,
                redact(error),  # errors carry request URLs: keys and tokens are masked here
                redact(excerpt),
                retry_at,
                retry_in,
                attempt_id,
            ),
        )

    def abandon_attempts(self, attempt_ids: Sequence[int], *, at: str, note: str) -> int:
        """Close a fenced-out sender's attempts as ``lease_lost`` unless a sweeper already
        closed them (as ``interrupted``)."""
        if not attempt_ids:
            return 0
        cur = self.execute(
            f"""
            UPDATE attempts SET finished_at = ?, outcome = 'lease_lost', error = ?
            WHERE id IN ({_marks(attempt_ids)}) AND finished_at IS NULL
            """,
            (at, redact(note), *attempt_ids),
        )
        return cur.rowcount

    def log_attempt(
        self,
        delivery_id: int,
        *,
        kind: str,
        started_at: str,
        finished_at: str,
        outcome: str,
        owner: str | None = None,
        http_status: int | None = None,
        remote_id: str | None = None,
        error: str | None = None,
        excerpt: str | None = None,
    ) -> int:
        """A whole attempt row at once (polls, reconciliations): never counted."""
        opened = self.start_attempts(
            [delivery_id], owner=owner or "", started_at=started_at, kind=kind
        )[delivery_id]
        self.finish_attempt(
            opened["attempt_id"],
            finished_at=finished_at,
            outcome=outcome,
            http_status=http_status,
            remote_id=remote_id,
            error=error,
            excerpt=excerpt,
        )
        return opened["attempt_id"]

    def uncount_attempt(self, delivery_id: int) -> None:
        """Give back a counted attempt (a quota reschedule is no failure)."""
        self.execute(
            "UPDATE deliveries SET attempts = max(0, attempts - 1) WHERE id = ?", (delivery_id,)
        )

    def last_retry_delay(self, delivery_id: int) -> float | None:
        """The backoff chosen after the latest attempt that scheduled one (decorrelated jitter)."""
        row = self.query_one(
            """
            SELECT retry_in FROM attempts
            WHERE delivery_id = ? AND retry_in IS NOT NULL AND outcome != 'quota'
            ORDER BY n DESC LIMIT 1
            """,
            (delivery_id,),
        )
        return float(row["retry_in"]) if row else None

    def attempts_of(self, delivery_id: int) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY n, id", (delivery_id,)
        )

    def recent_messages(self, channel: str, since: str) -> int:
        """Messages sent (or tried) on a channel since ``since``: the rate window's content."""
        row = self.query_one(
            f"""
            SELECT count(DISTINCT coalesce(a.batch, 'd' || a.delivery_id)) AS n
            FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
            WHERE d.channel = ? AND a.kind IN ({_marks(COUNTED_KINDS)})
              AND a.started_at >= ? AND (a.outcome IS NULL OR a.outcome != 'quota')
            """,
            (channel, *COUNTED_KINDS, since),
        )
        return int(row["n"]) if row else 0

    # -- remote state and outcomes --------------------------------------------------------------

    def save_remote_state(
        self,
        ids: Sequence[int],
        state: dict[str, Any],
        *,
        at: str,
        owner: str | None = None,
        lease_until: str | None = None,
    ) -> None:
        """Persist an adapter checkpoint for every delivery of a message (replaces the old).

        A sender passes ``owner`` (and the renewed ``lease_until``): the write is applied only
        if it holds every lease, unexpired at ``at``; otherwise nothing is written and
        :class:`LeaseLost` is raised, before the adapter's next remote call.
        """
        if not ids:
            return
        if owner is None:
            self.execute(
                f"UPDATE deliveries SET remote_state = ?, updated_at = ?"
                f" WHERE id IN ({_marks(ids)})",
                (dumps(state), at, *ids),
            )
            return
        with self.transaction() as conn:
            cur = conn.execute(
                f"""
                UPDATE deliveries SET remote_state = ?, updated_at = ?,
                    lease_until = coalesce(?, lease_until)
                WHERE id IN ({_marks(ids)}) AND {_HELD}
                """,
                (dumps(state), at, lease_until, *ids, owner, at),
            )
            if cur.rowcount != len(set(ids)):
                raise LeaseLost(
                    f"{owner} no longer holds the lease of deliveries {sorted(ids)}: "
                    "checkpoint refused"
                )

    def _finish(
        self,
        delivery_id: int,
        status: str,
        *,
        owner: str | None,
        at: str,
        expect: str = "sending",
        **values: Any,
    ) -> bool:
        """Set the outcome; ``owner`` (when given) must still hold the lease. True if applied.

        ``expect -> status`` must be a transition of the state machine (checked here, and by the
        store's trigger for any write that bypasses this method)."""
        check_transition(expect, status)
        sets = {"status": status, "updated_at": at, "lease_owner": None, "lease_until": None}
        if "last_error" in values:  # masked here, so no path stores a key or token
            values["last_error"] = redact(values["last_error"])
        for key, value in values.items():
            sets[key] = dumps(value) if key == "remote_state" else value
        assignments = ", ".join(f"{k} = ?" for k in sets)
        sql = f"UPDATE deliveries SET {assignments} WHERE id = ? AND status = ?"
        params: list[Any] = [*sets.values(), delivery_id, expect]
        if owner is not None:
            sql += " AND lease_owner = ?"
            params.append(owner)
        return self.execute(sql, params).rowcount == 1

    def mark_delivered(
        self,
        delivery_id: int,
        *,
        owner: str | None,
        at: str,
        remote_id: str | None,
        url: str | None,
        state: dict[str, Any] | None = None,
        expect: str = "sending",
    ) -> bool:
        values: dict[str, Any] = {
            "remote_id": remote_id,
            "url": url,
            "delivered_at": at,
            "next_attempt_at": None,
            "last_error": None,
        }
        if state is not None:
            values["remote_state"] = state
        return self._finish(delivery_id, "delivered", owner=owner, at=at, expect=expect, **values)

    def mark_submitted(
        self,
        delivery_id: int,
        *,
        owner: str | None,
        at: str,
        remote_id: str | None,
        state: dict[str, Any] | None = None,
    ) -> bool:
        values: dict[str, Any] = {"remote_id": remote_id, "next_attempt_at": None}
        if state is not None:
            values["remote_state"] = state
        return self._finish(delivery_id, "submitted", owner=owner, at=at, **values)

    def mark_failed(
        self,
        delivery_id: int,
        *,
        owner: str | None,
        at: str,
        next_attempt_at: str,
        error: str,
        expect: str = "sending",
    ) -> bool:
        """Failed, will retry at ``next_attempt_at``."""
        return self._finish(
            delivery_id,
            "failed",
            owner=owner,
            at=at,
            expect=expect,
            next_attempt_at=next_attempt_at,
            last_error=error,
        )

    def mark_dead(
        self, delivery_id: int, *, owner: str | None, at: str, error: str, expect: str = "sending"
    ) -> bool:
        return self._finish(
            delivery_id,
            "dead",
            owner=owner,
            at=at,
            expect=expect,
            next_attempt_at=None,
            last_error=error,
        )

    def mark_unknown(
        self, delivery_id: int, *, owner: str | None, at: str, error: str, expect: str = "sending"
    ) -> bool:
        return self._finish(
            delivery_id,
            "unknown",
            owner=owner,
            at=at,
            expect=expect,
            next_attempt_at=None,
            last_error=error,
        )

    def submitted_deliveries(self, channels: Iterable[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM deliveries WHERE status = 'submitted'"
        params: list[Any] = []
        if channels is not None:
            names = list(channels)
            if not names:
                return []
            sql += f" AND channel IN ({_marks(names)})"
            params += names
        return [_decode(r) for r in self.query(sql + " ORDER BY id", params)]

    def deliveries_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        rows = self.query(
            f"SELECT * FROM deliveries WHERE id IN ({_marks(ids)}) ORDER BY id", list(ids)
        )
        return [_decode(r) for r in rows]

    def status_counts(self, channels: Iterable[str] | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM deliveries"
        params: list[Any] = []
        if channels is not None:
            names = list(channels)
            sql += f" WHERE channel IN ({_marks(names)})" if names else " WHERE 0"
            params += names
        return {r["status"]: r["n"] for r in self.query(sql + " GROUP BY status", params)}

    # -- operator actions -----------------------------------------------------------------------

    def retry_delivery(
        self, delivery_id: int, *, who: str = "operator", note: str | None = None
    ) -> dict[str, Any]:
        """dead / unknown / failed / cancelled -> queued, due now (or at its future slot).

        The attempt counter restarts. The recorded remote state is cleared for dead, unknown
        and cancelled deliveries (the operator has decided the earlier attempt does not count;
        for ``unknown``: checked that nothing went out) but kept for ``failed`` ones, whose
        state the adapter still needs to tell whether a lost call went through (a WeChat submit
        must be looked up, never repeated). The attempt log keeps everything.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row[0] not in RETRYABLE_BY_OPERATOR:
                raise InvalidTransition(
                    f"delivery {delivery_id} is {row[0]}; only "
                    f"{'/'.join(RETRYABLE_BY_OPERATOR)} deliveries can be re-sent"
                )
            at = now_iso()
            conn.execute(
                """
                UPDATE deliveries
                SET status = 'queued', attempts = 0, next_attempt_at = NULL, lease_owner = NULL,
                    lease_until = NULL, batch = NULL, updated_at = ?,
                    remote_state = CASE WHEN status = 'failed' THEN remote_state ELSE '{}' END
                WHERE id = ?
                """,
                (at, delivery_id),
            )
            said = f"from {row[0]}" + (f"; {note}" if note else "")  # stable; shown in Chinese
            self.audit(who, "delivery.retry", f"delivery:{delivery_id}", said)
        return self.deliveries_by_id([delivery_id])[0]

    def cancel_delivery(
        self, delivery_id: int, *, who: str = "operator", note: str | None = None
    ) -> dict[str, Any]:
        """Cancel a delivery that has not gone out: not delivered, not being sent right now, and
        not submitted (a WeChat publish in progress cannot be recalled)."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row[0] not in CANCELLABLE:
                raise InvalidTransition(
                    f"delivery {delivery_id} is {row[0]} and cannot be cancelled"
                )
            at = now_iso()
            conn.execute(
                """
                UPDATE deliveries
                SET status = 'cancelled', next_attempt_at = NULL, updated_at = ?
                WHERE id = ?
                """,
                (at, delivery_id),
            )
            said = f"from {row[0]}" + (f"; {note}" if note else "")  # stable; shown in Chinese
            self.audit(who, "delivery.cancel", f"delivery:{delivery_id}", said)
        return self.deliveries_by_id([delivery_id])[0]
