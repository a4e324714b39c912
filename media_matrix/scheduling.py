"""Queueing services between the planner (pure decisions) and the store. No printing.

Rules
-----
* Only approved packs are queued (:class:`NotApproved`). A pack goes to a channel once; a second
  time only as an explicit re-send (``resend=True``, a new edition) — otherwise
  :class:`AlreadyQueued` names the existing delivery.
* ``queue_pack`` without a time takes the channel's next slot with room (per-slot and daily
  quota); with a time, it is queued at that time (quiet hours and a full daily quota only warn:
  the editor chose the time).
* Audience and county, for an editor's explicit ``queue``: a county mismatch (a 清丰县 pack on a
  范县 channel) is refused with :class:`ChannelMismatch` unless ``force``; an audience mismatch
  (the pack's groups are not the channel's) is allowed with a warning, the editor knows the
  channel. A disabled channel is refused unless ``force``.
* ``queue_auto`` lets the planner fill every enabled channel's coming slots with approved packs,
  after queueing urgent approved packs to every matching channel at once. Planning and queueing
  happen in one write transaction, so two planners (the daemon and an editor) cannot overfill
  a slot between them.
* ``unqueue`` cancels a delivery only while it is queued and not claimed by a sender.

Times given by people (``--at``, ``--now``) may carry an offset; without one they are read in
the config time zone (see :func:`parse_when`). Everything stored is UTC.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from itertools import chain
from typing import Any

from media_matrix import planner, review
from media_matrix.config import ConfigError, Settings
from media_matrix.models import (
    DELIVERY_STATUS_LABELS,
    GROUPS,
    PACK_STATUS_LABELS,
    PackStatus,
    pack_subject,
)
from media_matrix.planner import Assignment, Booking, PlanChannel, PlanPack
from media_matrix.store import NotFound, Store, StoreError
from media_matrix.store.deliveries import AlreadyQueued
from media_matrix.timeutil import from_iso, local_text, parse_local, to_iso, utcnow

HORIZON_DAYS = 30  # how far `queue ID --channel` looks for a free slot


class SchedulingError(StoreError):
    """A queueing request that cannot be done as asked (exit 1 in the CLI)."""


class NotApproved(SchedulingError):
    pass


class ChannelMismatch(SchedulingError):
    pass


class NoFreeSlot(SchedulingError):
    pass


class NotQueued(SchedulingError):
    """The delivery has started (or ended) and can no longer be taken back."""


class UnknownChannel(ValueError):
    """No channel of that name in config (a usage error: exit 2 in the CLI)."""


class PastTime(ValueError):
    """A delivery asked for a time already gone (a usage error: exit 2 in the CLI)."""


PAST_GRACE = timedelta(seconds=60)  # the minute being typed still counts as "now"


def check_not_past(at: datetime, now: datetime, tz: tzinfo) -> None:
    """Refuse a requested send time in the past: it would go out at once and be counted on
    a day long gone. (The word ``now`` is how a person asks for the present.)"""
    if at < now - PAST_GRACE:
        raise PastTime(
            f"时间 {_local(at, tz)} 已过去 (现在 {_local(now, tz)}); "
            "请给出将来的时间, 或用 --at now 立即发送 (a time in the past is refused)"
        )


@dataclass
class QueuedDelivery:
    delivery_id: int
    pack_id: int
    channel: str
    scheduled_at: str
    slot_at: str | None
    urgent: bool = False
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AutoReport:
    """What :func:`queue_auto` queued, and what it could not."""

    now: str
    days: float
    queued: list[QueuedDelivery] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # urgent skips and races
    dry_run: bool = False  # planned only: nothing was written (the delivery ids are void)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "days": self.days,
            "dry_run": self.dry_run,
            "queued": [q.to_dict() for q in self.queued],
            "skipped": self.skipped,
        }


# -- helpers ------------------------------------------------------------------------------------


def parse_when(text: str, tz: tzinfo) -> datetime:
    """A person's time (see ``timeutil``: naive means the config time zone), in UTC."""
    return parse_local(text, tz)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def config_channel(settings: Settings, name: str) -> Any:
    try:
        return settings.channel(name)
    except ConfigError:
        names = ", ".join(c.name for c in settings.channels) or "(无)"
        raise UnknownChannel(f"未知渠道 {name!r}; 已配置的渠道: {names}") from None


def _bookings(rows: Iterable[dict[str, Any]]) -> list[Booking]:
    return [Booking.from_delivery(r) for r in rows]


def _counting_rows(
    store: Store,
    chans: Sequence[Any],
    now: datetime,
    end: datetime,
    tz: tzinfo,
    pack_ids: Iterable[int] = (),
) -> list[dict[str, Any]]:
    """The live bookings the planner needs for ``[now, end)`` on ``chans``: those in its slots
    (per-slot room), on a channel with a daily quota those counting on its local days, and
    every live booking of ``pack_ids`` (so a pack planned from memory is never booked twice
    on a channel)."""
    first = datetime.combine(now.astimezone(tz).date(), time.min, tz)
    last = datetime.combine(end.astimezone(tz).date() + timedelta(days=1), time.min, tz)
    quota = [c.name for c in chans if c.daily_quota is not None]
    rows = store.bookings_counting_in(quota, to_iso(first), to_iso(last))  # type: ignore[arg-type]
    rows += store.bookings_counting_in(
        [c.name for c in chans if c.daily_quota is None],
        to_iso(now),  # type: ignore[arg-type]
        to_iso(end),  # type: ignore[arg-type]
        slots_only=True,
    )
    names = [c.name for c in chans]
    wanted = sorted(set(pack_ids))
    if wanted and names:
        seen = {r["id"] for r in rows}
        more = store.list_bookings(channels=names, pack_ids=wanted)
        rows += [r for r in more if r["id"] not in seen]
    return rows


class _StoreCandidates:
    """planner.Candidates read from the store a batch at a time: each channel's stream reads
    only as many approved packs as its free slots take, the packs already on it left out."""

    FIRST, MOST = 16, 512  # batch sizes: the first read, then doubling up to this

    def __init__(self, store: Store) -> None:
        self.store = store

    def candidates(
        self,
        channel: PlanChannel,
        campaigns: Sequence[Any],
        demand: planner.Demand | None = None,
        want: int | None = None,
    ) -> Iterator[PlanPack]:
        # the first read takes what the free slots may take (one query for most channels)
        first = min(max(want, 1), self.MOST) if want else self.FIRST
        tags = [(tuple(c.topics), tuple(c.groups)) for c in campaigns]
        if not any(topics or groups for topics, groups in tags):
            regular = self._read(channel, tags, None, first=first)
        else:
            regular = chain(
                self._read(channel, tags, True, first=first),
                self._read(channel, tags, False, first=first),
            )
        if demand is None:
            return regular
        # 群众点单 first: the packs editors linked to the county's orders, then those sharing an
        # ordered topic (read as a campaign of those topics); repeats are skipped by the planner
        linked = self._read(channel, [], None, ids=sorted(demand.pack_ids), first=first)
        asked = [(tuple(sorted(demand.topics)), ())]
        topical = self._read(channel, asked, True, first=first) if demand.topics else iter(())
        return chain(linked if demand.pack_ids else iter(()), topical, regular)

    def _read(
        self,
        channel: PlanChannel,
        tags: list[Any],
        in_campaign: bool | None,
        ids: Sequence[int] | None = None,
        first: int = FIRST,
    ) -> Iterator[PlanPack]:
        counties = None if channel.county == planner.CITY else [channel.county, planner.CITY]
        groups = None if planner.PUBLIC in channel.audience else list(channel.audience)
        after, size = None, first
        while True:
            rows = self.store.plan_candidates(
                channel.name,
                counties=counties,
                groups=groups,
                campaigns=tags,
                in_campaign=in_campaign,
                after=after,
                limit=size,
                ids=ids,
            )
            for row in rows:
                yield PlanPack(
                    id=row["id"],
                    groups=tuple(row["groups"]),
                    topics=tuple(row["topics"]),
                    county=row["county"] or planner.CITY,
                    published_at=row["rank_at"],
                )
            if len(rows) < size:
                return
            after, size = (rows[-1]["rank_at"], rows[-1]["id"]), min(size * 2, self.MOST)


def _local(at: str | datetime | None, tz: tzinfo) -> str:
    return local_text(at, tz)


def _existing(store: Store, pack_id: int, channel: str) -> dict[str, Any] | None:
    rows = store.list_bookings(channels=[channel], pack_ids=[pack_id])
    return rows[-1] if rows else None


def _fits(pack: PlanPack, channel: PlanChannel) -> tuple[bool, bool]:
    """(audience fits, county fits), each judged by the planner's own ``matches``."""
    audience = planner.matches(dataclasses.replace(pack, county=planner.CITY), channel)
    county = planner.matches(pack, dataclasses.replace(channel, audience=(planner.PUBLIC,)))
    return audience, county


# -- queue one pack -----------------------------------------------------------------------------


def queue_pack(
    settings: Settings,
    store: Store,
    pack_id: int,
    channel: str,
    at: datetime | None = None,
    *,
    by: str = "editor",
    resend: bool = False,
    force: bool = False,
    now: datetime | None = None,
    note: str | None = None,
) -> QueuedDelivery:
    """Queue an approved pack on a channel at its next free slot, or at ``at``."""
    chan = config_channel(settings, channel)
    now = _aware(now)
    tz = settings.tz
    with store.transaction():
        pack = store.get_pack(int(pack_id))
        if pack.status != PackStatus.APPROVED:
            label = PACK_STATUS_LABELS.get(pack.status, pack.status)
            raise NotApproved(
                f"内容包 {pack.id} 状态为 {label} ({pack.status}), 只有已通过的内容包可以排期 "
                f"(only approved packs can be queued); 请先 packs approve {pack.id}"
            )
        plan_pack = PlanPack.from_pack(pack)
        plan_chan = PlanChannel.from_config(chan)
        warnings: list[str] = []
        if not chan.enabled:
            if not force:
                raise SchedulingError(f"渠道 {chan.name} 已停用 (disabled); 如确需排期请加 --force")
            warnings.append(f"渠道 {chan.name} 已停用, 投递可能不会发出")
        audience_ok, county_ok = _fits(plan_pack, plan_chan)
        if not county_ok:
            message = (
                f"内容包 {pack.id} 属于 {pack.county}, 渠道 {chan.name} 面向 {chan.county} "
                "(county mismatch)"
            )
            if not force:
                raise ChannelMismatch(message + "; 如确需排期请加 --force")
            warnings.append(message)
        if not audience_ok:
            groups = "、".join(GROUPS.get(g, g) for g in plan_pack.groups) or GROUPS["public"]
            audience = "、".join(GROUPS.get(g, g) for g in chan.audience)
            warnings.append(f"受众不匹配: 内容包面向 {groups}, 渠道受众为 {audience}")

        existing = _existing(store, pack.id, chan.name)
        if existing is not None and not resend:
            raise AlreadyQueued(
                f"内容包 {pack.id} 已排入渠道 {chan.name}: 投递 {existing['id']} "
                f"({DELIVERY_STATUS_LABELS.get(existing['status'], existing['status'])}, "
                f"{_local(existing['slot_at'] or existing['scheduled_at'], tz)}); "
                "同一内容包不会重复发往同一渠道, 如需重发请加 --resend (already queued)"
            )
        bookings = _bookings(store.list_bookings(channels=[chan.name]))
        if at is not None:
            when = _aware(at)
            check_not_past(when, now, tz)
            slot_at = None
            if planner.in_quiet_hours(plan_chan, when, tz):
                warnings.append(f"{_local(when, tz)} 在渠道免打扰时段 {chan.quiet_hours} 内")
            if chan.daily_quota is not None:
                day = when.astimezone(tz).date()
                used = sum(1 for b in bookings if b.day_at.astimezone(tz).date() == day)
                if used >= chan.daily_quota:
                    warnings.append(f"当日配额 {chan.daily_quota} 已满 (已有 {used} 条)")
        else:
            slot = planner.next_free_slot(
                plan_pack,
                plan_chan,
                bookings,
                now=now,
                tz=tz,
                horizon_days=HORIZON_DAYS,
                allow_rebook=resend,
            )
            if slot is None:
                raise NoFreeSlot(
                    f"渠道 {chan.name} 未来 {HORIZON_DAYS} 天内没有空余时段 "
                    "(no free slot); 可用 --at 指定时间"
                )
            when = slot
            slot_at = to_iso(slot)
        delivery_id = store.queue_delivery(
            pack.id,
            chan.name,
            scheduled_at=to_iso(when),  # type: ignore[arg-type]
            slot_at=slot_at,
            queued_by=by,
            resend=resend,
        )
        said = f"渠道 {chan.name}; 时间 {_local(when, tz)}; 投递 {delivery_id}"
        if warnings:
            said += "; 提示: " + "; ".join(warnings)
        if note:
            said += f"; {note}"
        store.audit(by, "resend" if resend else "queue", pack_subject(pack.id), said)
    return QueuedDelivery(
        delivery_id=delivery_id,
        pack_id=pack.id,
        channel=chan.name,
        scheduled_at=to_iso(when),  # type: ignore[arg-type]
        slot_at=slot_at,
        reason="编辑指定" + (" (重发)" if resend else ""),
        warnings=warnings,
    )


# -- let the planner fill slots -----------------------------------------------------------------


def _enabled_channels(settings: Settings, names: Sequence[str] | None) -> list[Any]:
    if names is not None:
        chans = [config_channel(settings, n) for n in names]
    else:
        chans = list(settings.channels)
    return [c for c in chans if c.enabled]


def order_demand(store: Store) -> dict[str, planner.Demand]:
    """群众点单 still waiting, per county: linked packs and topics asked (issue 13)."""
    packs: dict[str, set[int]] = defaultdict(set)
    topics: dict[str, set[str]] = defaultdict(set)
    for row in store.request_demand():
        if row["pack_id"] is not None:
            packs[row["county"]].add(row["pack_id"])
        else:  # a linked order is answered by its pack; its topics ask for nothing more
            topics[row["county"]].update(row["topics"])
    return {
        county: planner.Demand(frozenset(packs[county]), frozenset(topics[county]))
        for county in {*packs, *topics}
    }


def _fill(
    settings: Settings,
    store: Store,
    *,
    audit: bool,
    dry_run: bool = False,
    **options: Any,
) -> AutoReport:
    """:func:`_fill_in_transaction`; a dry run plans in the same transaction and rolls it back,
    audited never."""
    try:
        return _fill_in_transaction(
            settings, store, audit=audit and not dry_run, dry_run=dry_run, **options
        )
    except _DryRun as done:
        return done.report


class _DryRun(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the planning transaction of a dry run: it rolls everything back."""

    def __init__(self, report: AutoReport) -> None:
        super().__init__("dry run")
        self.report = report


def _fill_in_transaction(
    settings: Settings,
    store: Store,
    *,
    now: datetime,
    days: float,
    channels: Sequence[str] | None,
    slots: bool,
    urgent: bool,
    by: str,
    audit: bool,
    pack_ids: Sequence[int] | None = None,
    slot_exprs: tuple[str, ...] | None = None,
    dry_run: bool = False,
    note: str | None = None,
) -> AutoReport:
    tz = settings.tz
    report = AutoReport(now=to_iso(now), days=days)  # type: ignore[arg-type]
    chans = _enabled_channels(settings, channels)
    if not chans:
        return report
    plan_chans = [PlanChannel.from_config(c) for c in chans]
    if slot_exprs is not None:  # a manual batch: its own slot instead of the channel's
        plan_chans = [
            dataclasses.replace(c, slots=slot_exprs, quiet_hours=None) for c in plan_chans
        ]
    end = now + timedelta(days=days)
    # Only what the window needs is read: the urgent packs (or the ones asked for) in full,
    # the rest from the store as the planner takes them (_StoreCandidates), and the bookings
    # counting on the window's days. The packs assigned are re-checked before writing, so a
    # pack rejected meanwhile is never queued.
    with store.transaction():
        if pack_ids is not None:
            listed = store.list_packs(status=PackStatus.APPROVED, ids=list(pack_ids))
        elif urgent:
            listed = store.list_packs(
                status=PackStatus.APPROVED, ids=store.urgent_approved_pack_ids()
            )
        else:
            listed = []
        packs = [PlanPack.from_pack(p) for p in listed]
        rows = _counting_rows(store, plan_chans, now, end, tz, (p.id for p in packs))
        bookings = _bookings(rows)
        assignments: list[Assignment] = []
        if urgent:
            for pack in (p for p in packs if p.urgent):
                got, skips = planner.plan_urgent_detailed(
                    pack, plan_chans, bookings, now=now, tz=tz
                )
                assignments += got
                bookings += [Booking(a.pack_id, a.channel, a.slot_at) for a in got]
                report.skipped += [
                    {"pack_id": pack.id, "channel": s.channel, "reason": s.reason} for s in skips
                ]
        if slots:
            assignments += planner.plan(
                packs if pack_ids is not None else _StoreCandidates(store),
                plan_chans,
                bookings,
                now=now,
                days=days,
                tz=tz,
                campaigns=settings.campaigns,
                demand=order_demand(store),
            )
        if assignments:
            wanted = sorted({a.pack_id for a in assignments})
            still = {p.id for p in store.list_packs(status=PackStatus.APPROVED, ids=wanted)}
            for a in [a for a in assignments if a.pack_id not in still]:
                report.skipped.append(
                    {"pack_id": a.pack_id, "channel": a.channel, "reason": "已不是已通过状态"}
                )
            assignments = [a for a in assignments if a.pack_id in still]
        for a in assignments:
            at = to_iso(a.slot_at)
            try:
                delivery_id = store.queue_delivery(
                    a.pack_id,
                    a.channel,
                    scheduled_at=at,  # type: ignore[arg-type]
                    slot_at=None if a.urgent else at,
                    urgent=a.urgent,
                    queued_by=by,
                )
            except AlreadyQueued as exc:  # another writer got there first
                report.skipped.append(
                    {"pack_id": a.pack_id, "channel": a.channel, "reason": str(exc)}
                )
                continue
            report.queued.append(
                QueuedDelivery(
                    delivery_id,
                    a.pack_id,
                    a.channel,
                    at,
                    None if a.urgent else at,
                    a.urgent,
                    a.reason,
                )
            )
        if audit and report.queued:
            per_channel: dict[str, int] = defaultdict(int)
            for q in report.queued:
                per_channel[q.channel] += 1
            spread = ", ".join(f"{c} {n}" for c, n in sorted(per_channel.items()))
            store.audit(
                by,
                "queue_auto",
                "plan",
                f"自动排期 {len(report.queued)} 条 ({spread}); 起点 {_local(now, tz)}; {days:g} 天"
                + (f"; {note}" if note else ""),
            )
        if dry_run:
            report.dry_run = True
            raise _DryRun(report)
    return report


def queue_auto(
    settings: Settings,
    store: Store,
    days: float = 7,
    now: datetime | None = None,
    *,
    channels: Sequence[str] | None = None,
    include_urgent: bool = True,
    by: str = "planner",
    audit: bool = True,
    dry_run: bool = False,
    note: str | None = None,
) -> AutoReport:
    """Queue urgent approved packs to every matching channel now, then let the planner fill the
    slots of ``[now, now + days)`` on every enabled channel (or only ``channels``).

    ``dry_run``: plan and report, write nothing (the only way a moved clock may plan)."""
    if days <= 0:
        raise ValueError("days must be positive")
    return _fill(
        settings,
        store,
        now=_aware(now),
        days=days,
        channels=channels,
        slots=True,
        urgent=include_urgent,
        by=by,
        audit=audit,
        dry_run=dry_run,
        note=note,
    )


def fill_slot(
    settings: Settings, store: Store, channel: str, slot_at: datetime, *, by: str = "daemon"
) -> AutoReport:
    """Fill one slot of one channel: the planner as of the slot's own time, for that minute."""
    return _fill(
        settings,
        store,
        now=_aware(slot_at),
        days=1 / 1440,
        channels=[channel],
        slots=True,
        urgent=False,
        by=by,
        audit=False,
    )


def fill_now(
    settings: Settings, store: Store, channel: str, now: datetime, *, by: str = "run-once"
) -> AutoReport:
    """A manual batch ("send the next batch now", ``run --once``): the planner fills one slot
    at ``now``'s minute, so the batch is booked at the time it is sent and ``per_slot`` and the
    ``daily_quota`` of today (not of the channel's next slot's day) hold for it. Like an
    urgent pack, an operator's "now" is not held back by the slots' days or quiet hours."""
    at = _aware(now).astimezone(settings.tz).replace(second=0, microsecond=0)
    return _fill(
        settings,
        store,
        now=at.astimezone(UTC),
        days=1 / 1440,
        channels=[channel],
        slots=True,
        urgent=False,
        by=by,
        audit=False,
        slot_exprs=(f"{at.minute} {at.hour} {at.day} {at.month} *",),
    )


def queue_urgent(
    settings: Settings,
    store: Store,
    now: datetime | None = None,
    *,
    pack_ids: Sequence[int] | None = None,
    by: str = "daemon",
) -> AutoReport:
    """Queue urgent approved packs (all, or only ``pack_ids``) to every matching enabled
    channel that lacks them, now; ``skipped`` says which channels were left out and why."""
    if pack_ids is None:
        pack_ids = store.urgent_approved_pack_ids()
        if not pack_ids:
            return AutoReport(now=to_iso(_aware(now)), days=1 / 1440)  # type: ignore[arg-type]
    return _fill(
        settings,
        store,
        now=_aware(now),
        days=1 / 1440,
        channels=None,
        slots=False,
        urgent=True,
        by=by,
        audit=False,
        pack_ids=pack_ids,
    )


@dataclass
class UrgentResult:
    pack_id: int
    urgent: bool
    changed: bool
    status: str
    queued: AutoReport | None  # None when nothing was queued (unflagged, or not approved yet)


def flag_urgent(
    settings: Settings,
    store: Store,
    pack_id: int,
    on: bool,
    *,
    by: str,
    note: str | None = None,
    now: datetime | None = None,
) -> UrgentResult:
    """An editor flags a pack urgent (or clears the flag); an approved urgent pack is queued to
    every matching channel at once. Raises review.ReviewError for a rejected/archived pack."""
    changed = review.set_urgent(store, pack_id, on, by, note)
    status = store.get_pack(pack_id).status
    queued = None
    if on and status == PackStatus.APPROVED:
        queued = queue_urgent(settings, store, now, pack_ids=[pack_id], by=by)
    return UrgentResult(pack_id, on, changed, status, queued)


# -- take one back ------------------------------------------------------------------------------


def unqueue(
    store: Store, delivery_id: int, by: str, note: str | None = None, *, tz: tzinfo = UTC
) -> dict[str, Any]:
    """Cancel a delivery that has not started; returns it as it was before. ``tz``: the zone
    the audit note's time is written in (the config's)."""
    delivery = store.get_delivery(int(delivery_id))
    if not store.cancel_queued(delivery["id"]):
        now = store.get_delivery(delivery["id"])
        label = DELIVERY_STATUS_LABELS.get(now["status"], now["status"])
        if now["status"] == "cancelled":
            why = "已撤回过"
        elif now["status"] == "queued":
            why = "刚被发送程序领取, 已开始"
        else:
            why = f"状态为 {label} ({now['status']}), 已开始或已结束"
        raise NotQueued(
            f"投递 {delivery['id']} {why}, 无法撤回 (only a queued delivery that has not "
            "started can be unqueued)"
        )
    text = (
        f"撤回投递 {delivery['id']}: 渠道 {delivery['channel']}, "
        f"原定 {_local(delivery['slot_at'] or delivery['scheduled_at'], tz)}"
    )
    store.audit(
        by, "unqueue", pack_subject(delivery["pack_id"]), f"{text}; {note}" if note else text
    )
    return delivery


# -- views --------------------------------------------------------------------------------------


@dataclass
class _Proposed:
    """What the planner would add now, with the bookings it counted and the packs' titles."""

    assignments: list[Assignment]
    titles: dict[int, str]
    booking_rows: list[dict[str, Any]]


def _propose(
    settings: Settings, store: Store, chans: Sequence[Any], now: datetime, days: float
) -> _Proposed:
    """Urgent packs to every matching channel, then the planner over the slots of
    ``[now, now + days)``: what ``queue --auto`` would add (nothing is written)."""
    tz = settings.tz
    urgent = store.list_packs(status=PackStatus.APPROVED, ids=store.urgent_approved_pack_ids())
    booking_rows = _counting_rows(
        store, chans, now, now + timedelta(days=days), tz, (p.id for p in urgent)
    )
    plan_chans = [PlanChannel.from_config(c) for c in chans]
    proposals: list[Assignment] = []
    pending = _bookings(booking_rows)
    for pack in (PlanPack.from_pack(p) for p in urgent):
        got = planner.plan_urgent(pack, plan_chans, pending, now=now, tz=tz)
        proposals += got
        pending += [Booking(a.pack_id, a.channel, a.slot_at) for a in got]
    proposals += planner.plan(
        _StoreCandidates(store),
        plan_chans,
        pending,
        now=now,
        days=days,
        tz=tz,
        campaigns=settings.campaigns,
        demand=order_demand(store),
    )
    titles = {p.id: p.title for p in urgent}
    titles.update(store.pack_titles(sorted({a.pack_id for a in proposals} - set(titles))))
    return _Proposed(proposals, titles, booking_rows)


def plan_proposals(
    settings: Settings,
    store: Store,
    days: float = 3,
    channels: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Only the proposals of :func:`plan_view` (on ``channels``, default all), in time and
    channel order: for the console, which shows them apart from the calendar."""
    now = _aware(now)
    tz = settings.tz
    chans = [config_channel(settings, n) for n in channels] if channels is not None else None
    found = _propose(settings, store, chans if chans is not None else settings.channels, now, days)
    local: dict[datetime, str] = {}  # a week proposes a thousand rows over a few dozen slots
    rows = []
    for a in found.assignments:
        at = local.get(a.slot_at)
        if at is None:
            at = local[a.slot_at] = a.slot_at.astimezone(tz).isoformat(timespec="seconds")
        rows.append(
            {
                "kind": "proposal",
                "delivery_id": None,
                "pack_id": a.pack_id,
                "channel": a.channel,
                "title": found.titles.get(a.pack_id, ""),
                "status": "proposal",
                "urgent": a.urgent,
                "reason": a.reason,
                "at": at,
            }
        )
    rows.sort(key=lambda r: (r["at"], r["channel"]))
    return rows


def plan_view(
    settings: Settings,
    store: Store,
    days: float = 3,
    channel: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The coming slots per channel and what fills them: existing bookings and, marked as
    proposals, what ``queue --auto`` would add now. Nothing is written."""
    now = _aware(now)
    tz = settings.tz
    end = now + timedelta(days=days)
    chans = [config_channel(settings, channel)] if channel else list(settings.channels)
    plan_chans = [PlanChannel.from_config(c) for c in chans]
    found = _propose(settings, store, chans, now, days)
    proposals, titles, booking_rows = found.assignments, found.titles, found.booking_rows
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in booking_rows:
        by_channel[row["channel"]].append(row)
    out_channels = []
    slot_cache: dict[tuple[Any, ...], list[datetime]] = {}
    for chan, plan_chan in zip(chans, plan_chans, strict=True):
        key = (plan_chan.slots, plan_chan.quiet_hours)
        if key not in slot_cache:  # channels often share their slots
            slot_cache[key] = planner.slot_times(plan_chan, now, end, tz)
        slot_list = slot_cache[key]
        slots: dict[datetime, dict[str, Any]] = {
            s.astimezone(UTC): {
                "at": s.astimezone(tz).isoformat(timespec="seconds"),
                "capacity": chan.per_slot,
                "items": [],
            }
            for s in slot_list
        }
        other: list[dict[str, Any]] = []
        for row in by_channel[chan.name]:
            at = from_iso(row["slot_at"] or row["scheduled_at"])
            if at is None or not (now <= at < end):
                continue
            item = {
                "kind": "booked",
                "delivery_id": row["id"],
                "pack_id": row["pack_id"],
                "title": row.get("pack_title") or titles.get(row["pack_id"], ""),
                "status": row["status"],
                "urgent": bool(row["urgent"]),
                "at": at.astimezone(tz).isoformat(timespec="seconds"),
            }
            (slots[at]["items"] if at in slots else other).append(item)
        for a in proposals:
            if a.channel != chan.name:
                continue
            item = {
                "kind": "proposal",
                "delivery_id": None,
                "pack_id": a.pack_id,
                "title": titles.get(a.pack_id, ""),
                "status": "proposal",
                "urgent": a.urgent,
                "reason": a.reason,
                "at": a.slot_at.astimezone(tz).isoformat(timespec="seconds"),
            }
            (slots[a.slot_at]["items"] if a.slot_at in slots and not a.urgent else other).append(
                item
            )
        for slot in slots.values():
            slot["free"] = max(slot["capacity"] - len(slot["items"]), 0)
        out_channels.append(
            {
                "name": chan.name,
                "type": chan.type,
                "county": chan.county,
                "audience": list(chan.audience),
                "enabled": chan.enabled,
                "per_slot": chan.per_slot,
                "daily_quota": chan.daily_quota,
                "quiet_hours": chan.quiet_hours,
                "slots": list(slots.values()),
                "other": sorted(other, key=lambda i: i["at"]),
            }
        )
    return {
        "now": now.astimezone(tz).isoformat(timespec="seconds"),
        "days": days,
        "timezone": settings.timezone,
        "channels": out_channels,
    }


__all__ = [
    "AlreadyQueued",
    "AutoReport",
    "ChannelMismatch",
    "NoFreeSlot",
    "NotApproved",
    "NotFound",
    "NotQueued",
    "QueuedDelivery",
    "SchedulingError",
    "UnknownChannel",
    "fill_now",
    "fill_slot",
    "parse_when",
    "plan_proposals",
    "plan_view",
    "queue_auto",
    "queue_pack",
    "queue_urgent",
    "unqueue",
]
