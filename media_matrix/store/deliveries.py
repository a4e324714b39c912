"""Deliveries (a pack on a channel): the schema (with attempts and metrics), queueing and reads.

Claiming, leases and the attempt log's writes live in ``dispatching.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from media_matrix.store.base import Migration, NotFound, StoreBase, StoreError, loads
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "deliveries_001_create",
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            channel TEXT NOT NULL,
            edition INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending',
                'submitted', 'delivered', 'failed', 'dead', 'unknown', 'cancelled')),
            slot_at TEXT,
            scheduled_at TEXT NOT NULL,
            next_attempt_at TEXT,
            lease_until TEXT,
            lease_owner TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            batch TEXT,
            remote_id TEXT,
            remote_state TEXT NOT NULL DEFAULT '{}',
            url TEXT,
            last_error TEXT,
            urgent INTEGER NOT NULL DEFAULT 0,
            queued_by TEXT NOT NULL DEFAULT 'planner',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            delivered_at TEXT,
            UNIQUE (pack_id, channel, edition)
        );
        CREATE INDEX deliveries_due ON deliveries (status, scheduled_at);
        CREATE INDEX deliveries_channel ON deliveries (channel, scheduled_at);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            n INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            outcome TEXT,
            http_status INTEGER,
            remote_id TEXT,
            error TEXT,
            excerpt TEXT
        );
        CREATE INDEX attempts_delivery ON attempts (delivery_id, n);
        CREATE TABLE metrics (
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            day TEXT NOT NULL,
            reads INTEGER NOT NULL DEFAULT 0,
            shares INTEGER NOT NULL DEFAULT 0,
            impressions INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL CHECK (source IN ('measured', 'estimated')),
            fetched_at TEXT NOT NULL,
            UNIQUE (delivery_id, day, source)
        )
        """,
    ),
    (
        # The planner reads only the bookings that count on the days it plans: by slot, by
        # retry time (and by claim time, deliveries_claimed) besides scheduled_at.
        "deliveries_002_plan_window",
        """
        CREATE INDEX IF NOT EXISTS deliveries_slot ON deliveries (channel, slot_at);
        CREATE INDEX IF NOT EXISTS deliveries_retry ON deliveries (channel, next_attempt_at)
        """,
    ),
    (
        # The status page (`status`, /status) reads per-channel counts, each channel's next
        # queued time and the latest errors; over a year of deliveries each was a full scan
        # (seconds). Counts are kept by triggers; the other two read small partial indexes.
        "deliveries_003_status_page",
        """
        CREATE TABLE delivery_status_counts (
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (channel, status)
        ) WITHOUT ROWID;
        INSERT INTO delivery_status_counts (channel, status, n)
            SELECT channel, status, count(*) FROM deliveries GROUP BY channel, status;
        CREATE TRIGGER delivery_status_counts_ins AFTER INSERT ON deliveries BEGIN
            INSERT INTO delivery_status_counts (channel, status, n)
            VALUES (NEW.channel, NEW.status, 1)
            ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER delivery_status_counts_del AFTER DELETE ON deliveries BEGIN
            UPDATE delivery_status_counts SET n = n - 1
            WHERE channel = OLD.channel AND status = OLD.status;
        END;
        CREATE TRIGGER delivery_status_counts_upd AFTER UPDATE OF channel, status ON deliveries
        WHEN OLD.channel IS NOT NEW.channel OR OLD.status IS NOT NEW.status BEGIN
            UPDATE delivery_status_counts SET n = n - 1
            WHERE channel = OLD.channel AND status = OLD.status;
            INSERT INTO delivery_status_counts (channel, status, n)
            VALUES (NEW.channel, NEW.status, 1)
            ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
        END;
        CREATE INDEX deliveries_queued_next ON deliveries (channel, scheduled_at)
            WHERE status = 'queued';
        CREATE INDEX deliveries_with_error ON deliveries (updated_at, id)
            WHERE last_error IS NOT NULL AND last_error != ''
        """,
    ),
]


class AlreadyQueued(StoreError):
    """The pack is already on that channel (send it again only as a new edition)."""


class DeliveryStore(StoreBase):
    def queue_delivery(
        self,
        pack_id: int,
        channel: str,
        *,
        scheduled_at: str,
        slot_at: str | None = None,
        urgent: bool = False,
        queued_by: str = "planner",
        resend: bool = False,
    ) -> int:
        """Put a pack on a channel; a second time only with ``resend`` (a new edition)."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM packs WHERE id = ?", (pack_id,)).fetchone() is None:
                raise NotFound(f"pack {pack_id} not found")
            row = conn.execute(
                "SELECT max(edition), sum(status != 'cancelled') FROM deliveries"
                " WHERE pack_id = ? AND channel = ?",
                (pack_id, channel),
            ).fetchone()
            last_edition, live = row[0] or 0, row[1] or 0
            if live and not resend:
                raise AlreadyQueued(f"pack {pack_id} is already queued on channel {channel!r}")
            now = now_iso()
            cursor = conn.execute(
                """
                INSERT INTO deliveries (uid, pack_id, channel, edition, status, slot_at,
                    scheduled_at, urgent, queued_by, created_at, updated_at)
                VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)
                """,
                (
                    uuid.uuid4().hex,
                    pack_id,
                    channel,
                    last_edition + 1,
                    slot_at,
                    scheduled_at,
                    int(urgent),
                    queued_by,
                    now,
                    now,
                ),
            )
            return int(cursor.lastrowid or 0)

    def get_delivery(self, delivery_id: int) -> dict[str, Any]:
        rows = self.list_deliveries(ids=[delivery_id])
        if not rows:
            raise NotFound(f"delivery {delivery_id} not found")
        return rows[0]

    def list_deliveries(
        self,
        *,
        status: str | list[str] | None = None,
        channel: str | None = None,
        pack_id: int | None = None,
        ids: list[int] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Deliveries with their pack title, oldest scheduled first."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            statuses = [status] if isinstance(status, str) else status
            where.append(f"d.status IN ({', '.join('?' for _ in statuses)})")
            params += statuses
        if channel:
            where.append("d.channel = ?")
            params.append(channel)
        if pack_id is not None:
            where.append("d.pack_id = ?")
            params.append(pack_id)
        if ids is not None:
            where.append(f"d.id IN ({', '.join('?' for _ in ids)})")
            params += ids
        if since:
            where.append("d.scheduled_at >= ?")
            params.append(since)
        if until:
            where.append("d.scheduled_at < ?")
            params.append(until)
        sql = f"""
            SELECT d.*, p.title AS pack_title FROM deliveries d JOIN packs p ON p.id = d.pack_id
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY d.scheduled_at, d.id
            {"LIMIT " + str(int(limit)) if limit else ""}
        """
        rows = self.query(sql, params)
        for row in rows:
            row["remote_state"] = loads(row["remote_state"], {})
            row["urgent"] = bool(row["urgent"])
        return rows

    # -- editor actions and planning reads (scheduling.py) --------------------------------------

    def cancel_queued(self, delivery_id: int) -> bool:
        """Cancel a delivery that has not started: still ``queued`` and not under a live lease.

        The guard is in the SQL, so a delivery a sender claimed a moment ago is never taken back.
        Returns False when the delivery is missing or has started (see :meth:`get_delivery`).
        """
        now = now_iso()
        cursor = self.execute(
            """
            UPDATE deliveries SET status = 'cancelled', updated_at = ?, lease_until = NULL,
                lease_owner = NULL
            WHERE id = ? AND status = 'queued' AND (lease_until IS NULL OR lease_until < ?)
            """,
            (now, delivery_id, now),
        )
        return cursor.rowcount == 1

    def cancel_queued_for_pack(self, pack_id: int) -> list[int]:
        """Cancel every not-yet-started delivery of a pack (it was rejected); returns their ids."""
        now = now_iso()
        with self.transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM deliveries WHERE pack_id = ? AND status = 'queued'"
                    " AND (lease_until IS NULL OR lease_until < ?)",
                    (pack_id, now),
                )
            ]
            conn.executemany(
                "UPDATE deliveries SET status = 'cancelled', updated_at = ? WHERE id = ?",
                [(now, i) for i in ids],
            )
        return ids

    def list_bookings(
        self, *, channels: list[str] | None = None, pack_ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Live (not cancelled) deliveries as the planner needs them: pack_id, channel,
        slot_at, scheduled_at, status, and when they went out (claimed_at) or retry."""
        where = ["status != 'cancelled'"]
        params: list[Any] = []
        if channels is not None:
            where.append(f"channel IN ({', '.join('?' for _ in channels)})")
            params += channels
        if pack_ids is not None:
            where.append(f"pack_id IN ({', '.join('?' for _ in pack_ids)})")
            params += pack_ids
        return self.query(
            "SELECT id, pack_id, channel, slot_at, scheduled_at, status, urgent, claimed_at,"
            " next_attempt_at FROM deliveries"
            f" WHERE {' AND '.join(where)} ORDER BY scheduled_at, id",
            params,
        )

    def bookings_counting_in(
        self, channels: Sequence[str], since: str, until: str, *, slots_only: bool = False
    ) -> list[dict[str, Any]]:
        """Live deliveries of ``channels`` that count against a quota in [since, until): their
        slot (or scheduled time), claim time or retry time falls in it (``slots_only``: their
        slot or scheduled time only). The columns of :meth:`list_bookings` plus
        ``pack_title``; one index range per time column, so the cost follows the window, not
        the table."""
        if not channels:
            return []
        marks = ", ".join("?" for _ in channels)
        columns = ["scheduled_at", "slot_at"]
        if not slots_only:
            columns += ["claimed_at", "next_attempt_at"]
        ranges = [
            f"SELECT id FROM deliveries WHERE channel IN ({marks}) AND {column} >= ?"
            f" AND {column} < ?"
            for column in columns
        ]
        params = [value for _ in ranges for value in (*channels, since, until)]
        return self.query(
            "SELECT d.id, d.pack_id, d.channel, d.slot_at, d.scheduled_at, d.status, d.urgent,"
            " d.claimed_at, d.next_attempt_at, p.title AS pack_title"
            " FROM deliveries d JOIN packs p ON p.id = d.pack_id"
            f" WHERE d.id IN ({' UNION '.join(ranges)}) AND d.status != 'cancelled'"
            " ORDER BY d.scheduled_at, d.id",
            params,
        )

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """channel -> status -> number of deliveries."""
        out: dict[str, dict[str, int]] = {}
        for row in self.query("SELECT channel, status, n FROM delivery_status_counts WHERE n > 0"):
            out.setdefault(row["channel"], {})[row["status"]] = row["n"]
        return out

    def next_queued(self) -> dict[str, str]:
        """channel -> earliest scheduled_at among its queued deliveries."""
        rows = self.query(
            "SELECT channel, min(scheduled_at) AS at FROM deliveries WHERE status = 'queued'"
            " GROUP BY channel"
        )
        return {r["channel"]: r["at"] for r in rows}

    def recent_delivery_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest deliveries carrying an error, newest first, with their pack title."""
        return self.query(
            """
            SELECT d.id, d.pack_id, d.channel, d.status, d.attempts, d.last_error, d.updated_at,
                   p.title AS pack_title
            FROM deliveries d JOIN packs p ON p.id = d.pack_id
            WHERE d.last_error IS NOT NULL AND d.last_error != ''
            ORDER BY d.updated_at DESC, d.id DESC LIMIT ?
            """,
            (limit,),
        )

    def urgent_approved_pack_ids(self) -> list[int]:
        """Ids of approved packs flagged urgent (the sweeper asks every few seconds: a cheap
        read instead of loading every approved pack)."""
        rows = self.query("SELECT id FROM packs WHERE status = 'approved' AND urgent = 1")
        return [r["id"] for r in rows]
