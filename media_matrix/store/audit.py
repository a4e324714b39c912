"""Append-only audit log of editor and operator actions."""

from __future__ import annotations

from typing import Any

from media_matrix.redact import redact
from media_matrix.store.base import Migration, StoreBase
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "audit_001_create",
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            who TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            note TEXT
        );
        CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END
        """,
    ),
]


class AuditStore(StoreBase):
    def audit(self, who: str, action: str, subject: str, note: str | None = None) -> None:
        self.execute(
            "INSERT INTO audit (at, who, action, subject, note) VALUES (?, ?, ?, ?, ?)",
            (now_iso(), who, action, subject, redact(note)),
        )

    def audit_log(self, limit: int = 200, subject: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit"
        params: tuple[Any, ...] = ()
        if subject:
            sql += " WHERE subject = ?"
            params = (subject,)
        return self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
