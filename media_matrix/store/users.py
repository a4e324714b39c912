"""Console users (name, role, county, Argon2 hash, lockout state) and the console's own secrets.

Login throttling is kept in the row (``failed_logins``, ``locked_until``) and changed by single
UPDATE statements, so two login attempts racing on two server threads count correctly.
"""

from __future__ import annotations

import secrets
from typing import Any

from media_matrix.store.base import Migration, NotFound, StoreBase, StoreError
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "users_001_create",
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'operator', 'viewer')),
            county TEXT,
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT,
            session_epoch INTEGER NOT NULL DEFAULT 1,
            last_login_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE console_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
    ),
]

_PUBLIC = (
    "id, name, display_name, role, county, disabled, failed_logins, locked_until, "
    "session_epoch, last_login_at, created_at, updated_at"
)


class UserExists(StoreError):
    """A user of that name already exists."""


class UserStore(StoreBase):
    def add_user(
        self, name: str, role: str, password_hash: str, *, county: str | None, display_name: str
    ) -> int:
        now = now_iso()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserExists(f"user {name!r} already exists")
            cursor = conn.execute(
                "INSERT INTO users (name, display_name, role, county, password_hash,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, display_name, role, county, password_hash, now, now),
            )
            return int(cursor.lastrowid or 0)

    def list_users(self) -> list[dict[str, Any]]:
        return [_decode(r) for r in self.query(f"SELECT {_PUBLIC} FROM users ORDER BY name")]

    def get_user(self, name: str) -> dict[str, Any]:
        row = self.query_one(f"SELECT {_PUBLIC} FROM users WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"user {name!r} not found")
        return _decode(row)

    def get_user_by_id(self, user_id: int) -> dict[str, Any] | None:
        row = self.query_one(f"SELECT {_PUBLIC} FROM users WHERE id = ?", (user_id,))
        return _decode(row) if row else None

    def password_hash_of(self, name: str) -> str | None:
        row = self.query_one("SELECT password_hash FROM users WHERE name = ?", (name,))
        return row["password_hash"] if row else None

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """New hash; the lockout is cleared and every open session of the user ends."""
        cursor = self.execute(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL,"
            " session_epoch = session_epoch + 1, updated_at = ? WHERE name = ?",
            (password_hash, now_iso(), name),
        )
        if cursor.rowcount != 1:
            raise NotFound(f"user {name!r} not found")

    def set_user_disabled(self, name: str, disabled: bool) -> None:
        cursor = self.execute(
            "UPDATE users SET disabled = ?, session_epoch = session_epoch + 1, updated_at = ?"
            " WHERE name = ?",
            (int(disabled), now_iso(), name),
        )
        if cursor.rowcount != 1:
            raise NotFound(f"user {name!r} not found")

    def record_login_failure(self, name: str, *, limit: int, lock_until: str) -> bool:
        """Count one failed password; the ``limit``-th locks the account until ``lock_until``
        (and restarts the count). Returns True when this failure locked it."""
        with self.transaction() as conn:
            row = conn.execute(
                "UPDATE users SET failed_logins = failed_logins + 1, updated_at = ?"
                " WHERE name = ? RETURNING failed_logins",
                (now_iso(), name),
            ).fetchone()
            if row is None or row[0] < limit:
                return False
            conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = ? WHERE name = ?",
                (lock_until, name),
            )
            return True

    def record_login_success(self, name: str, *, at: str) -> None:
        self.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?"
            " WHERE name = ?",
            (at, name),
        )

    def console_secret(self, name: str, nbytes: int = 32) -> str:
        """A random secret made on first use and kept (the session key without web.secret_key)."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT value FROM console_secrets WHERE name = ?", (name,)
            ).fetchone()
            if row:
                return str(row[0])
            value = secrets.token_urlsafe(nbytes)
            conn.execute(
                "INSERT INTO console_secrets (name, value, created_at) VALUES (?, ?, ?)",
                (name, value, now_iso()),
            )
            return value

    def ping(self) -> bool:
        """The database answers (for /healthz)."""
        return self.query_one("SELECT 1 AS ok") is not None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["disabled"] = bool(row["disabled"])
    return row
