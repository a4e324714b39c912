"""Connection, migrations and small helpers shared by the table-family mixins.

Each family module (feeds, packs, deliveries, ...) declares ``MIGRATIONS``: named SQL scripts
applied once, in order, and recorded in ``schema_migrations``. Named (not numbered) migrations
let families grow independently without losing data.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from media_matrix.errors import NotFound, StoreError
from media_matrix.timeutil import now_iso

__all__ = ["NotFound", "StoreError", "StoreBase"]

Migration = tuple[str, str]


class StoreBase:
    """One SQLite file in WAL mode, safe to share across threads (calls are serialized)."""

    migrations: list[Migration] = []

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        self.conn = conn
        self.lock = threading.RLock()
        self._depth = 0

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows as dicts, straight on the connection (this runs per ingested item)."""
        with self.lock:
            cursor = self.conn.execute(sql, params)
            if cursor.description is None:
                return []
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor]

    def query_one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self.transaction() as conn:
            return conn.execute(sql, params)

    # -- migrations ---------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now."""
        with self.lock:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in self.conn.execute("SELECT name FROM schema_migrations")}
            applied = []
            for name, script in self.migrations:
                if name in done:
                    continue
                with self.transaction() as conn:
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                        (name, now_iso()),
                    )
                applied.append(name)
            return applied

    def columns(self, table: str) -> list[str]:
        """The column names of ``table`` in order (empty when there is no such table)."""
        with self.lock:
            rows = self.conn.execute("SELECT name FROM pragma_table_info(?)", (table,)).fetchall()
        return [r[0] for r in rows]

    def schema_version(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM schema_migrations ORDER BY rowid")]


def _statements(script: str) -> list[str]:
    """Split a DDL script into complete statements (trigger bodies keep their ';')."""
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \n;"):
        statements.append(buffer.strip())
    return statements


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(value: str | None, default: Any = None) -> Any:
    return json.loads(value) if value else default
