"""One daemon per database: the lock's rules (who holds it, when it may be taken over).

The lock row itself lives in the store (``store/locks.py``); the daemon takes and refreshes it,
and ``status`` describes it with :func:`describe_lock`.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from media_matrix.config import Settings
from media_matrix.timeutil import from_iso, utcnow

LOCK_NAME = "daemon"


class DaemonRefused(Exception):
    """Another live daemon holds the lock on this database."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        age = _age(holder.get("heartbeat_at"))
        beat = f"{age:.0f} 秒前" if age is not None else "未知"
        super().__init__(
            f"另一个 media-matrix 守护进程正在使用同一数据库: pid {holder['pid']} @ "
            f"{holder['host']} (启动于 {holder['started_at']}, 上次心跳 {beat}); 拒绝启动 "
            f"(another daemon holds the lock: pid {holder['pid']} on {holder['host']})"
        )


def pid_alive(pid: int) -> bool:
    """Is a process with this pid running on this host?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(at: str | None, now: datetime | None = None) -> float | None:
    when = from_iso(at)
    return None if when is None else ((now or utcnow()) - when).total_seconds()


def stale_reason(
    holder: dict[str, Any], stale_after: float, *, host: str, now: datetime | None = None
) -> str | None:
    """Why a lock holder may be taken over, or None while it is alive."""
    age = _age(holder.get("heartbeat_at"), now)
    if age is None or age > stale_after:
        return f"heartbeat {age:.0f}s old" if age is not None else "no heartbeat"
    if holder["host"] == host:
        if holder["pid"] == os.getpid():
            return f"pid {holder['pid']} is this process (a leftover of an earlier run)"
        if not pid_alive(holder["pid"]):
            return f"pid {holder['pid']} is not running on {host}"
    return None


def describe_lock(settings: Settings, holder: dict[str, Any] | None) -> dict[str, Any]:
    """The daemon as ``status`` shows it."""
    if holder is None:
        return {"running": False}
    reason = stale_reason(holder, settings.daemon.stale_after, host=socket.gethostname())
    age = _age(holder["heartbeat_at"])
    return {
        "running": reason is None,
        "pid": holder["pid"],
        "host": holder["host"],
        "started_at": holder["started_at"],
        "heartbeat_age_seconds": None if age is None else round(age, 1),
        "stale": reason,
    }
