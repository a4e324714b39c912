"""Full-text search over packs (title, summary, body) for the console and ``packs list -q``.

SQLite FTS5 with the trigram tokenizer (SQLite 3.34+): Chinese has no spaces between words, so
a word tokenizer would see each sentence as one token; trigrams match any substring of three or
more characters. Shorter terms (a two-character word such as 防汛) cannot use the trigram index
and are matched by substring over the same columns. The index is external-content (no second
copy of the text).

Indexing is off the ingest path: trigram-indexing a pack costs more than storing it (for a
first ingest of a large feed, most of the write time), so triggers only queue the pack in
``packs_fts_pending`` and :meth:`SearchStore.catch_up_search` indexes the queue in one
statement. Every search catches up first, so it never misses a stored pack; the daemon
catches up after each ingest so the console's first search is not the one that pays. A
change to an already indexed pack removes its old entry at once (an external-content index
can only forget a row by the values it indexed, which the update is about to overwrite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from media_matrix.store.base import Migration, StoreBase, StoreError

MIN_SQLITE = (3, 34, 0)
TRIGRAM = 3  # shortest term the trigram index can answer

MIGRATIONS: list[Migration] = [
    (
        "search_001_packs_fts",
        """
        CREATE VIRTUAL TABLE packs_fts USING fts5(
            title, summary, text, content='packs', content_rowid='id', tokenize='trigram'
        );
        INSERT INTO packs_fts (packs_fts) VALUES ('rebuild');
        CREATE TRIGGER packs_fts_insert AFTER INSERT ON packs BEGIN
            INSERT INTO packs_fts (rowid, title, summary, text)
            VALUES (new.id, new.title, new.summary, new.text);
        END;
        CREATE TRIGGER packs_fts_delete AFTER DELETE ON packs BEGIN
            INSERT INTO packs_fts (packs_fts, rowid, title, summary, text)
            VALUES ('delete', old.id, old.title, old.summary, old.text);
        END;
        CREATE TRIGGER packs_fts_update AFTER UPDATE OF title, summary, text ON packs BEGIN
            INSERT INTO packs_fts (packs_fts, rowid, title, summary, text)
            VALUES ('delete', old.id, old.title, old.summary, old.text);
            INSERT INTO packs_fts (rowid, title, summary, text)
            VALUES (new.id, new.title, new.summary, new.text);
        END
        """,
    ),
    (
        "search_002_index_off_the_write_path",
        """
        CREATE TABLE packs_fts_pending (pack_id INTEGER PRIMARY KEY);
        DROP TRIGGER packs_fts_insert;
        DROP TRIGGER packs_fts_delete;
        DROP TRIGGER packs_fts_update;
        CREATE TRIGGER packs_fts_insert AFTER INSERT ON packs BEGIN
            INSERT OR IGNORE INTO packs_fts_pending (pack_id) VALUES (new.id);
        END;
        CREATE TRIGGER packs_fts_delete AFTER DELETE ON packs BEGIN
            INSERT INTO packs_fts (packs_fts, rowid, title, summary, text)
            SELECT 'delete', old.id, old.title, old.summary, old.text
            WHERE NOT EXISTS (SELECT 1 FROM packs_fts_pending WHERE pack_id = old.id);
            DELETE FROM packs_fts_pending WHERE pack_id = old.id;
        END;
        CREATE TRIGGER packs_fts_update AFTER UPDATE OF title, summary, text ON packs BEGIN
            INSERT INTO packs_fts (packs_fts, rowid, title, summary, text)
            SELECT 'delete', old.id, old.title, old.summary, old.text
            WHERE NOT EXISTS (SELECT 1 FROM packs_fts_pending WHERE pack_id = old.id);
            INSERT OR IGNORE INTO packs_fts_pending (pack_id) VALUES (new.id);
        END
        """,
    ),
]


def check_sqlite_version(version: str = sqlite3.sqlite_version) -> None:
    """The trigram tokenizer came with SQLite 3.34; say so plainly on an older library."""
    parts = tuple(int(p) for p in version.split(".")[:3])
    if parts < MIN_SQLITE:
        raise StoreError(
            f"SQLite {version} is too old for full-text search (the trigram tokenizer needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer)"
        )


def split_terms(text: str) -> list[str]:
    """Search words from what a person typed: whitespace-separated, empties dropped."""
    return [t for t in (text or "").replace("\u3000", " ").split() if t]


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SearchStore(StoreBase):
    def catch_up_search(self) -> int:
        """Index every pack queued since the last catch-up; returns how many were indexed."""
        with self.lock:
            if self.conn.execute("SELECT 1 FROM packs_fts_pending LIMIT 1").fetchone() is None:
                return 0  # the common case costs one indexed lookup and no write lock
            with self.transaction() as conn:
                indexed = conn.execute(
                    "INSERT INTO packs_fts (rowid, title, summary, text)"
                    " SELECT p.id, p.title, p.summary, p.text FROM packs_fts_pending q"
                    " JOIN packs p ON p.id = q.pack_id"
                ).rowcount
                conn.execute("DELETE FROM packs_fts_pending")
            return indexed

    def find_packs(
        self,
        *,
        status: str | None = None,
        group: str | None = None,
        topic: str | None = None,
        source: str | None = None,
        county: str | None = None,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[int], int]:
        """One page of pack ids (newest first) matching every filter, and how many match."""
        if q:
            self.catch_up_search()
        where, params = _pack_filters(status, group, topic, source, county, q)
        clause = "WHERE " + " AND ".join(where) if where else ""
        total_row = self.query_one(f"SELECT count(*) AS n FROM packs p {clause}", params)
        rows = self.query(
            f"SELECT p.id FROM packs p {clause}"
            " ORDER BY COALESCE(p.published_at, p.fetched_at) DESC, p.id DESC LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [r["id"] for r in rows], int(total_row["n"] if total_row else 0)

    def pack_sources_of(self, pack_id: int) -> list[dict[str, Any]]:
        """Every feed entry that delivered this pack."""
        return self.query(
            "SELECT feed, guid, url, first_seen_at, last_seen_at FROM pack_sources"
            " WHERE pack_id = ? ORDER BY id",
            (pack_id,),
        )


def _pack_filters(
    status: str | None,
    group: str | None,
    topic: str | None,
    source: str | None,
    county: str | None,
    q: str | None,
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append("p.status = ?")
        params.append(status)
    if county:
        where.append("p.county = ?")
        params.append(county)
    if source:
        where.append(
            "(p.source = ? OR EXISTS (SELECT 1 FROM pack_sources s WHERE s.pack_id = p.id"
            " AND s.feed = ?))"
        )
        params += [source, source]
    for kind, tag in (("group", group), ("topic", topic)):
        if tag:
            where.append(
                "EXISTS (SELECT 1 FROM pack_tags t WHERE t.pack_id = p.id AND t.kind = ?"
                " AND t.tag = ? AND t.removed = 0)"
            )
            params += [kind, tag]
    where_q, params_q = _text_filter(split_terms(q or ""))
    return where + where_q, params + params_q


def _text_filter(terms: Sequence[str]) -> tuple[list[str], list[Any]]:
    long = [t for t in terms if len(t) >= TRIGRAM]
    short = [t for t in terms if len(t) < TRIGRAM]
    where: list[str] = []
    params: list[Any] = []
    if long:
        where.append("p.id IN (SELECT rowid FROM packs_fts WHERE packs_fts MATCH ?)")
        params.append(" AND ".join(_fts_phrase(t) for t in long))
    for term in short:
        where.append(
            "(p.title LIKE ? ESCAPE '\\' OR p.summary LIKE ? ESCAPE '\\'"
            " OR p.text LIKE ? ESCAPE '\\')"
        )
        params += [_like(term)] * 3
    return where, params
