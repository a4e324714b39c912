"""The flow composed: the sending round, the main job once, and the statistics pull.

:func:`run_round` is the one composition of a sending round -- sweep expired leases and poll
publishes, queue urgent packs, fill slots now, send what is due, poll what was submitted --
used by ``run --once``, ``dispatch [--once]`` and the daemon's sweep job, each switching on
the steps it owns.

:func:`run_once` is the main job: ingest (with tagging and the feeds' auto-approve rule), then a
round with urgent packs and every enabled channel filled now (a manual run is an operator saying
"send a batch now": it is booked at the time it is sent, so today's quotas hold for it), polling
asynchronous publishes until final. Estimated reach is recorded by dispatch as each delivery
becomes delivered; measured WeChat reads come from :func:`pull_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from media_matrix.config import ConfigError, Settings, WechatChannel
from media_matrix.dispatch import DispatchReport, SweepReport, dispatch_due, sweep
from media_matrix.ingest import FeedReport, IngestReport, run_ingest
from media_matrix.officers import RosterError, import_roster
from media_matrix.orders import import_configured
from media_matrix.scheduling import QueuedDelivery, fill_now, queue_urgent
from media_matrix.stats.collect import DEFAULT_DAYS, TOTAL_DETAIL
from media_matrix.stats.collect import pull as pull_measured
from media_matrix.store import Store
from media_matrix.timeutil import utcnow
from media_matrix.tracking import delivery_track_urls

if TYPE_CHECKING:
    import requests


@dataclass
class RoundReport:
    """One sending round: what the sweep found, what was queued, sent and polled."""

    sweep: SweepReport
    dispatch: DispatchReport
    poll: SweepReport | None = None  # None: the round did not poll after sending
    urgent: list[QueuedDelivery] = field(default_factory=list)
    filled: list[QueuedDelivery] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # delivery status -> how many
    unknown_ids: list[int] = field(default_factory=list)  # deliveries needing an operator

    @property
    def queued(self) -> list[QueuedDelivery]:
        return self.urgent + self.filled

    @property
    def paused(self) -> dict[str, str]:
        polled = self.poll.paused if self.poll else {}
        return {**self.sweep.paused, **self.dispatch.paused, **polled}

    @property
    def estimated(self) -> int:
        return (
            self.sweep.estimated
            + self.dispatch.estimated
            + (self.poll.estimated if self.poll else 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep.to_dict(),
            "dispatch": self.dispatch.to_dict(),
            "poll": self.poll.to_dict() if self.poll else None,
            "queued": [q.to_dict() for q in self.queued],
            "counts": self.counts,
            "unknown_ids": self.unknown_ids,
        }


def run_round(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    urgent: bool = False,
    fill: bool = False,
    poll: bool = True,
    wait: float = 0.0,
    by: str = "round",
) -> RoundReport:
    """Sweep (expired leases, submitted publishes) -> queue urgent packs (``urgent``) -> book a
    batch now on each enabled channel (``fill``) -> send what is due -> poll what was submitted
    (``poll``, for up to ``wait`` seconds). ``channels`` limits every step but the urgent one
    (an urgent pack goes to every matching channel)."""
    names = list(channels) if channels is not None else None
    swept = sweep(settings, store, channels=names)
    urgent_queued = queue_urgent(settings, store, now, by=by).queued if urgent else []
    filled: list[QueuedDelivery] = []
    for channel in settings.channels if fill else ():
        if channel.enabled and (names is None or channel.name in names):
            filled += fill_now(settings, store, channel.name, now or utcnow(), by=by).queued
    sent = dispatch_due(settings, store, now=now, channels=names)
    polled = sweep(settings, store, channels=names, wait=wait) if poll else None
    unknown = [
        d["id"]
        for d in store.list_deliveries(status="unknown")
        if names is None or d["channel"] in names
    ]
    return RoundReport(
        swept, sent, polled, urgent_queued, filled, store.status_counts(names), unknown
    )


def pull_stats(
    settings: Settings,
    store: Store,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
    *,
    endpoint: str = TOTAL_DETAIL,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """Measured WeChat figures (:func:`media_matrix.stats.collect.pull`), each account's API
    opened through its WeChat adapter (tokens, refresh and error typing are the adapter's)."""
    from media_matrix.adapters.wechat_mp import WechatMpAdapter

    def client(channel: WechatChannel) -> WechatMpAdapter:
        return WechatMpAdapter(channel, session=session)

    return pull_measured(settings, store, days, now, endpoint=endpoint, client=client)


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
    store.catch_up_search()  # as the daemon does after ingest (see store/search.py)
    report.officers = officers
    report.requests = requests
    sent = run_round(
        settings, store, now=now, urgent=True, fill=True, wait=publish_wait, by="run-once"
    )
    report.queued = sent.queued
    ids = [q.delivery_id for q in report.queued]
    report.dispatch = sent.dispatch
    report.sweep = sent.poll
    report.estimated = sent.estimated  # written at delivery
    report.deliveries = store.list_deliveries(ids=ids) if ids else []
    report.track_urls = delivery_track_urls(store, settings.public.base_url, ids)
    return report
