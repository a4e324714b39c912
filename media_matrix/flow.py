"""The main job, once: every step of the flow in order, each the service of its own module.

ingest (with tagging and the feeds' auto-approve rule) -> urgent packs queued now -> each
enabled channel gets a batch booked now by the planner (a manual run is an operator saying
"send a batch now": it is booked at the time it is sent, so today's quotas hold for it) ->
that batch sent now -> asynchronous publishes polled until final
-> estimated reach recorded by dispatch as each delivery becomes delivered (measured WeChat reads
come from `stats pull`).
The daemon does the same steps, each at its own time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from media_matrix.config import ConfigError, Settings
from media_matrix.dispatch import DispatchReport, SweepReport, dispatch_due, sweep
from media_matrix.ingest import FeedReport, IngestReport, run_ingest
from media_matrix.officers import RosterError, import_roster
from media_matrix.orders import import_configured
from media_matrix.scheduling import QueuedDelivery, fill_now, queue_urgent
from media_matrix.store import Store
from media_matrix.timeutil import utcnow
from media_matrix.tracking import delivery_track_urls


@dataclass
class RunReport:
    ingest: IngestReport
    queued: list[QueuedDelivery] = field(default_factory=list)
    dispatch: DispatchReport | None = None
    sweep: SweepReport | None = None
    estimated: int = 0  # estimated-reach rows written for this run's deliveries
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # this run's, final state
    track_urls: dict[int, str] = field(default_factory=dict)  # delivery id -> tracked link
    officers: tuple[int, int] | None = None  # (added, updated) from the config's roster
    requests: tuple[int, int] | None = None  # 群众点单 (added, already there) from config

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingest": [f.to_dict() for f in self.ingest.feeds],
            "new_pack_ids": self.ingest.new_pack_ids,
            "estimated_rows": self.estimated,
            "queued": [q.to_dict() for q in self.queued],
            "deliveries": [
                {
                    k: d[k]
                    for k in (
                        "id",
                        "pack_id",
                        "channel",
                        "status",
                        "attempts",
                        "url",
                        "remote_id",
                        "last_error",
                        "slot_at",
                        "scheduled_at",
                    )
                }
                | {"track_url": self.track_urls.get(d["id"])}
                for d in self.deliveries
            ],
        }


def import_configured_roster(settings: Settings, store: Store) -> tuple[int, int] | None:
    """The 科普信息员 roster named by ``officers:`` in config; a bad one is a config error."""
    if settings.officers is None:
        return None
    try:
        return import_roster(store, settings.officers, list(settings.counties))
    except (RosterError, OSError) as exc:
        raise ConfigError(f"{settings.path}: officers: {settings.officers}: {exc}") from None


def run_once(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    progress: Callable[[FeedReport], None] | None = None,
    publish_wait: float = 30.0,
) -> RunReport:
    """One pass of the whole flow; returns what each step did."""
    now = now or utcnow()
    officers = import_configured_roster(settings, store)
    requests = import_configured(settings, store)  # 群众点单: before planning, they steer it
    report = RunReport(ingest=run_ingest(settings, store, now=now, progress=progress))
    report.officers = officers
    report.requests = requests
    report.queued += queue_urgent(settings, store, now, by="run-once").queued
    for channel in settings.channels:
        if channel.enabled:
            report.queued += fill_now(settings, store, channel.name, now, by="run-once").queued
    ids = [q.delivery_id for q in report.queued]
    report.dispatch = dispatch_due(settings, store, now=now)
    report.sweep = sweep(settings, store, wait=publish_wait)
    report.estimated = report.dispatch.estimated + report.sweep.estimated  # written at delivery
    report.deliveries = store.list_deliveries(ids=ids) if ids else []
    report.track_urls = delivery_track_urls(store, settings.public.base_url, ids)
    return report
