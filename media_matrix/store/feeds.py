"""Feeds and their fetch state (conditional-GET validators, failures, backoff)."""

from __future__ import annotations

from typing import Any

from media_matrix.redact import redact
from media_matrix.store.base import Migration, StoreBase

MIGRATIONS: list[Migration] = [
    (
        "feeds_001_create",
        """
        CREATE TABLE feeds (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            url TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            last_fetch_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            next_fetch_at TEXT,
            items_seen INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE feed_errors (
            id INTEGER PRIMARY KEY,
            feed TEXT NOT NULL,
            subject TEXT NOT NULL,
            error TEXT NOT NULL,
            at TEXT NOT NULL,
            resolved INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX feed_errors_feed ON feed_errors (feed, resolved)
        """,
    ),
]


class FeedStore(StoreBase):
    def sync_feeds(self, feeds: list[tuple[str, str, str]]) -> None:
        """Make sure every configured (name, kind, url) has a row; a changed url resets state."""
        with self.transaction() as conn:
            for name, kind, url in feeds:
                conn.execute(
                    """
                    INSERT INTO feeds (name, kind, url) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET
                        etag = CASE WHEN feeds.url = excluded.url THEN feeds.etag END,
                        last_modified =
                            CASE WHEN feeds.url = excluded.url THEN feeds.last_modified END,
                        kind = excluded.kind, url = excluded.url
                    """,
                    (name, kind, url),
                )

    def get_feed_state(self, name: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM feeds WHERE name = ?", (name,))

    def list_feed_states(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM feeds ORDER BY name")

    def record_fetch_ok(
        self,
        name: str,
        *,
        at: str,
        next_fetch_at: str,
        etag: str | None,
        last_modified: str | None,
        items: int | None,
    ) -> None:
        """A good fetch. ``items``: how many entries it saw (None: not modified, keep the
        last count); a re-read of the same packs must not grow it."""
        self.execute(
            """
            UPDATE feeds SET last_fetch_at = ?, last_success_at = ?, last_error = NULL,
                failures = 0, next_fetch_at = ?, etag = ?, last_modified = ?,
                items_seen = COALESCE(?, items_seen)
            WHERE name = ?
            """,
            (at, at, next_fetch_at, etag, last_modified, items, name),
        )

    def pack_counts_by_feed(self) -> dict[str, int]:
        """How many distinct packs each feed has delivered (a pack from two feeds counts for
        both)."""
        rows = self.query(
            "SELECT feed, COUNT(DISTINCT pack_id) AS n FROM pack_sources GROUP BY feed"
        )
        return {r["feed"]: int(r["n"]) for r in rows}

    def record_fetch_error(self, name: str, *, at: str, error: str, next_fetch_at: str) -> int:
        """Store the error and bump the failure count; returns the new count."""
        with self.transaction() as conn:
            conn.execute(
                """
                UPDATE feeds SET last_fetch_at = ?, last_error = ?, failures = failures + 1,
                    next_fetch_at = ?
                WHERE name = ?
                """,
                (at, redact(error), next_fetch_at, name),
            )
            row = conn.execute("SELECT failures FROM feeds WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def record_item_error(self, feed: str, subject: str, error: str, at: str) -> None:
        """A single item (e.g. a bad local pack) failed; kept until it ingests cleanly."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM feed_errors WHERE feed = ? AND subject = ? AND resolved = 0",
                (feed, subject),
            )
            conn.execute(
                "INSERT INTO feed_errors (feed, subject, error, at) VALUES (?, ?, ?, ?)",
                (feed, subject, redact(error), at),
            )

    def resolve_item_error(self, feed: str, subject: str) -> None:
        self.execute(
            "UPDATE feed_errors SET resolved = 1 WHERE feed = ? AND subject = ? AND resolved = 0",
            (feed, subject),
        )

    def item_errors(self, feed: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT feed, subject, error, at FROM feed_errors WHERE resolved = 0"
        params: tuple[Any, ...] = ()
        if feed:
            sql += " AND feed = ?"
            params = (feed,)
        return self.query(sql + " ORDER BY feed, subject", params)
