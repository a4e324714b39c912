"""Console users: roles, what each role may do, passwords (Argon2) and login throttling.

Roles (issue 9):
    admin     everything, and the users page
    editor    review, tags, queueing, urgent, "fetch now"
    operator  the delivery log's actions (retry, cancel, a dispatch round) and feed health;
              with a county, only that county's channels
    viewer    read and export

The decisions (:func:`allowed`, :func:`channel_in_scope`, :func:`lock_deadline`) are pure; the
services below call the store and write the audit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from media_matrix.config import Settings
from media_matrix.store import NotFound, Store, StoreError
from media_matrix.timeutil import from_iso, to_iso, utcnow

ROLES = ("admin", "editor", "operator", "viewer")
ROLE_LABELS = {"admin": "管理员", "editor": "编辑", "operator": "运维", "viewer": "只读"}
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "export": frozenset(ROLES),
    "review": frozenset({"admin", "editor"}),
    "queue": frozenset({"admin", "editor"}),
    "fetch": frozenset({"admin", "editor"}),
    "deliver": frozenset({"admin", "operator"}),
    "users": frozenset({"admin"}),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 hashes anything, but a megabyte "password" is an attack

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("media-matrix: no such user")


class UserError(StoreError):
    """A user request that cannot be done as asked (bad name, role, password)."""


def allowed(role: str, action: str) -> bool:
    """May ``role`` do ``action`` (a key of PERMISSIONS)? Unknown actions are refused."""
    return role in PERMISSIONS.get(action, frozenset())


def channel_in_scope(user: dict[str, Any], channel_county: str | None) -> bool:
    """Operators bound to a county act only on that county's channels; others everywhere."""
    if user.get("role") != "operator" or not user.get("county"):
        return True
    return channel_county == user["county"]


def lock_deadline(now: datetime, lockout_seconds: float) -> datetime:
    return now + timedelta(seconds=lockout_seconds)


def is_locked(user: dict[str, Any], now: datetime) -> bool:
    until = from_iso(user.get("locked_until"))
    return until is not None and until > now


def check_password_text(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"密码至少 {MIN_PASSWORD} 个字符 (password too short)")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"密码最长 {MAX_PASSWORD} 个字符 (password too long)")
    return password


def _check_new(settings: Settings, name: str, role: str, county: str | None) -> None:
    if not NAME_RE.match(name):
        raise UserError(
            f"用户名 {name!r} 无效: 只能用字母、数字、. _ -, 最长 64 个字符 (invalid user name)"
        )
    if role not in ROLES:
        raise UserError(f"角色 {role!r} 无效, 应为 {', '.join(ROLES)} (unknown role)")
    known = set(settings.county_names())
    if county is not None and settings.counties and county not in known:
        raise UserError(f"区县 {county!r} 不在配置中 ({', '.join(sorted(known))}) (unknown county)")


def add_user(
    settings: Settings,
    store: Store,
    name: str,
    role: str,
    password: str,
    *,
    county: str | None = None,
    display_name: str = "",
    by: str,
    note: str | None = None,
) -> dict[str, Any]:
    _check_new(settings, name, role, county)
    digest = _hasher.hash(check_password_text(password))
    store.add_user(name, role, digest, county=county, display_name=display_name.strip()[:100])
    said = f"角色 {role}" + (f"; 区县 {county}" if county else "") + (f"; {note}" if note else "")
    store.audit(by, "user_add", f"user:{name}", said)
    return store.get_user(name)


def set_password(
    store: Store, name: str, password: str, *, by: str, note: str | None = None
) -> None:
    store.get_user(name)
    store.set_password_hash(name, _hasher.hash(check_password_text(password)))
    store.audit(by, "user_passwd", f"user:{name}", note)


def disable_user(
    store: Store, name: str, *, by: str, disabled: bool = True, note: str | None = None
) -> None:
    store.set_user_disabled(name, disabled)
    store.audit(by, "user_disable" if disabled else "user_enable", f"user:{name}", note)


@dataclass
class LoginResult:
    user: dict[str, Any] | None
    reason: str = ""  # "" ok | "bad" | "locked" | "disabled"


def authenticate(
    settings: Settings, store: Store, name: str, password: str, now: datetime | None = None
) -> LoginResult:
    """Check a login. A wrong password counts toward the lockout (``web.login_attempts``
    failures lock the account for ``web.lockout`` seconds); a locked account is refused even
    with the right password. Unknown names cost the same hashing time as known ones."""
    now = now or utcnow()
    try:
        user = store.get_user(name) if NAME_RE.match(name or "") else None
    except NotFound:
        user = None
    digest = store.password_hash_of(name) if user else None
    if user is None or digest is None:
        _verify(_DUMMY_HASH, password)
        return LoginResult(None, "bad")
    if is_locked(user, now):
        store.audit(name, "login_refused", f"user:{name}", "账户锁定中")
        return LoginResult(None, "locked")
    if not _verify(digest, password):
        deadline = lock_deadline(now, settings.web.lockout)
        locked = store.record_login_failure(
            name, limit=settings.web.login_attempts, lock_until=to_iso(deadline) or ""
        )
        if locked:
            minutes = settings.web.lockout / 60
            store.audit(name, "login_locked", f"user:{name}", f"连续失败, 锁定 {minutes:g} 分钟")
            return LoginResult(None, "locked")
        store.audit(name, "login_failed", f"user:{name}", None)
        return LoginResult(None, "bad")
    if user["disabled"]:
        store.audit(name, "login_refused", f"user:{name}", "账户已停用")
        return LoginResult(None, "disabled")
    if _hasher.check_needs_rehash(digest):
        store.set_password_hash(name, _hasher.hash(password))
    store.record_login_success(name, at=to_iso(now) or "")
    store.audit(name, "login", f"user:{name}", None)
    return LoginResult(store.get_user(name))


def _verify(digest: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
