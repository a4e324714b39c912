"""Hit recording for the public face: visitor keys under the day's salt, buffered writes.

Requests only append to an in-memory buffer; one thread writes the buffer in a single
transaction every ``flush_every`` seconds, so a redirect never waits on the database's write
lock. ``close()`` (called on shutdown, SIGTERM included) writes whatever is left: no hit that
was answered is lost on an orderly stop.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from media_matrix.links import counted, new_salt, visitor_key
from media_matrix.store import Store
from media_matrix.store.links import HitRow

log = logging.getLogger(__name__)


class HitRecorder:
    def __init__(
        self, store: Store, timezone: str, flush_every: float = 0.5, *, own: bool = False
    ) -> None:
        self.store = store
        self.own = own  # close the store on close()
        self.tz = ZoneInfo(timezone)
        self.flush_every = flush_every
        self._buffer: list[HitRow] = []
        self._lock = threading.Lock()
        self._salt: tuple[str, bytes] | None = None
        self._day: tuple[str, float] | None = None  # (local day, when it ends)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hit-flush", daemon=True)
        self._thread.start()

    def today(self) -> str:
        """The local day, recomputed only when the clock passes the next local midnight."""
        now = time.time()
        cached = self._day
        if cached is None or now >= cached[1]:
            local = datetime.now(self.tz)
            midnight = (local + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            cached = (local.date().isoformat(), midnight.timestamp())
            self._day = cached
        return cached[0]

    def salt(self, day: str) -> bytes:
        """The day's salt (kept in memory for the day; the store deletes earlier days')."""
        current = self._salt
        if current is None or current[0] != day:
            with self._lock:
                current = self._salt
                if current is None or current[0] != day:
                    current = (day, self.store.day_salt(day, new_salt))
                    self._salt = current
        return current[1]

    def client_key(self, address: str, user_agent: str | None) -> tuple[str, str]:
        """(today, visitor key of address + agent). The address goes no further than here."""
        day = self.today()
        return day, visitor_key(self.salt(day), address, user_agent)

    def record(self, link_id: int, day: str, ua_class: str, visitor: str) -> None:
        row: HitRow = (link_id, day, ua_class, int(counted(ua_class)), visitor)
        with self._lock:
            self._buffer.append(row)

    def flush(self) -> int:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return 0
        try:
            return self.store.record_hits(rows)
        except Exception:
            with self._lock:  # keep them for the next round rather than lose them
                self._buffer[:0] = rows
            raise

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
                self.salt(self.today())  # past midnight: a new salt, yesterday's deleted
            except Exception:  # noqa: BLE001 - retried next round; logged
                log.exception("writing hits failed; retrying")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()
        if self.own:
            self.store.close()
