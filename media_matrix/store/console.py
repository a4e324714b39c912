"""Reads the editor console pages need beyond the other families: paged delivery log, audit
filtered by person and subject. Pages are LIMIT/OFFSET over indexed orderings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from media_matrix.store.base import Migration, NotFound, StoreBase, loads

MIGRATIONS: list[Migration] = [
    (
        "console_001_indexes",
        """
        CREATE INDEX IF NOT EXISTS audit_who ON audit (who, id);
        CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject, id);
        CREATE INDEX IF NOT EXISTS deliveries_pack ON deliveries (pack_id)
        """,
    ),
    (
        # the review queue's order (newest first): a page is read off the index, not sorted
        "console_002_pack_order",
        """
        CREATE INDEX IF NOT EXISTS packs_recent ON packs (COALESCE(published_at, fetched_at), id);
        CREATE INDEX IF NOT EXISTS deliveries_scheduled ON deliveries (scheduled_at, id)
        """,
    ),
    (
        # an editor's title and summary for sending; every earlier text kept, newest last
        "console_003_pack_text_edits",
        """
        CREATE TABLE pack_text_edits (
            id INTEGER PRIMARY KEY,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            old_title TEXT NOT NULL,
            old_summary TEXT NOT NULL,
            new_title TEXT NOT NULL,
            new_summary TEXT NOT NULL,
            who TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX pack_text_edits_pack ON pack_text_edits (pack_id, id)
        """,
    ),
]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class ConsoleStore(StoreBase):
    def page_deliveries(
        self,
        *,
        statuses: Sequence[str] = (),
        channels: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of deliveries (latest scheduled first) with their pack title, and the
        number matching. ``channels`` None: every channel; empty: none."""
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            where.append(f"d.status IN ({_marks(statuses)})")
            params += list(statuses)
        if channels is not None:
            if not channels:
                return [], 0
            where.append(f"d.channel IN ({_marks(channels)})")
            params += list(channels)
        if since:
            where.append("d.scheduled_at >= ?")
            params.append(since)
        if until:
            where.append("d.scheduled_at < ?")
            params.append(until)
        clause = "WHERE " + " AND ".join(where) if where else ""
        total = self.query_one(f"SELECT count(*) AS n FROM deliveries d {clause}", params)
        rows = self.query(
            f"""
            SELECT d.id, d.pack_id, d.channel, d.status, d.scheduled_at, d.slot_at, d.attempts,
                   d.last_error, d.urgent, d.url, d.updated_at, d.delivered_at,
                   p.title AS pack_title
            FROM deliveries d JOIN packs p ON p.id = d.pack_id {clause}
            ORDER BY d.scheduled_at DESC, d.id DESC LIMIT ? OFFSET ?
            """,
            [*params, int(limit), int(offset)],
        )
        return rows, int(total["n"] if total else 0)

    def deliveries_of_pack(self, pack_id: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, channel, edition, status, scheduled_at, delivered_at, url, remote_state,"
            " attempts FROM deliveries WHERE pack_id = ? ORDER BY id",
            (pack_id,),
        )
        for row in rows:
            row["remote_state"] = loads(row["remote_state"], {})
        return rows

    def search_audit(
        self,
        *,
        who: str | None = None,
        subject: str | None = None,
        subjects: Sequence[str] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Audit rows newest first, by person and/or subject (or any of ``subjects``)."""
        where: list[str] = []
        params: list[Any] = []
        if who:
            where.append("who = ?")
            params.append(who)
        if subject:
            where.append("subject = ?")
            params.append(subject)
        if subjects:
            where.append(f"subject IN ({_marks(subjects)})")
            params += list(subjects)
        clause = "WHERE " + " AND ".join(where) if where else ""
        return self.query(
            f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )

    def edit_pack_text(self, pack_id: int, title: str, summary: str, *, who: str, at: str) -> bool:
        """Set the title and summary sent out, recording the text they replace. Returns False
        when nothing changed. The feed's item hash is left alone, so a re-poll of the same
        item keeps the edit; a changed source article replaces it (and goes back to review)."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT title, summary FROM packs WHERE id = ?", (pack_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"pack {pack_id} not found")
            if (row[0], row[1]) == (title, summary):
                return False
            conn.execute(
                "INSERT INTO pack_text_edits (pack_id, old_title, old_summary, new_title,"
                " new_summary, who, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pack_id, row[0], row[1], title, summary, who, at),
            )
            conn.execute(
                "UPDATE packs SET title = ?, summary = ? WHERE id = ?", (title, summary, pack_id)
            )
            return True

    def pack_text_edits(self, pack_id: int) -> list[dict[str, Any]]:
        """Every edit of a pack's title and summary, oldest first (the first holds the
        original)."""
        return self.query("SELECT * FROM pack_text_edits WHERE pack_id = ? ORDER BY id", (pack_id,))

    def bookings_between(
        self, channels: Sequence[str], since: str, until: str
    ) -> list[dict[str, Any]]:
        """Live deliveries of these channels whose slot (or, hand-timed, scheduled time) falls
        in [since, until), with their pack title: what the calendar shows as booked."""
        if not channels:
            return []
        return self.query(
            f"""
            SELECT d.id, d.pack_id, d.channel, d.status, d.urgent, d.slot_at, d.scheduled_at,
                   p.title
            FROM deliveries d JOIN packs p ON p.id = d.pack_id
            WHERE d.channel IN ({_marks(channels)}) AND d.status != 'cancelled'
              AND d.scheduled_at >= ? AND d.scheduled_at < ?
            ORDER BY d.scheduled_at, d.id
            """,
            [*channels, since, until],
        )
