"""`media-matrix daemon`: APScheduler 3.x wiring over the service functions, nothing more.

Jobs (one BlockingScheduler, a thread pool of ``daemon.workers``):

* ``feed:NAME``      every feed's ``every``: ``run_ingest(feeds=[NAME], due_only=True)``; also
                     once at start (a feed that is not due yet is skipped cheaply).
* ``slot:CH:I``      one cron job per channel slot expression (``planner.cron_trigger`` in the
                     config time zone, so daemon and planner agree on when a slot is): fill that
                     slot (``scheduling.fill_slot``, as of the slot's scheduled fire time) and
                     dispatch what is due on the channel.
* ``sweep``          every ``daemon.sweep_every``: ``flow.run_round`` with urgent packs and no
                     fill: ``dispatch.sweep`` (expired leases, pending asynchronous publishes),
                     urgent approved packs queued, ``dispatch.dispatch_due`` for every channel.
* ``stats``          daily at ``daemon.stats_at``: ``flow.pull_stats``.

Missed slots. Every slot job runs with ``coalesce=True`` and ``misfire_grace_time =
daemon.misfire_grace``. APScheduler's in-memory job store forgets past runs on restart, so each
slot's last fire time is kept in the store (``slot_runs``). On start, for each slot job, the most
recent fire time at or before now is run once, at once, if it is within the grace period and
later than the recorded run. A run claims its fire time in the store before it does anything
(compare-and-set), so a fire time runs at most once whoever asks: the catch-up, the cron trigger,
or a second start. A slot never seen before (new database, new channel, new expression) gets a
baseline instead of a catch-up.

Single instance. A row in ``daemon_locks`` names the holder (owner token, pid, host) and carries a
heartbeat refreshed every ``daemon.heartbeat_every`` seconds by a thread of its own. A second
daemon on the same database refuses to start (:class:`DaemonRefused`, exit 1) naming the holder,
unless the holder is stale: no heartbeat for ``daemon.stale_after`` seconds, or a pid that is not
running on this host. A daemon that finds its lock taken over stops (exit 1).

Stopping. SIGTERM and SIGINT stop the scheduler with ``shutdown(wait=True)``: running jobs
finish (jobs that had not started yet skip), then the lock is released; exit code 0.

Logs. One JSON object per line on stderr: ``ts``, ``event`` and the event's fields (``feed`` or
``channel``, counts, ``outcome``; slot jobs add ``scheduled`` and ``lateness_ms`` = actual start
minus scheduled fire time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TextIO

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobEvent,
    SchedulerEvent,
)
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from media_matrix import planner, scheduling
from media_matrix.config import Settings
from media_matrix.cron import last_fire_before
from media_matrix.dispatch import dispatch_due
from media_matrix.flow import pull_stats, run_round
from media_matrix.ingest import run_ingest
from media_matrix.instance import LOCK_NAME, DaemonRefused, stale_reason
from media_matrix.redact import redact_record
from media_matrix.store import Store, open_store
from media_matrix.timeutil import from_iso, to_iso, utcnow

# -- structured log -----------------------------------------------------------------------------


class JsonLog:
    """One JSON object per line; thread-safe; never raises."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        record.update(fields)
        line = json.dumps(redact_record(record), ensure_ascii=False, default=str)
        stream = self.stream or sys.stderr
        with self.lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass


class _JsonHandler(logging.Handler):
    """Library log records as JSON lines too: APScheduler's warnings (missed runs, overlaps)
    and the services' own loggers (``media_matrix.dispatch``: per-delivery failures, ...)."""

    def __init__(self, log: JsonLog, level: int) -> None:
        super().__init__(level=level)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {
            "logger": record.name,
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
        self.log("log", **fields)


def _route_logging(log: JsonLog) -> Callable[[], None]:
    """Send the libraries' log records to ``log`` (not to stderr as plain text); returns a
    function that undoes it."""
    undo = []
    for name, level in (("apscheduler", logging.WARNING), ("media_matrix", logging.INFO)):
        logger = logging.getLogger(name)
        handler = _JsonHandler(log, level)
        saved = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        undo.append((logger, handler, saved))

    def restore() -> None:
        for logger, handler, (level, propagate) in undo:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate

    return restore


# -- triggers -----------------------------------------------------------------------------------


def slot_trigger(expr: str, tz: tzinfo | str, second: str = "0") -> CronTrigger:
    """The slot's cron trigger from ``planner.cron_trigger``, with ``daemon.slot_second`` as
    its seconds field (unchanged for the default "0")."""
    base = planner.cron_trigger(expr, tz)
    if second == "0":
        return base
    fields = {f.name: str(f) for f in base.fields}
    fields["second"] = second
    return CronTrigger(timezone=base.timezone, **fields)


# -- executor: tell a job its scheduled fire time -----------------------------------------------

_RUN = threading.local()


def _run_with_time(job: Any, alias: str, run_times: list[datetime], logger: str) -> list[Any]:
    _RUN.scheduled = run_times[-1] if run_times else None
    try:
        return run_job(job, alias, run_times, logger)
    finally:
        _RUN.scheduled = None


class _Executor(ThreadPoolExecutor):
    """APScheduler's thread pool executor, plus a thread-local with the run's scheduled time
    (every job here coalesces, so there is one run time per submission)."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def done(future: Any) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        future = self._pool.submit(
            _run_with_time, job, job._jobstore_alias, run_times, self._logger.name
        )
        future.add_done_callback(done)


def scheduled_time() -> datetime | None:
    return getattr(_RUN, "scheduled", None)


# -- the daemon ---------------------------------------------------------------------------------


def _summary(report: Any) -> Any:
    """A short, JSON-able view of a service's report for a log line: scalars as they are,
    mappings of scalars (per-channel counts) kept, lists cut to their first five entries."""
    if report is None:
        return None
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    elif is_dataclass(report) and not isinstance(report, type):
        report = asdict(report)
    if not isinstance(report, dict):
        return str(report)[:300]
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, int | float | str | bool) or value is None:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = value if len(json.dumps(value, default=str)) <= 2000 else len(value)
        elif isinstance(value, list | tuple | set):
            items = [str(v)[:300] for v in list(value)[:5]]
            out[key] = items + ([f"... {len(value) - 5} more"] if len(value) > 5 else [])
    return out


def _busy(summary: Any) -> bool:
    """Did a sweep or dispatch do anything worth a log line?"""
    if isinstance(summary, dict):
        return any(
            (isinstance(v, int | float) and not isinstance(v, bool) and v)
            or (isinstance(v, dict | list) and v)
            for k, v in summary.items()
            if k not in ("owner", "started_at", "finished_at")
        )
    return bool(summary)


class Daemon:
    def __init__(self, settings: Settings, *, log: JsonLog | None = None) -> None:
        self.settings = settings
        self.log = log or JsonLog()
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.exit_code = 0
        self.stopping = threading.Event()  # no new job runs start
        self.halted = threading.Event()  # the scheduler is down: the heartbeat may end
        self.started = threading.Event()
        self._local = threading.local()
        self._stores: list[Store] = []
        self._stores_lock = threading.Lock()
        self._channel_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self.scheduler: BlockingScheduler | None = None

    # -- stores: one SQLite connection per thread (WAL: readers never wait for the writer) --

    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.settings.database, migrate=False)
            self._local.store = store
            with self._stores_lock:
                self._stores.append(store)
        return store

    def _close_stores(self) -> None:
        with self._stores_lock:
            for store in self._stores:
                with contextlib.suppress(Exception):  # closing on the way out
                    store.close()
            self._stores.clear()

    # -- lock -----------------------------------------------------------------------------------

    def acquire(self, store: Store) -> None:
        for _ in range(5):
            holder = store.get_lock(LOCK_NAME)
            if holder is None:
                if store.claim_lock(LOCK_NAME, self.owner, pid=self.pid, host=self.host):
                    return
                continue
            reason = stale_reason(holder, self.settings.daemon.stale_after, host=self.host)
            if reason is None:
                raise DaemonRefused(holder)
            self.log(
                "lock_takeover",
                previous_pid=holder["pid"],
                previous_host=holder["host"],
                reason=reason,
            )
            if store.claim_lock(
                LOCK_NAME, self.owner, pid=self.pid, host=self.host, replace_owner=holder["owner"]
            ):
                return
        holder = store.get_lock(LOCK_NAME)
        raise DaemonRefused(holder or {"pid": "?", "host": "?", "started_at": "?"})

    def _heartbeat(self) -> None:
        store = open_store(self.settings.database, migrate=False)
        try:
            # beats until the scheduler is down: in-flight jobs finishing after SIGTERM still
            # hold the lock, so no second daemon starts beside them
            while not self.halted.wait(self.settings.daemon.heartbeat_every):
                try:
                    held = store.heartbeat_lock(LOCK_NAME, self.owner)
                except Exception as exc:  # noqa: BLE001 - a busy database must not kill it
                    self.log("heartbeat_error", error=str(exc))
                    continue
                if not held:
                    self.log(
                        "lock_lost",
                        outcome="stopping",
                        message="另一个守护进程接管了锁 (the lock was taken over)",
                    )
                    self.exit_code = 1
                    self.request_stop("lock_lost")
                    return
        finally:
            store.close()

    # -- jobs -----------------------------------------------------------------------------------

    def _guard(self, name: str, fields: dict[str, Any], func: Callable[[], None]) -> None:
        if self.stopping.is_set():
            self.log("job_skipped", job=name, reason="stopping", **fields)
            return
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - one job's failure is logged, never fatal
            tail = traceback.format_exception(exc)[-3:]
            self.log(
                "job_error",
                job=name,
                outcome="error",
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(tail).strip(),
                **fields,
            )

    def run_feed(self, feed: str) -> None:
        def body() -> None:
            started = time.monotonic()
            store = self.store()
            report = run_ingest(self.settings, store, feeds=[feed], due_only=True)
            indexed = store.catch_up_search()  # here, not in the console's first search
            for f in report.feeds:
                if f.skipped:
                    continue  # not due: no line every poll
                outcome = "failed" if f.failed else "not_modified" if f.not_modified else "ok"
                self.log(
                    "ingest",
                    feed=f.feed,
                    kind=f.kind,
                    outcome=outcome,
                    new=f.new,
                    updated=f.updated,
                    merged=f.merged,
                    unchanged=f.unchanged,
                    item_errors=len(f.item_errors),
                    indexed=indexed,
                    error=f.error,
                    duration_ms=round((time.monotonic() - started) * 1000),
                )

        self._guard(f"feed:{feed}", {"feed": feed}, body)

    def run_slot(
        self, channel: str, expr: str, fire_at: datetime | None = None, catchup: bool = False
    ) -> None:
        started_at = utcnow()
        fire = fire_at or scheduled_time() or started_at
        lateness = round((started_at - fire).total_seconds() * 1000, 1)
        scheduled = fire.astimezone(UTC).isoformat(timespec="seconds")
        fields = {"channel": channel, "slot": expr, "scheduled": scheduled}

        def body() -> None:
            store = self.store()
            began = time.monotonic()
            slot_at = fire.astimezone(UTC).replace(second=0, microsecond=0)
            with self._channel_locks[channel]:
                # claim and fill together: a fill that fails leaves the fire time unclaimed
                with store.transaction():
                    if not store.claim_slot_run(channel, expr, to_iso(fire)):  # type: ignore[arg-type]
                        self.log("slot_skipped", reason="already ran for this fire time", **fields)
                        return
                    self.log("slot_fired", lateness_ms=lateness, catchup=catchup, **fields)
                    filled = scheduling.fill_slot(self.settings, store, channel, slot_at)
                dispatched = self._dispatch_due(store, [channel])
            self.log(
                "slot_done",
                outcome="ok",
                lateness_ms=lateness,
                catchup=catchup,
                slot_at=to_iso(slot_at),
                queued=len(filled.queued),
                delivery_ids=[q.delivery_id for q in filled.queued],
                skipped=len(filled.skipped),
                dispatch=dispatched,
                duration_ms=round((time.monotonic() - began) * 1000),
                **fields,
            )

        self._guard(f"slot:{channel}", fields, body)

    def _dispatch_due(self, store: Store, channels: list[str] | None) -> Any:
        return _summary(dispatch_due(self.settings, store, channels=channels))

    def run_sweep(self) -> None:
        def body() -> None:
            store = self.store()
            began = time.monotonic()
            # the shared round without fill (slots fill at their own times) and without the
            # trailing poll (the next sweep polls what this one submitted)
            done = run_round(self.settings, store, urgent=True, poll=False, by="daemon")
            for q in done.urgent:
                self.log(
                    "urgent_queued",
                    channel=q.channel,
                    pack_id=q.pack_id,
                    delivery_id=q.delivery_id,
                    outcome="queued",
                )
            swept, dispatched = _summary(done.sweep), _summary(done.dispatch)
            if done.urgent or _busy(swept) or _busy(dispatched):
                self.log(
                    "sweep",
                    outcome="ok",
                    urgent_queued=len(done.urgent),
                    sweep=swept,
                    dispatch=dispatched,
                    duration_ms=round((time.monotonic() - began) * 1000),
                )

        self._guard("sweep", {}, body)

    def run_stats(self) -> None:
        def body() -> None:
            began = time.monotonic()
            result = pull_stats(self.settings, self.store())
            errors = result.get("errors") if isinstance(result, dict) else None
            self.log(
                "stats_pull",
                outcome="error" if errors else "ok",
                result=_summary(result),
                duration_ms=round((time.monotonic() - began) * 1000),
            )

        self._guard("stats", {}, body)

    # -- wiring ---------------------------------------------------------------------------------

    def build(self, store: Store, now: datetime | None = None) -> BlockingScheduler:
        settings = self.settings
        cfg = settings.daemon
        tz = settings.tz
        now = now or utcnow()
        scheduler = BlockingScheduler(
            timezone=tz,
            executors={"default": _Executor(cfg.workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(cfg.misfire_grace)),
            },
        )
        for i, feed in enumerate(f for f in settings.feeds if f.enabled):
            scheduler.add_job(
                self.run_feed,
                "interval",
                seconds=feed.every,
                args=[feed.name],
                id=f"feed:{feed.name}",
                name=f"ingest {feed.name}",
                next_run_time=now + timedelta(seconds=0.2 * i),
            )
        catchups = []
        for channel in settings.channels:
            if not channel.enabled:
                continue
            for i, expr in enumerate(channel.slots):
                trigger = slot_trigger(expr, tz, cfg.slot_second)
                scheduler.add_job(
                    self.run_slot,
                    trigger,
                    args=[channel.name, expr],
                    id=f"slot:{channel.name}:{i}",
                    name=f"slot {channel.name} {expr}",
                )
                last = from_iso(store.last_slot_run(channel.name, expr))
                if last is None:
                    store.mark_slot_seen(channel.name, expr, to_iso(now))  # type: ignore[arg-type]
                    continue
                missed = last_fire_before(trigger, now, after=last, grace=cfg.misfire_grace)
                if missed is not None:
                    catchups.append((channel.name, expr, missed))
        for channel_name, expr, missed in catchups:
            self.log(
                "slot_catchup",
                channel=channel_name,
                slot=expr,
                scheduled=missed.astimezone(UTC).isoformat(timespec="seconds"),
                missed_by_ms=round((now - missed).total_seconds() * 1000),
            )
            scheduler.add_job(
                self.run_slot,
                "date",
                run_date=now,
                args=[channel_name, expr],
                kwargs={"fire_at": missed, "catchup": True},
                id=f"catchup:{channel_name}:{expr}",
                misfire_grace_time=None,
            )
        scheduler.add_job(
            self.run_sweep,
            "interval",
            seconds=cfg.sweep_every,
            id="sweep",
            name="sweep",
            next_run_time=now + timedelta(seconds=1),
        )
        scheduler.add_job(
            self.run_stats, planner.cron_trigger(cfg.stats_at, tz), id="stats", name="stats pull"
        )
        scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)
        self.catchups = len(catchups)
        return scheduler

    def _on_event(self, event: JobEvent) -> None:
        name = "job_missed" if event.code == EVENT_JOB_MISSED else "job_overlap"
        scheduled = getattr(event, "scheduled_run_time", None) or getattr(
            event, "scheduled_run_times", None
        )
        self.log(name, job=event.job_id, scheduled=scheduled, outcome="skipped")

    def _on_started(self, event: SchedulerEvent) -> None:
        self.started.set()

    # -- stopping -------------------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        if self.stopping.is_set():
            self.log("stop_already_requested", reason=why)
            return
        self.stopping.set()
        self.log("stopping", reason=why)
        threading.Thread(target=self._shutdown, name="daemon-shutdown", daemon=True).start()

    def _shutdown(self) -> None:
        self.started.wait()
        try:
            assert self.scheduler is not None
            self.scheduler.shutdown(wait=True)  # running jobs finish first
        except SchedulerNotRunningError:
            pass

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request_stop(signal.Signals(signum).name)

    # -- main -----------------------------------------------------------------------------------

    def run(self) -> int:
        settings = self.settings
        restore_logging = _route_logging(self.log)
        store = open_store(settings.database)  # migrate once, in the main thread
        try:
            self.acquire(store)
        except DaemonRefused as exc:
            self.log(
                "refused",
                outcome="refused",
                holder_pid=exc.holder.get("pid"),
                holder_host=exc.holder.get("host"),
            )
            store.close()
            restore_logging()
            raise
        heartbeat = threading.Thread(target=self._heartbeat, name="daemon-heartbeat", daemon=True)
        previous = {  # from here on a signal stops the daemon cleanly, even while it starts
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.scheduler = self.build(store)
            jobs = self.scheduler.get_jobs()
            self.log(
                "daemon_started",
                pid=self.pid,
                host=self.host,
                database=str(settings.database),
                jobs=len(jobs),
                feeds=sum(j.id.startswith("feed:") for j in jobs),
                slots=sum(j.id.startswith("slot:") for j in jobs),
                catchups=self.catchups,
                misfire_grace=settings.daemon.misfire_grace,
                slot_second=settings.daemon.slot_second,
            )
            heartbeat.start()
            if not self.stopping.is_set():
                self.scheduler.start()  # blocks until shutdown
        finally:
            self.stopping.set()
            self.halted.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if heartbeat.is_alive():
                heartbeat.join(timeout=settings.daemon.heartbeat_every + 5)
            self._close_stores()
            released = store.release_lock(LOCK_NAME, self.owner)
            store.close()
            self.log(
                "daemon_stopped",
                outcome="ok" if self.exit_code == 0 else "error",
                lock_released=released,
                exit_code=self.exit_code,
            )
            restore_logging()
        return self.exit_code


def run_daemon(settings: Settings, *, log: JsonLog | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code. Raises :class:`DaemonRefused` when
    another live daemon holds the database."""
    return Daemon(settings, log=log).run()


__all__ = ["Daemon", "DaemonRefused", "JsonLog", "run_daemon", "slot_trigger"]
