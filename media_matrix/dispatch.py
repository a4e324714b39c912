"""Dispatch: claim due deliveries with a lease, render, send, record every attempt, retry.

Two entry points, called by the CLI (``dispatch``), the daemon and the main job:

* :func:`dispatch_due` claims what is due (``queued``, or ``failed`` whose retry time has come,
  scheduled at or before ``now``) in one atomic UPDATE with a lease, groups it into messages
  (a WeChat slot's packs into one draft of up to 8 articles; one delivery per message for
  webhook and outbox), and sends the messages on a bounded pool (``dispatch.workers``) while
  each channel keeps its own ``concurrency`` and ``rate_per_minute``. A scheduler hands a
  message to a worker only when its channel has a free slot, so a slow or failing channel
  never parks the workers other channels need. Every attempt is opened in the attempt log
  before the adapter is called and closed with its outcome; the outcome is applied in the
  same transaction.
* :func:`sweep` recovers deliveries left in ``sending`` past their lease by a crashed process
  and polls ``submitted`` ones (WeChat publishing) until they are final.

Outcomes (see ``adapters/base.py`` for the errors):

==================  ============================================================================
delivered           ``delivered`` with remote id and URL
submitted           ``submitted``; :func:`sweep` polls it until final
RetryableError,     ``failed`` with ``next_attempt_at`` = now + :func:`next_attempt_delay` (at
a bug, a template   least ``Retry-After``); after ``max_attempts`` counted attempts ``dead``
QuotaError          ``failed`` until ``reset_at``; the attempt does not count toward ``dead``
AuthError           ``failed`` with the reason (counted, backed off) and the channel is paused
                    for the rest of this run: its other claimed deliveries go back untouched;
                    logged at ERROR and written to the audit log (``channel.paused``)
RejectedError       ``dead``
AmbiguousError      ``unknown``: an operator decides (``deliveries retry`` / ``cancel``)
==================  ============================================================================

Crash safety: the adapter's ``checkpoint`` callback persists the remote state of every delivery
of the message in a transaction before it returns (and renews the lease); a heartbeat thread
renews the leases of everything this run holds. After a crash the sweeper closes the open
attempt as ``interrupted`` and recovers: a delivery claimed but never started goes back to the
queue; idempotent channels (webhook, outbox) are sent again with the same key; WeChat is
reconciled from the recorded state by ``send(state=recorded)`` (which looks up the draft and
the publish instead of repeating them); whatever stays ambiguous becomes ``unknown``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import time as dtime
from typing import Any, Literal

import requests
import requests.adapters

from media_matrix.adapters import (
    AdapterError,
    AmbiguousError,
    AuthError,
    OutgoingItem,
    QuotaError,
    RejectedError,
    RetryableError,
    SendResult,
    adapter_class,
    make_adapter,
)
from media_matrix.adapters.base import USER_AGENT, BaseAdapter
from media_matrix.config import Settings
from media_matrix.httpclient import make_session
from media_matrix.models import DeliveryStatus
from media_matrix.store import NotFound, Store
from media_matrix.store.dispatching import LeaseLost
from media_matrix.timeutil import cap_retry_after, from_iso, to_iso
from media_matrix.tracking import attach_links

log = logging.getLogger("media_matrix.dispatch")

Jitter = Literal["full", "equal", "decorrelated"]
DEFAULT_JITTER: Jitter = "decorrelated"
RATE_WINDOW = 60.0
POLL_INTERVAL = 1.0


# -- pure decisions ---------------------------------------------------------------------------


def next_attempt_delay(
    attempt: int,
    base: float,
    cap: float,
    rng: random.Random | None = None,
    *,
    jitter: Jitter = DEFAULT_JITTER,
    previous: float | None = None,
) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (1 = the first), at most ``cap``.

    * ``full``: uniform(0, min(cap, base * 2**(attempt-1))) -- spreads retries the most.
    * ``equal``: half the exponential step plus a uniform half: never below half the step.
    * ``decorrelated`` (the default): min(cap, uniform(base, 3 * previous)), where ``previous``
      is the delay chosen last time (``base * 2**(attempt-2)`` when unknown): never shorter
      than ``base``, growing about exponentially, and retries of many deliveries that failed
      together drift apart instead of hitting the remote in step.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    rng = rng or random.Random()
    base = min(base, cap)
    if jitter == "full":
        return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))
    if jitter == "equal":
        step = min(cap, base * 2 ** (attempt - 1))
        return step / 2 + rng.uniform(0.0, step / 2)
    if jitter == "decorrelated":
        if previous is None or previous <= 0:
            previous = base * 2 ** max(0, attempt - 2)
        return min(cap, rng.uniform(base, max(base, 3 * previous)))
    raise ValueError(f"unknown jitter {jitter!r}")


def exhausted(attempts: int, max_attempts: int) -> bool:
    """True when a delivery has used its counted attempts and must go ``dead``."""
    return attempts >= max_attempts


def local_day_bounds(at: datetime, tz: tzinfo) -> tuple[str, str]:
    """The UTC bounds ``[start, end)`` of the local day (config time zone) holding ``at``:
    quotas are counted on the day things are sent, as people in that zone see the day."""
    day = at.astimezone(tz).date()
    start = datetime.combine(day, dtime(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=tz)
    return _iso(start), _iso(end)


def claim_limits(channels: Iterable[Any], now: datetime, tz: tzinfo) -> dict[str, Any]:
    """The per-channel limits every claim applies in its transaction (whatever path claims):
    ``rate_per_minute`` (in deliveries: messages times the adapter's items per message) and
    ``daily_quota`` on the local day of ``now``."""
    chans = list(channels)
    return {
        "rates": {c.name: c.rate_per_minute * _max_items(c) for c in chans if c.rate_per_minute},
        "window_start": _iso(now - timedelta(seconds=RATE_WINDOW)),
        "quotas": {c.name: c.daily_quota for c in chans if c.daily_quota},
        "day": local_day_bounds(now, tz),
    }


def message_key(uids: Sequence[str]) -> str:
    """The message's stable key (same rule as ``adapters.base.Message.key``)."""
    if len(uids) == 1:
        return uids[0]
    return hashlib.sha1("\n".join(uids).encode()).hexdigest()


def group_into_messages(rows: Sequence[dict[str, Any]], max_items: int) -> list[list[dict]]:
    """Deliveries of ONE channel -> messages of at most ``max_items``.

    Rows that already carry a remote state from an earlier attempt of a multi-item message stay
    with that message's batch, in the order recorded in the state (``uids``), so a retry reuses
    the same draft for the same articles; the others are grouped by slot (``slot_at``, else
    ``scheduled_at``) in the order given.
    """
    if max_items <= 1:
        return [[row] for row in rows]
    groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for row in rows:
        if row.get("batch") and row.get("remote_state"):
            key = ("batch", str(row["batch"]))
        else:
            key = ("slot", str(row.get("slot_at") or row.get("scheduled_at") or ""))
        groups.setdefault(key, []).append(row)
    messages: list[list[dict]] = []
    for (kind, _), members in groups.items():
        if kind == "batch":
            order = list((members[0].get("remote_state") or {}).get("uids") or [])
            members = sorted(
                members,
                key=lambda r: (order.index(r["uid"]) if r["uid"] in order else len(order), r["id"]),
            )
        for start in range(0, len(members), max_items):
            messages.append(members[start : start + max_items])
    return messages


_PUBLIC_STEPS = ("submit", "mass_send", "post")


def reusable_state(state: dict[str, Any] | None, uids: Sequence[str]) -> dict[str, Any] | None:
    """The recorded state to hand the adapter for a message of ``uids``.

    A state recorded for a different set of deliveries (a member was cancelled or re-sent by an
    operator) must not bring its draft along -- the draft holds the old set of articles -- so
    only the uploaded media are kept, unless the state says something may already be public, in
    which case it is passed whole and the adapter reconciles.
    """
    if not state:
        return None
    recorded = state.get("uids")
    if not recorded or list(recorded) == list(uids):
        return state
    maybe_public = (
        state.get("publish_id")
        or state.get("msg_id")
        or (state.get("pending") and state.get("step") in _PUBLIC_STEPS)
    )
    if maybe_public:
        return state
    kept = {k: state[k] for k in ("mode", "thumbs", "images") if k in state}
    return kept or None


# -- reports ----------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    owner: str
    started_at: str
    finished_at: str = ""
    claimed: int = 0
    messages: int = 0
    delivered: int = 0
    submitted: int = 0
    retrying: int = 0  # failed, will retry
    quota: int = 0  # rescheduled at a quota reset (not counted)
    dead: int = 0
    unknown: int = 0
    released: int = 0  # claimed but given back (channel paused, rate budget, interrupted)
    lease_lost: int = 0
    estimated: int = 0  # estimated-reach rows written for what became delivered
    paused: dict[str, str] = field(default_factory=dict)  # channel -> reason
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def count(self, channel: str, outcome: str, n: int = 1) -> None:
        per = self.by_channel.setdefault(channel, {})
        per[outcome] = per.get(outcome, 0) + n
        if hasattr(self, outcome) and isinstance(getattr(self, outcome), int):
            setattr(self, outcome, getattr(self, outcome) + n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepReport:
    owner: str
    started_at: str
    finished_at: str = ""
    expired: int = 0  # leases found expired
    released: int = 0  # claimed but never started: back to the queue
    recovered: int = 0  # sent again / reconciled
    polled: int = 0
    delivered: int = 0
    submitted: int = 0  # still publishing after this sweep
    retrying: int = 0
    quota: int = 0
    dead: int = 0
    unknown: int = 0
    lease_lost: int = 0
    estimated: int = 0
    unknown_ids: list[int] = field(default_factory=list)
    paused: dict[str, str] = field(default_factory=dict)
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    count = DispatchReport.count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the engine -------------------------------------------------------------------------------


class _Gates:
    """Process-wide in-flight counts per channel, so overlapping runs share each channel's
    ``concurrency`` (the daemon may run several channels' jobs at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}

    def try_acquire(self, name: str, limit: int) -> bool:
        with self._lock:
            current = self._inflight.get(name, 0)
            if current >= limit:
                return False
            self._inflight[name] = current + 1
            return True

    def release(self, name: str) -> None:
        with self._lock:
            self._inflight[name] = max(0, self._inflight.get(name, 0) - 1)


GATES = _Gates()


@dataclass
class _Unit:
    channel: Any
    rows: list[dict[str, Any]]
    kind: str = "send"  # "send" | "recover"

    @property
    def ids(self) -> list[int]:
        return [r["id"] for r in self.rows]

    @property
    def uids(self) -> list[str]:
        return [r["uid"] for r in self.rows]

    @property
    def key(self) -> str:
        return message_key(self.uids)

    @property
    def state(self) -> dict[str, Any] | None:
        for row in self.rows:
            if row.get("remote_state"):
                return reusable_state(row["remote_state"], self.uids)
        return None


def _iso(dt: datetime) -> str:
    return to_iso(dt)  # type: ignore[return-value]


def _aware(dt: datetime | None) -> datetime:
    if dt is None:
        return datetime.now(UTC)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def default_owner(prefix: str = "dispatch") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AdapterError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        now: datetime | None,
        owner: str,
        report: DispatchReport | SweepReport,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.conf = settings.dispatch
        self.owner = owner
        self.report = report
        self.rng = rng or random.Random()
        self._t0 = _aware(now)
        self._m0 = time.monotonic()
        self._adapters: dict[str, Any] = {}
        self._sessions: list[requests.Session] = []
        self._adapter_lock = threading.Lock()
        self._live: set[int] = set()
        self._lost: set[int] = set()  # leases the heartbeat found gone: their sender stops
        self._live_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.paused = report.paused

    # time on the caller's clock (``now``), advancing with the real one
    def clock(self) -> datetime:
        return self._t0 + timedelta(seconds=time.monotonic() - self._m0)

    def iso(self) -> str:
        return _iso(self.clock())

    def lease_until(self) -> str:
        return _iso(self.clock() + timedelta(seconds=self.conf.lease_seconds))

    # -- bookkeeping --------------------------------------------------------------------------

    def count(self, channel: str, outcome: str, n: int = 1) -> None:
        with self._report_lock:
            self.report.count(channel, outcome, n)

    def error(self, text: str) -> None:
        with self._report_lock:
            if len(self.report.errors) < 50:
                self.report.errors.append(text)

    def hold(self, ids: Iterable[int]) -> None:
        with self._live_lock:
            self._live.update(ids)

    def drop(self, ids: Iterable[int]) -> None:
        with self._live_lock:
            self._live.difference_update(ids)

    def lose(self, ids: set[int]) -> None:
        """Leases found gone (expired while this process stalled, or taken over)."""
        if not ids:
            return
        with self._live_lock:
            ids &= self._live
            self._lost |= ids
            self._live -= ids
        if ids:
            log.warning("%s lost the lease of deliveries %s: stopping them", self.owner, ids)

    def fence(self, ids: Sequence[int]) -> None:
        """Raise :class:`LeaseLost` when the heartbeat found any of these leases gone."""
        with self._live_lock:
            lost = self._lost.intersection(ids)
        if lost:
            raise LeaseLost(f"{self.owner} lost the lease of deliveries {sorted(lost)}")

    def adapter(self, channel: Any) -> Any:
        with self._adapter_lock:
            adapter = self._adapters.get(channel.name)
            if adapter is None:
                session = make_session(
                    int(getattr(channel, "concurrency", 1)), user_agent=USER_AGENT
                )
                self._sessions.append(session)
                adapter = make_adapter(
                    channel,
                    templates_dir=self.settings.templates,
                    session=session,
                    network=self.settings.network.policy,  # pack images: guarded fetches
                )
                self._adapters[channel.name] = adapter
            return adapter

    def render(self, adapter: Any, items: list[OutgoingItem]) -> Any:
        """``adapter.render``, except that the shared default rendering gets the configured
        time zone (``BaseAdapter.render`` always renders in Asia/Shanghai). Each item first
        gets its delivery's tracked link (created on the first render, kept on retries)."""
        attach_links(self.store, self.settings.public.base_url, items)
        if type(adapter).render is BaseAdapter.render:
            from media_matrix.render import render_message

            return render_message(
                adapter.channel,
                items,
                adapter.templates_dir or self.settings.templates,
                timezone=self.settings.timezone,
            )
        return adapter.render(items)

    def start(self) -> None:
        interval = max(0.1, self.conf.lease_seconds / 3)

        def beat() -> None:
            while not self._stop.wait(interval):
                with self._live_lock:
                    ids = sorted(self._live)
                if not ids:
                    continue
                try:
                    held = self.store.renew_leases(
                        ids, self.owner, self.lease_until(), now=self.iso()
                    )
                except Exception:  # noqa: BLE001 - a missed beat is survivable
                    log.exception("lease renewal failed")
                    continue
                self.lose(set(ids) - set(held))

        self._heartbeat = threading.Thread(target=beat, name="dispatch-lease", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        for adapter in self._adapters.values():
            try:
                adapter.close()
            except Exception:  # noqa: BLE001
                log.exception("closing an adapter failed")
        self._adapters.clear()
        for session in self._sessions:
            session.close()
        self._sessions.clear()

    def pause(self, channel: str, reason: str) -> None:
        with self._report_lock:
            if channel in self.paused:
                return
            self.paused[channel] = reason
        log.error("channel %s paused for this run: %s", channel, reason)
        try:
            self.store.audit("dispatch", "channel.paused", f"channel:{channel}", reason)
        except Exception:  # noqa: BLE001
            log.exception("could not write the audit record")

    def release(self, units: Iterable[_Unit]) -> None:
        ids = [i for unit in units for i in unit.ids]
        if not ids:
            return
        n = self.store.release_claims(ids, self.owner, at=self.iso())
        self.drop(ids)
        with self._report_lock:
            self.report.released += n

    # -- scheduling ---------------------------------------------------------------------------

    def execute(self, units: list[_Unit]) -> None:
        """Run the units on a bounded pool, each channel within its own concurrency."""
        if not units:
            return
        queues: OrderedDict[str, deque[_Unit]] = OrderedDict()
        for unit in units:
            queues.setdefault(unit.channel.name, deque()).append(unit)
        workers = max(1, min(self.conf.workers, len(units)))
        inflight: dict[Future[None], _Unit] = {}
        turn = 0
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatch")
        try:
            while queues or inflight:
                for name in [n for n in queues if n in self.paused]:
                    self.release(queues.pop(name))
                names = list(queues)
                if names:
                    turn = (turn + 1) % len(names)
                    names = names[turn:] + names[:turn]
                progressed = True
                while progressed and len(inflight) < workers:
                    progressed = False
                    for name in names:
                        queue = queues.get(name)
                        if not queue or len(inflight) >= workers:
                            continue
                        if not GATES.try_acquire(name, queue[0].channel.concurrency):
                            continue
                        unit = queue.popleft()
                        if not queue:
                            del queues[name]
                        inflight[pool.submit(self.run_unit, unit)] = unit
                        progressed = True
                if not inflight:
                    if queues:  # another run in this process holds the channel's slots
                        time.sleep(0.05)
                        continue
                    break
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = inflight.pop(future)
                    GATES.release(unit.channel.name)
                    exc = future.exception()
                    if exc is not None:  # the store failed under us: the lease will expire
                        log.error("dispatch of %s failed: %s", unit.ids, _describe(exc))
                        self.error(f"{unit.channel.name} {unit.ids}: {_describe(exc)}")
        finally:
            self.release([u for q in queues.values() for u in q])
            pool.shutdown(wait=True)
            for unit in inflight.values():
                GATES.release(unit.channel.name)

    # -- one message --------------------------------------------------------------------------

    def run_unit(self, unit: _Unit) -> None:
        ids = unit.ids
        try:
            self.fence(ids)
            opened = self.store.start_attempts(
                ids, owner=self.owner, started_at=self.iso(), kind=unit.kind, batch=unit.key
            )
        except LeaseLost as exc:
            self.lease_lost(unit, {}, exc)
            return

        def checkpoint(state: dict[str, Any]) -> None:
            """Fenced: raises LeaseLost (writing nothing) unless every lease is still held."""
            self.fence(ids)
            with self.store.transaction():  # the clock is read once the write lock is ours
                self.store.save_remote_state(
                    ids, state, at=self.iso(), owner=self.owner, lease_until=self.lease_until()
                )

        try:
            items = [
                OutgoingItem(
                    delivery_id=row["id"],
                    delivery_uid=row["uid"],
                    pack=self.store.get_pack(row["pack_id"]),
                    scheduled_at=from_iso(row["scheduled_at"]),
                )
                for row in unit.rows
            ]
            adapter = self.adapter(unit.channel)
            message = self.render(adapter, items)
            result = adapter.send(message, checkpoint, state=unit.state)
        except LeaseLost as exc:
            self.lease_lost(unit, opened, exc)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and classified
            self.failed(unit, opened, exc)
        else:
            self.succeeded(unit, opened, result)
        finally:
            self.drop(ids)

    def lease_lost(self, unit: _Unit, opened: dict[int, dict[str, int]], exc: LeaseLost) -> None:
        """This sender stalled past its lease: it writes no outcome (the sweeper that takes
        over owns the delivery now); only its own open attempts are closed, if still open."""
        log.warning("%s %s: %s", unit.channel.name, unit.ids, exc)
        at, note = self.iso(), f"{exc}; stopped before its next remote call"
        closed = self.store.abandon_attempts(
            [o["attempt_id"] for o in opened.values()], at=at, note=note
        )
        if closed < len(unit.ids):  # the sweeper closed them already: say so in the log
            for delivery_id in unit.ids:
                self.store.log_attempt(
                    delivery_id,
                    kind="fence",
                    owner=self.owner,
                    started_at=at,
                    finished_at=at,
                    outcome="lease_lost",
                    error=note,
                )
        self.count(unit.channel.name, "lease_lost", len(unit.ids))

    def succeeded(self, unit: _Unit, opened: dict[int, dict[str, int]], result: SendResult) -> None:
        at = self.iso()
        name = unit.channel.name
        single = len(unit.rows) == 1
        with self.store.transaction():
            for i, row in enumerate(unit.rows):
                url = result.item_urls[i] if i < len(result.item_urls) else None
                if url is None and single:
                    url = result.url
                if result.status == "delivered":
                    applied = self.store.mark_delivered(
                        row["id"],
                        owner=self.owner,
                        at=at,
                        remote_id=result.remote_id,
                        url=url,
                        state=result.state or None,
                    )
                else:
                    applied = self.store.mark_submitted(
                        row["id"],
                        owner=self.owner,
                        at=at,
                        remote_id=result.remote_id,
                        state=result.state or None,
                    )
                self.store.finish_attempt(
                    opened[row["id"]]["attempt_id"],
                    finished_at=at,
                    outcome=result.status,
                    http_status=result.http_status,
                    remote_id=result.remote_id,
                    error=None if applied else "lease lost to a sweeper; outcome not applied",
                    excerpt=result.excerpt,
                )
                self.count(name, result.status if applied else "lease_lost")

    def failed(self, unit: _Unit, opened: dict[int, dict[str, int]], exc: Exception) -> None:
        now = self.clock()
        at = _iso(now)
        name = unit.channel.name
        text = _describe(exc)
        http_status = getattr(exc, "http_status", None)
        excerpt = getattr(exc, "excerpt", None) or None
        ids = unit.ids
        if isinstance(exc, AdapterError):
            log.info("%s %s: %s", name, ids, text)
        else:
            log.warning("%s %s: %s", name, ids, text, exc_info=not _expected(exc))

        def finish(
            delivery_id: int,
            outcome: str,
            applied: bool,
            *,
            error: str | None = None,
            counted: str | None = None,
            **extra: Any,
        ) -> None:
            message = error or text
            self.store.finish_attempt(
                opened[delivery_id]["attempt_id"],
                finished_at=at,
                outcome=outcome,
                http_status=http_status,
                error=message if applied else f"{message} (lease lost to a sweeper; not applied)",
                excerpt=excerpt,
                **extra,
            )
            label = counted or _REPORTED.get(outcome, outcome)
            self.count(name, label if applied else "lease_lost")

        with self.store.transaction():
            if isinstance(exc, QuotaError):
                retry = max(_aware(exc.reset_at), now)
                for i in ids:
                    if unit.kind in ("send", "recover"):
                        self.store.uncount_attempt(i)
                    ok = self.store.mark_failed(
                        i, owner=self.owner, at=at, next_attempt_at=_iso(retry), error=text
                    )
                    finish(i, "quota", ok, retry_at=_iso(retry))
                return
            if isinstance(exc, AmbiguousError):
                for i in ids:
                    finish(
                        i,
                        "unknown",
                        self.store.mark_unknown(i, owner=self.owner, at=at, error=text),
                    )
                return
            if isinstance(exc, RejectedError | NotFound):
                for i in ids:
                    finish(
                        i, "rejected", self.store.mark_dead(i, owner=self.owner, at=at, error=text)
                    )
                return
            outcome = _outcome_of(exc)
            attempts = max(opened[i]["attempts"] for i in ids)
            if exhausted(attempts, self.conf.max_attempts):
                final = f"gave up after {attempts} attempts: {text}"
                for i in ids:
                    ok = self.store.mark_dead(i, owner=self.owner, at=at, error=final)
                    finish(i, outcome, ok, error=final, counted="dead")
            else:
                delay = next_attempt_delay(
                    attempts,
                    self.conf.backoff_base,
                    self.conf.backoff_cap,
                    self.rng,
                    previous=self.store.last_retry_delay(ids[0]),
                )
                retry_after = cap_retry_after(
                    getattr(exc, "retry_after", None), self.conf.max_retry_after
                )
                if retry_after:
                    delay = max(delay, retry_after)
                retry = _iso(now + timedelta(seconds=delay))
                for i in ids:
                    ok = self.store.mark_failed(
                        i, owner=self.owner, at=at, next_attempt_at=retry, error=text
                    )
                    finish(i, outcome, ok, retry_at=retry, retry_in=round(delay, 3))
        if isinstance(exc, AuthError):
            self.pause(name, text)


_REPORTED = {
    "quota": "quota",
    "unknown": "unknown",
    "rejected": "dead",
    "retry": "retrying",
    "auth": "retrying",
    "render": "retrying",
    "error": "retrying",
}


def _outcome_of(exc: Exception) -> str:
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, RetryableError):
        return "retry"
    from media_matrix.render import TemplateError

    if isinstance(exc, TemplateError):
        return "render"
    return "error"


def _expected(exc: Exception) -> bool:
    from media_matrix.render import TemplateError

    return isinstance(exc, TemplateError | OSError)


def _channels(settings: Settings, names: Iterable[str] | None) -> list[Any]:
    if names is None:
        return [c for c in settings.channels if c.enabled]
    return [settings.channel(n) for n in names if settings.channel(n).enabled]


def _max_items(channel: Any) -> int:
    try:
        return int(getattr(adapter_class(channel.type), "max_items", 1))
    except ValueError:
        return 1


# -- public API -------------------------------------------------------------------------------


def dispatch_due(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    owner: str | None = None,
    rng: random.Random | None = None,
    limit: int | None = None,
) -> DispatchReport:
    """Claim what is due on these channels (default: every enabled one), send it, record it.

    Returns when every claimed delivery has an outcome (delivered, submitted, failed with a
    retry time, dead, unknown) or was given back (channel paused by an auth error, rate budget).
    Retries that are not due yet are left for a later call.
    """
    owner = owner or default_owner()
    start = _aware(now)
    report = DispatchReport(owner=owner, started_at=_iso(start))
    chosen = _channels(settings, channels)
    engine = _Engine(settings, store, now=start, owner=owner, report=report, rng=rng)
    by_name = {c.name: c for c in chosen}
    limits = claim_limits(chosen, start, settings.tz)
    engine.start()
    try:
        rows = store.claim_due(
            now=_iso(start),
            owner=owner,
            lease_until=engine.lease_until(),
            channels=list(by_name),
            limit=limit,
            batch=settings.dispatch.claim_batch,
            **limits,
        )
        engine.hold(r["id"] for r in rows)
        report.claimed = len(rows)
        units: list[_Unit] = []
        per_channel: OrderedDict[str, list[dict]] = OrderedDict()
        for row in rows:
            per_channel.setdefault(row["channel"], []).append(row)
        for name, channel_rows in per_channel.items():
            channel = by_name[name]
            units += [
                _Unit(channel, m) for m in group_into_messages(channel_rows, _max_items(channel))
            ]
        report.messages = len(units)
        engine.execute(units)
    finally:
        engine.close()
        report.finished_at = engine.iso()
    _estimate_delivered(settings, store, report, start)
    if report.claimed:
        log.info(
            "dispatch %s: %d claimed in %d messages; %d delivered, %d submitted, %d retrying, "
            "%d quota, %d dead, %d unknown",
            owner,
            report.claimed,
            report.messages,
            report.delivered,
            report.submitted,
            report.retrying,
            report.quota,
            report.dead,
            report.unknown,
        )
    return report


def sweep(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    owner: str | None = None,
    wait: float = 0.0,
    rng: random.Random | None = None,
) -> SweepReport:
    """Recover expired leases, then poll submitted deliveries.

    * A delivery left in ``sending`` past its lease: its open attempt is closed as
      ``interrupted``; claimed but never started -> back to queued/failed; idempotent channels
      -> sent again with the same key; WeChat and other non-idempotent channels -> ``send`` with
      the recorded state, which reconciles with the remote instead of repeating a public effect;
      still ambiguous -> ``unknown`` (listed in the report's ``unknown_ids``).
    * ``submitted`` deliveries are polled (one call per remote id); with ``wait`` > 0 polling
      repeats every second until all are final or ``wait`` seconds have passed.
    * Failed deliveries whose retry came due are left for :func:`dispatch_due`.
    """
    owner = owner or default_owner("sweep")
    start = _aware(now)
    report = SweepReport(owner=owner, started_at=_iso(start))
    chosen = _channels(settings, channels)
    by_name = {c.name: c for c in chosen}
    engine = _Engine(settings, store, now=start, owner=owner, report=report, rng=rng)
    engine.start()
    try:
        _recover(engine, store, by_name, start)
        _poll(engine, store, by_name, wait)
    finally:
        engine.close()
        report.finished_at = engine.iso()
    _estimate_delivered(settings, store, report, start)
    if report.expired or report.polled:
        log.info(
            "sweep %s: %d expired leases (%d released, %d recovered), %d polled; "
            "%d delivered, %d still submitted, %d unknown",
            owner,
            report.expired,
            report.released,
            report.recovered,
            report.polled,
            report.delivered,
            report.submitted,
            report.unknown,
        )
    return report


def _estimate_delivered(
    settings: Settings, store: Store, report: DispatchReport | SweepReport, start: datetime
) -> None:
    """The estimated-reach row of every delivery that became delivered in this run, written
    now (``stats summary`` right after a dispatch shows its volume; ``stats pull`` only adds
    measured figures)."""
    if report.delivered:
        from media_matrix.stats.collect import estimate  # heavy: only when something landed

        report.estimated = estimate(settings, store, since=start)
        # 群众点单 (issue 13): orders answered by what just landed in their county
        store.fulfil_requests(settings.county_channels(), by="dispatch", since=_iso(start))


def _recover(engine: _Engine, store: Store, by_name: dict[str, Any], start: datetime) -> None:
    report = engine.report
    assert isinstance(report, SweepReport)
    expired = store.expired_leases(_iso(start), channels=list(by_name))
    if not expired:
        return
    previous = {r["id"]: r for r in expired}
    taken = store.take_over(
        list(previous), owner=engine.owner, lease_until=engine.lease_until(), now=_iso(start)
    )
    engine.hold(r["id"] for r in taken)
    report.expired = len(taken)
    started: list[dict[str, Any]] = []
    never: list[dict[str, Any]] = []
    for row in taken:
        old = previous[row["id"]]
        note = (
            f"lease of {old['lease_owner']} expired at {old['lease_until']}: the sender stopped "
            "mid-attempt (crash, kill or hang); recovered by the sweeper"
        )
        opened = store.interrupt_open_attempts(row["id"], at=engine.iso(), note=note)
        (started if opened or row.get("remote_state") else never).append(row)
    if never:
        engine.release(_Unit(by_name[r["channel"]], [r]) for r in never)
    units: list[_Unit] = []
    per_channel: OrderedDict[str, list[dict]] = OrderedDict()
    for row in started:
        per_channel.setdefault(row["channel"], []).append(row)
    for name, rows in per_channel.items():
        channel = by_name[name]
        units += [
            _Unit(channel, m, kind="recover")
            for m in group_into_messages(rows, _max_items(channel))
        ]
    report.recovered = sum(len(u.rows) for u in units)
    engine.execute(units)
    ids = [r["id"] for r in started]
    report.unknown_ids = [
        r["id"] for r in store.deliveries_by_id(ids) if r["status"] == DeliveryStatus.UNKNOWN
    ]


def _poll(engine: _Engine, store: Store, by_name: dict[str, Any], wait_s: float) -> None:
    report = engine.report
    deadline = time.monotonic() + max(0.0, wait_s)
    first = True
    while True:
        rows = store.submitted_deliveries(channels=list(by_name))
        if not rows:
            report.submitted = 0
            return
        if not first:
            if time.monotonic() + POLL_INTERVAL > deadline:
                report.submitted = len(rows)
                return
            time.sleep(POLL_INTERVAL)
        first = False
        rows = _give_up_stale(engine, rows)
        groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
        for row in rows:
            groups.setdefault((row["channel"], str(row["remote_id"])), []).append(row)
        workers = max(1, min(engine.conf.workers, len(groups)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            list(pool.map(lambda g: _poll_one(engine, by_name[g[0][0]], g[1]), groups.items()))
        if wait_s <= 0:
            report.submitted = len(store.submitted_deliveries(channels=list(by_name)))
            return


def submitted_too_long(row: dict[str, Any], now: datetime, max_age: float) -> bool:
    """A ``submitted`` delivery sent (claimed) more than ``max_age`` seconds before ``now``:
    polling it further is pointless, an operator must look."""
    since = from_iso(row.get("claimed_at") or row.get("updated_at"))
    return since is not None and (now - since).total_seconds() > max_age


def _give_up_stale(engine: _Engine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark ``submitted`` deliveries older than ``dispatch.submitted_max_age`` ``unknown``, with
    the reason; returns the rows still to poll."""
    now, max_age = engine.clock(), engine.conf.submitted_max_age
    stale = [r for r in rows if submitted_too_long(r, now, max_age)]
    if not stale:
        return rows
    at = _iso(now)
    with engine.store.transaction():
        for row in stale:
            reason = (
                f"submitted at {row.get('claimed_at') or row.get('updated_at')} (remote id "
                f"{row['remote_id']}) and still not final after {max_age / 3600:g} h "
                "(dispatch.submitted_max_age): check the remote, then retry or cancel"
            )
            applied = engine.store.mark_unknown(
                row["id"], owner=None, at=at, error=reason, expect=DeliveryStatus.SUBMITTED
            )
            engine.store.log_attempt(
                row["id"],
                kind="poll",
                owner=engine.owner,
                started_at=at,
                finished_at=at,
                outcome="unknown",
                remote_id=row["remote_id"],
                error=reason,
            )
            engine.count(row["channel"], "unknown" if applied else "lease_lost")
            if applied and isinstance(engine.report, SweepReport):
                with engine._report_lock:
                    engine.report.unknown_ids.append(row["id"])
    gone = {r["id"] for r in stale}
    return [r for r in rows if r["id"] not in gone]


def _poll_one(engine: _Engine, channel: Any, rows: list[dict[str, Any]]) -> None:
    store = engine.store
    report = engine.report
    remote_id = str(rows[0]["remote_id"])
    state = rows[0].get("remote_state") or {}
    started = engine.iso()
    with engine._report_lock:
        report.polled += len(rows)
    try:
        result = engine.adapter(channel).poll(remote_id, state)
    except Exception as exc:  # noqa: BLE001 - classified below
        at = engine.iso()
        text = _describe(exc)
        final = isinstance(exc, RejectedError)
        with store.transaction():
            for row in rows:
                if final:
                    applied = store.mark_dead(
                        row["id"], owner=None, at=at, error=text, expect="submitted"
                    )
                    engine.count(channel.name, "dead" if applied else "lease_lost")
                store.log_attempt(
                    row["id"],
                    kind="poll",
                    owner=engine.owner,
                    started_at=started,
                    finished_at=at,
                    outcome="rejected" if final else _outcome_of(exc),
                    http_status=getattr(exc, "http_status", None),
                    remote_id=remote_id,
                    error=text,
                    excerpt=getattr(exc, "excerpt", None) or None,
                )
        return
    at = engine.iso()
    if result.status != "delivered":
        return  # still publishing: nothing to log, polled again next sweep
    order = list(state.get("uids") or [])
    with store.transaction():
        for i, row in enumerate(rows):
            idx = order.index(row["uid"]) if row["uid"] in order else i
            url = result.item_urls[idx] if idx < len(result.item_urls) else None
            if url is None and len(rows) == 1:
                url = result.url
            applied = store.mark_delivered(
                row["id"],
                owner=None,
                at=at,
                remote_id=result.remote_id or remote_id,
                url=url,
                state=result.state or None,
                expect="submitted",
            )
            store.log_attempt(
                row["id"],
                kind="poll",
                owner=engine.owner,
                started_at=started,
                finished_at=at,
                outcome="delivered",
                http_status=result.http_status,
                remote_id=result.remote_id or remote_id,
                excerpt=result.excerpt,
            )
            engine.count(channel.name, "delivered" if applied else "lease_lost")


__all__ = [
    "DispatchReport",
    "SweepReport",
    "dispatch_due",
    "exhausted",
    "group_into_messages",
    "message_key",
    "next_attempt_delay",
    "claim_limits",
    "local_day_bounds",
    "reusable_state",
    "sweep",
]
