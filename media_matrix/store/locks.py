"""Daemon single-instance lock (with heartbeat) and the record of fired slots.

``daemon_locks``: one row per lock name; the holder writes its owner token, pid and host, and
refreshes ``heartbeat_at`` every few seconds. Whether a holder is stale (no heartbeat for a
while, or a dead pid on this host) is decided by the daemon; the store only offers
compare-and-swap writes, so two starting daemons can never both win.

``slot_runs``: the last fire time each slot job (channel, cron expression) ran for. APScheduler's
in-memory job store forgets it on restart; the daemon uses it to catch a missed slot up once,
never twice. Fire times are stored as UTC ISO text with seconds, which sorts as time.
"""

from __future__ import annotations

from typing import Any

from media_matrix.store.base import Migration, StoreBase
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "locks_001_create",
        """
        CREATE TABLE daemon_locks (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL
        );
        CREATE TABLE slot_runs (
            channel TEXT NOT NULL,
            slot_expr TEXT NOT NULL,
            last_fire_at TEXT NOT NULL,
            ran_at TEXT NOT NULL,
            runs INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (channel, slot_expr)
        )
        """,
    ),
]


class LockStore(StoreBase):
    # -- daemon lock ----------------------------------------------------------------------------

    def get_lock(self, name: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM daemon_locks WHERE name = ?", (name,))

    def claim_lock(
        self,
        name: str,
        owner: str,
        *,
        pid: int,
        host: str,
        replace_owner: str | None = None,
    ) -> bool:
        """Take the lock if it is free, or if its holder is still ``replace_owner`` (a stale
        holder the caller decided to take over). Returns whether this owner holds it now."""
        now = now_iso()
        with self.transaction() as conn:
            if replace_owner is None:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO daemon_locks"
                    " (name, owner, pid, host, started_at, heartbeat_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, owner, pid, host, now, now),
                )
            else:
                cursor = conn.execute(
                    "UPDATE daemon_locks SET owner = ?, pid = ?, host = ?, started_at = ?,"
                    " heartbeat_at = ? WHERE name = ? AND owner = ?",
                    (owner, pid, host, now, now, name, replace_owner),
                )
            return cursor.rowcount == 1

    def heartbeat_lock(self, name: str, owner: str) -> bool:
        """Refresh the heartbeat; False when this owner no longer holds the lock."""
        cursor = self.execute(
            "UPDATE daemon_locks SET heartbeat_at = ? WHERE name = ? AND owner = ?",
            (now_iso(), name, owner),
        )
        return cursor.rowcount == 1

    def release_lock(self, name: str, owner: str) -> bool:
        cursor = self.execute(
            "DELETE FROM daemon_locks WHERE name = ? AND owner = ?", (name, owner)
        )
        return cursor.rowcount == 1

    # -- slot runs ------------------------------------------------------------------------------

    def last_slot_run(self, channel: str, slot_expr: str) -> str | None:
        row = self.query_one(
            "SELECT last_fire_at FROM slot_runs WHERE channel = ? AND slot_expr = ?",
            (channel, slot_expr),
        )
        return row["last_fire_at"] if row else None

    def claim_slot_run(self, channel: str, slot_expr: str, fire_at: str) -> bool:
        """Record that the slot job runs for ``fire_at``; False if it already ran for that fire
        time or a later one (so a fire time runs at most once, whoever asks)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                """
                INSERT INTO slot_runs (channel, slot_expr, last_fire_at, ran_at, runs)
                VALUES (?, ?, ?, ?, 1)
                ON CONFLICT (channel, slot_expr) DO UPDATE SET
                    last_fire_at = excluded.last_fire_at, ran_at = excluded.ran_at,
                    runs = slot_runs.runs + 1
                WHERE slot_runs.last_fire_at < excluded.last_fire_at
                """,
                (channel, slot_expr, fire_at, now_iso()),
            )
            return cursor.rowcount == 1

    def mark_slot_seen(self, channel: str, slot_expr: str, fire_at: str) -> None:
        """Baseline for a slot never run before: nothing before ``fire_at`` is to be caught up.
        Does nothing if the slot has a record already."""
        self.execute(
            "INSERT OR IGNORE INTO slot_runs (channel, slot_expr, last_fire_at, ran_at, runs)"
            " VALUES (?, ?, ?, ?, 0)",
            (channel, slot_expr, fire_at, now_iso()),
        )
