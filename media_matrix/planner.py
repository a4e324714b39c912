"""Slot arithmetic and assignment: pure decisions, the store applies them.

Nothing here touches the database, the network or the clock: ``now`` is always a parameter and
every input is a plain value. The store turns rows into the dataclasses below, calls a function,
and writes the returned :class:`Assignment` rows as deliveries.

Vocabulary
    slot        one fire time of one of a channel's cron expressions, in the config time zone.
                Several expressions firing at the same instant make one slot.
    booking     an existing delivery of a pack on a channel (any status). Cancelled bookings are
                ignored everywhere; every other status counts against quotas and blocks a second
                booking of the same pack on the same channel.
    per_slot    at most this many bookings whose ``slot_at`` is that slot.
    daily_quota at most this many bookings on a channel per calendar day *in the config time
                zone* (slot bookings, urgent ones and hand-timed ones alike). ``None``: no cap.
                A booking counts on the day it is actually sent (:attr:`Booking.day_at`: when
                it went out, else when its retry is due, else its slot), so the planner never
                books a day past what the dispatcher will let out on it.
    quiet hours "HH:MM-HH:MM" wall-clock window in the config time zone, start inclusive, end
                exclusive, may wrap midnight ("22:00-07:00"). No slot fires inside it; urgent
                packs ignore it.

Entry points (all times are timezone-aware; results are in UTC)
    :func:`plan`            fill the free capacity of the coming slots with approved packs.
    :func:`plan_urgent`     an urgent pack to every matching channel now (daily quota still holds).
    :func:`next_free_slot`  the first slot of one channel with room (``queue ID --channel``).
    :func:`slot_times`      a channel's slots in a window (``plan`` calendar, daemon, status).
    :func:`cron_trigger`    APScheduler trigger for one slot expression with *crontab* weekday
                            numbering; the daemon should build its slot jobs with it so the
                            daemon and the planner agree on when a slot is.

Cron weekdays: APScheduler 3 reads day-of-week numbers with 0 = Monday, standard crontab with
0 (or 7) = Sunday. Config cron strings are crontab strings, so :func:`cron_trigger` rewrites
the day-of-week field into names (``1-5`` -> ``mon,tue,wed,thu,fri``) before APScheduler sees it.
Known difference kept from APScheduler: when both day-of-month and day-of-week are restricted,
a slot fires when *both* match (crontab fires when either does).

Cost: bookings are indexed by channel, day and slot once; each channel's slot list is computed
once (and shared between channels with the same slots and quiet hours); packs are indexed by
(county, group) and walked lazily in rank order, so a channel stops reading packs once its
capacity is full. Planning is about linear in packs + channels x capacity. Handed a
:class:`Candidates` source instead of every pack (the store's, read a batch at a time), it
reads only as many packs per channel as the free slots take, and tells the source how many
that is (``want``) so the first read takes them all. Stored times are parsed once per distinct
text and a reason is worded once per kind of pack (groups, county, campaign topics, day).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from itertools import chain
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from media_matrix.config import Campaign, active_campaigns, parse_quiet_hours
from media_matrix.cron import cron_trigger, fire_times
from media_matrix.models import CITY, GROUPS, SENT_STATUSES
from media_matrix.timeutil import as_aware

PUBLIC = "public"  # audience group that matches every pack
CANCELLED = "cancelled"  # the only booking status that frees capacity and allows a re-booking

__all__ = [
    "CANCELLED",
    "CITY",
    "PUBLIC",
    "AlreadyBooked",
    "Assignment",
    "Booking",
    "Candidates",
    "PlanChannel",
    "PlanPack",
    "Skip",
    "active_campaigns",
    "answers_demand",
    "campaign_matches",
    "cron_trigger",
    "in_quiet_hours",
    "matches",
    "next_free_slot",
    "plan",
    "plan_urgent",
    "plan_urgent_detailed",
    "slot_times",
]


# --------------------------------------------------------------------------------------------
# Values


def _aware_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _parse_dt(value: datetime | str) -> datetime:
    """ISO text or datetime -> aware UTC; naive values are taken as UTC (the store's rule)."""
    if isinstance(value, str):
        return _parse_text(value)
    return as_aware(value).astimezone(UTC)  # type: ignore[union-attr]


@lru_cache(maxsize=4096)
def _parse_text(value: str) -> datetime:
    """:func:`_parse_dt` of stored text, parsed once per distinct text: the bookings of a
    week share a few dozen slot times (the result is immutable, the key is the text itself)."""
    return as_aware(value).astimezone(UTC)  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class PlanPack:
    """An approved pack as the planner sees it.

    ``groups``/``topics`` are ids from models.GROUPS/TOPICS; ``county`` is a county name or
    ``市级``; ``published_at`` may be ISO text or a datetime (naive means UTC) and is stored as
    aware UTC. A pack without groups counts as ``public``: only public channels take it.
    """

    id: int
    groups: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    county: str = CITY
    published_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    urgent: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "topics", tuple(self.topics))
        object.__setattr__(self, "published_at", _parse_dt(self.published_at))

    @classmethod
    def from_pack(cls, pack: Any) -> PlanPack:
        """From a models.Pack (published_at falls back to fetched_at)."""
        return cls(
            id=pack.id,
            groups=tuple(pack.groups),
            topics=tuple(pack.topics),
            county=pack.county or CITY,
            published_at=pack.published_at or pack.fetched_at,
            urgent=bool(pack.urgent),
        )


@dataclass(frozen=True, slots=True)
class PlanChannel:
    """A channel's scheduling facts. Build it with :meth:`from_config` from a config channel.

    ``quiet_hours`` may be given as "HH:MM-HH:MM" text or a (start, end) pair of times.
    """

    name: str
    county: str = CITY
    audience: tuple[str, ...] = (PUBLIC,)
    slots: tuple[str, ...] = ()
    per_slot: int = 1
    daily_quota: int | None = None
    quiet_hours: tuple[time, time] | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "audience", tuple(self.audience))
        object.__setattr__(self, "slots", tuple(self.slots))
        if isinstance(self.quiet_hours, str):
            object.__setattr__(self, "quiet_hours", parse_quiet_hours(self.quiet_hours))
        elif self.quiet_hours is not None:
            object.__setattr__(self, "quiet_hours", tuple(self.quiet_hours))

    @classmethod
    def from_config(cls, channel: Any) -> PlanChannel:
        """From a config channel (WechatChannel, WebhookChannel, ...)."""
        return cls(
            name=channel.name,
            county=channel.county,
            audience=tuple(channel.audience),
            slots=tuple(channel.slots),
            per_slot=channel.per_slot,
            daily_quota=channel.daily_quota,
            quiet_hours=channel.quiet_hours,
            enabled=channel.enabled,
        )


@dataclass(frozen=True, slots=True)
class Booking:
    """An existing delivery: pack ``pack_id`` on ``channel`` at ``slot_at`` (aware)."""

    pack_id: int
    channel: str
    slot_at: datetime
    status: str = "queued"
    sent_at: datetime | None = None  # when it went out (or its retry is due), if it differs

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_at", _parse_dt(self.slot_at))
        if self.sent_at is not None:
            object.__setattr__(self, "sent_at", _parse_dt(self.sent_at))

    @property
    def active(self) -> bool:
        return self.status != CANCELLED

    @property
    def day_at(self) -> datetime:
        """The moment whose local day this booking's quota is counted on."""
        return self.sent_at or self.slot_at

    @classmethod
    def from_delivery(cls, row: Mapping[str, Any]) -> Booking:
        """From a deliveries row: its ``slot_at``, else its ``scheduled_at``; ``sent_at`` from
        its claim time once it went out, or its retry time while it waits to be retried."""
        status = row.get("status") or "queued"
        sent = None
        if status in SENT_STATUSES:
            sent = row.get("claimed_at")
        elif status == "failed":
            sent = row.get("next_attempt_at")
        return cls(
            pack_id=row["pack_id"],
            channel=row["channel"],
            slot_at=row.get("slot_at") or row["scheduled_at"],
            status=status,
            sent_at=sent or None,
        )


@dataclass(frozen=True, slots=True)
class Assignment:
    """A decision: put pack ``pack_id`` on ``channel`` at ``slot_at`` (aware, UTC).

    ``reason`` is short Chinese text for editors, e.g. "受众匹配: 农民; 活动: 全国科普日".
    ``urgent`` is true for :func:`plan_urgent` results (``slot_at`` is then ``now``, not a slot).
    """

    pack_id: int
    channel: str
    slot_at: datetime
    reason: str
    urgent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack_id": self.pack_id,
            "channel": self.channel,
            "slot_at": self.slot_at.isoformat(timespec="seconds"),
            "reason": self.reason,
            "urgent": self.urgent,
        }


@dataclass(frozen=True, slots=True)
class Skip:
    """A matching channel an urgent pack could not go to, and why (Chinese, for editors)."""

    channel: str
    reason: str


class AlreadyBooked(ValueError):
    """The pack already has a live booking on the channel (re-sending is an explicit act)."""

    def __init__(self, booking: Booking) -> None:
        self.booking = booking
        super().__init__(
            f"pack {booking.pack_id} is already booked on {booking.channel} "
            f"at {booking.slot_at.isoformat(timespec='seconds')} ({booking.status})"
        )


class _ChannelLike(Protocol):
    name: str
    slots: Any
    quiet_hours: Any


def _channel(channel: PlanChannel | _ChannelLike) -> PlanChannel:
    return channel if isinstance(channel, PlanChannel) else PlanChannel.from_config(channel)


def _zone(tz: tzinfo | str) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


# --------------------------------------------------------------------------------------------
# Cron and quiet hours


def _in_window(moment: time, window: tuple[time, time]) -> bool:
    start, end = window
    if start < end:
        return start <= moment < end
    if start > end:  # wraps midnight: 22:00-07:00
        return moment >= start or moment < end
    return False  # empty window (config validation rejects it)


def in_quiet_hours(channel: PlanChannel | _ChannelLike, moment: datetime, tz: tzinfo | str) -> bool:
    """Is ``moment`` (aware) inside the channel's quiet hours, read on the wall clock of ``tz``?"""
    window = _channel(channel).quiet_hours
    if window is None:
        return False
    local = _aware_utc(moment, "moment").astimezone(_zone(tz))
    return _in_window(local.time().replace(tzinfo=None), window)


def _fire_times(expr: str, start: datetime, end: datetime, tz: tzinfo) -> Iterator[datetime]:
    return fire_times(cron_trigger(expr, tz), start.astimezone(tz), end, include_end=False)


def slot_times(
    channel: PlanChannel | _ChannelLike,
    start: datetime,
    end: datetime,
    tz: tzinfo | str,
) -> list[datetime]:
    """The channel's slots with ``start <= slot < end``, sorted, without duplicates.

    Cron expressions are read in ``tz``; the result is aware datetimes in ``tz`` (they compare
    and hash equal to their UTC twins). Fire times inside quiet hours are left out. Disabled
    channels still have slot times (``plan`` skips them, the calendar may show them).
    """
    chan = _channel(channel)
    zone = _zone(tz)
    start = _aware_utc(start, "start")
    end = _aware_utc(end, "end")
    times = {
        fire
        for expr in chan.slots
        for fire in _fire_times(expr, start, end, zone)
        if chan.quiet_hours is None
        or not _in_window(fire.time().replace(tzinfo=None), chan.quiet_hours)
    }
    return sorted(times)


def next_slots(
    channel: PlanChannel | _ChannelLike,
    now: datetime,
    count: int,
    tz: tzinfo | str,
    *,
    within: timedelta = timedelta(days=8),
) -> list[datetime]:
    """The channel's next ``count`` slots from ``now``, none beyond ``within``. Looks a day
    ahead first and widens only when that holds too few (the status page asks for three
    slots of every channel; working out eight days of each was most of its time)."""
    span = min(timedelta(days=1), within)
    while True:
        times = slot_times(channel, now, now + span, tz)
        if len(times) >= count or span >= within:
            return times[:count]
        span = min(span * 2, within)


# --------------------------------------------------------------------------------------------
# Campaigns and matching


def campaign_matches(pack: PlanPack, campaign: Campaign) -> bool:
    """A pack belongs to a campaign when it shares one of its topics (if it lists topics) and
    one of its groups (if it lists groups). A campaign listing neither matches no pack."""
    if not campaign.topics and not campaign.groups:
        return False
    if campaign.topics and not set(pack.topics) & set(campaign.topics):
        return False
    return not (campaign.groups and not set(pack.groups) & set(campaign.groups))


def _audience_fits(pack: PlanPack, channel: PlanChannel) -> bool:
    return PUBLIC in channel.audience or bool(set(pack.groups) & set(channel.audience))


def _county_fits(pack: PlanPack, channel: PlanChannel) -> bool:
    return pack.county == CITY or channel.county in (CITY, pack.county)


def matches(pack: PlanPack, channel: PlanChannel | _ChannelLike) -> bool:
    """May ``pack`` go to ``channel``?

    Audience: the channel takes every pack if its audience has ``public``; otherwise the pack
    must share one of the channel's groups (a pack tagged only ``public``, or untagged, goes
    only to public channels). County: a 市级 pack goes everywhere; a county pack goes to that
    county's channels and to 市级 channels. ``enabled`` is not looked at here.
    """
    chan = _channel(channel)
    return _audience_fits(pack, chan) and _county_fits(pack, chan)


def _reason(
    pack: PlanPack, channel: PlanChannel, campaigns: Sequence[Campaign], *, urgent: bool = False
) -> str:
    shared = [g for g in pack.groups if g in channel.audience and g != PUBLIC]
    labels = [GROUPS.get(g, g) for g in shared] or [GROUPS[PUBLIC]]
    parts = ["紧急: 立即发布"] if urgent else []
    parts.append("受众匹配: " + "、".join(labels))
    if pack.county != CITY:
        parts.append(f"地区: {pack.county}")
    in_campaigns = [c.name for c in campaigns if campaign_matches(pack, c)]
    if in_campaigns:
        parts.append("活动: " + "、".join(in_campaigns))
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Demand:
    """What residents of one county ordered (群众点单) and have not yet been answered: the packs
    editors linked to their orders and the topics they asked about. Packs answering it go out
    first on that county's channels (issue 13)."""

    pack_ids: frozenset[int] = frozenset()
    topics: frozenset[str] = frozenset()


def answers_demand(pack: PlanPack, demand: Demand) -> bool:
    return pack.id in demand.pack_ids or not demand.topics.isdisjoint(pack.topics)


# --------------------------------------------------------------------------------------------
# Booking index


@dataclass
class _Load:
    """Live bookings of one channel: per local day, per slot instant, and which packs."""

    per_day: Counter[date] = field(default_factory=Counter)
    per_slot: Counter[datetime] = field(default_factory=Counter)
    packs: dict[int, Booking] = field(default_factory=dict)


def _index_bookings(bookings: Iterable[Booking], tz: tzinfo) -> dict[str, _Load]:
    loads: dict[str, _Load] = defaultdict(_Load)
    days: dict[datetime, date] = {}  # local day per instant: bookings share their slot times
    for booking in bookings:
        if not booking.active:
            continue
        load = loads[booking.channel]
        moment = booking.day_at
        day = days.get(moment)
        if day is None:
            day = days[moment] = moment.astimezone(tz).date()
        load.per_day[day] += 1
        load.per_slot[booking.slot_at.astimezone(UTC)] += 1
        load.packs.setdefault(booking.pack_id, booking)
    return loads


def _room(channel: PlanChannel, load: _Load, slot: datetime, day: date) -> int:
    room = channel.per_slot - load.per_slot[slot]
    if channel.daily_quota is not None:
        room = min(room, channel.daily_quota - load.per_day[day])
    return max(room, 0)


def _untaken(stream: Iterator[PlanPack], taken: set[int]) -> PlanPack | None:
    """The next pack of ``stream`` not in ``taken``; None when the stream runs out."""
    for pack in stream:
        if pack.id not in taken:
            return pack
    return None


def _free_room(channel: PlanChannel, load: _Load, slots: Sequence[tuple[datetime, date]]) -> int:
    """Room left in ``slots`` (each with its local day), per slot and per day: no more packs
    than this can go to the channel in them."""
    per_day: Counter[date] = Counter()
    for slot, day in slots:
        per_day[day] += _room(channel, load, slot, day)
    if channel.daily_quota is None:
        return sum(per_day.values())
    quota = channel.daily_quota
    return sum(min(n, max(quota - load.per_day[day], 0)) for day, n in per_day.items())


# --------------------------------------------------------------------------------------------
# Pack index (lazy, rank-ordered candidates per channel)


class _GroupIndex:
    """Ranks of some packs by county and by (county, group), each list in rank order."""

    def __init__(self, packs: Sequence[PlanPack], ranks: Iterable[int]) -> None:
        self.by_county: dict[str, list[int]] = defaultdict(list)
        self.by_county_group: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.size = 0
        for rank in ranks:
            pack = packs[rank]
            self.size += 1
            self.by_county[pack.county].append(rank)
            for group in set(pack.groups):
                self.by_county_group[(pack.county, group)].append(rank)

    def stream(self, channel: PlanChannel) -> Iterator[int]:
        """Ranks of the packs matching ``channel``, best first (a rank may repeat)."""
        counties = list(self.by_county) if channel.county == CITY else [channel.county, CITY]
        if PUBLIC in channel.audience:
            lists = [self.by_county[c] for c in counties if c in self.by_county]
        else:
            keys = [(c, g) for c in counties for g in set(channel.audience)]
            lists = [self.by_county_group[k] for k in keys if k in self.by_county_group]
        return heapq.merge(*lists)


class _PackIndex:
    """Packs ranked by freshness, indexed by (county, group) so that a channel reads only the
    packs that can match it, in rank order, and only as many as it has room for. Packs of the
    active campaigns get an index of their own per campaign set, read before the rest."""

    def __init__(self, packs: Sequence[PlanPack]) -> None:
        # rank 0 is the freshest; ties by id for a stable, reproducible plan
        self.packs = sorted(packs, key=lambda p: (-p.published_at.timestamp(), p.id))
        self.all = _GroupIndex(self.packs, range(len(self.packs)))
        self._hot: dict[frozenset[str], tuple[set[int], _GroupIndex]] = {}
        self._wanted: dict[tuple[Demand, bool], _GroupIndex] = {}

    def _demand_index(self, demand: Demand, linked: bool) -> _GroupIndex:
        """The packs linked to a county's orders (``linked``), or those sharing an ordered
        topic and not linked."""
        key = (demand, linked)
        if key not in self._wanted:
            ranks = [
                rank
                for rank, pack in enumerate(self.packs)
                if (pack.id in demand.pack_ids) == linked
                and (linked or not demand.topics.isdisjoint(pack.topics))
            ]
            self._wanted[key] = _GroupIndex(self.packs, ranks)
        return self._wanted[key]

    def _campaign_index(self, campaigns: Sequence[Campaign]) -> tuple[set[int], _GroupIndex]:
        key = frozenset(c.name for c in campaigns)
        if key not in self._hot:
            ranks = [
                rank
                for rank, pack in enumerate(self.packs)
                if any(campaign_matches(pack, c) for c in campaigns)
            ]
            self._hot[key] = (set(ranks), _GroupIndex(self.packs, ranks))
        return self._hot[key]

    def candidates(
        self,
        channel: PlanChannel,
        campaigns: Sequence[Campaign],
        demand: Demand | None = None,
        want: int | None = None,
    ) -> Iterator[PlanPack]:
        """Matching packs: those answering ``demand`` first (linked, then topical), then
        campaign packs, then the rest, each freshest first (``want``: unused, all in memory).

        May repeat a pack (one in several of the channel's groups); callers skip used ones.
        """
        if demand is not None and (demand.pack_ids or demand.topics):
            first = (
                self.packs[rank]
                for linked in (True, False)
                for rank in self._demand_index(demand, linked).stream(channel)
            )
            return chain(first, self.candidates(channel, campaigns))
        if not campaigns:
            ranks = self.all.stream(channel)
        else:
            hot, hot_index = self._campaign_index(campaigns)
            if not hot:
                ranks = self.all.stream(channel)
            else:
                rest = (r for r in self.all.stream(channel) if r not in hot)
                ranks = chain(hot_index.stream(channel), rest)
        return (self.packs[r] for r in ranks)


@runtime_checkable
class Candidates(Protocol):
    """Where :func:`plan` reads packs from when it is not handed them all: a caller (the
    store, lazily) yields, per channel, the approved non-urgent packs that match it
    (:func:`matches`) in rank order: those of ``campaigns`` (:func:`campaign_matches` any)
    first, then the rest, each freshest ``published_at`` first, ties by id. It may leave out
    packs already booked on the channel, and may repeat a pack."""

    def candidates(
        self,
        channel: PlanChannel,
        campaigns: Sequence[Campaign],
        demand: Demand | None = None,
        want: int | None = None,
    ) -> Iterator[PlanPack]:
        """... and, given the channel county's ``demand``, the packs answering it before all
        others: those linked to an order first, then those sharing an ordered topic. ``want``:
        how many packs the planner may take from the stream at most (the room left in the
        channel's slots), a hint for how much to read at once; the stream may be read on."""
        ...


# --------------------------------------------------------------------------------------------
# Planning


def plan(
    packs: Sequence[PlanPack] | Candidates,
    channels: Sequence[PlanChannel | _ChannelLike],
    bookings: Iterable[Booking],
    *,
    now: datetime,
    days: float,
    tz: tzinfo | str,
    campaigns: Sequence[Campaign] = (),
    demand: Mapping[str, Demand] | None = None,
) -> list[Assignment]:
    """Fill the free capacity of every enabled channel's slots in ``[now, now + days)``.

    ``packs`` are the approved packs (the caller filters by status); urgent ones are skipped
    here (use :func:`plan_urgent`). Instead of every pack, a :class:`Candidates` source may be
    given: it is read only as far as the free slots take, so ``bookings`` then need only be
    those counting on the planned days and slots (the source leaves out the packs booked on a
    channel at other times). For each channel, slots are filled in time order, each with
    the best-ranked matching packs not yet booked on that channel: packs whose topics match a
    campaign active on the slot's day (in ``tz``) first, then fresher ``published_at`` first.
    ``per_slot`` and ``daily_quota`` hold, counting existing bookings; a pack gets at most one
    live booking per channel. Returns assignments sorted by (slot_at, channel), slot_at in UTC;
    within one slot, best-ranked first.

    ``demand`` (county -> :class:`Demand`): on a channel of that county, packs answering the
    county's open orders come before every other pack (campaign packs included).

    A slot at exactly ``now`` is included, so a daemon slot job should pass the slot's scheduled
    fire time as ``now`` (not the wall clock, which is a little late).
    """
    now = _aware_utc(now, "now")
    zone = _zone(tz)
    end = now + timedelta(days=days)
    index = (
        packs if isinstance(packs, Candidates) else _PackIndex([p for p in packs if not p.urgent])
    )
    loads = _index_bookings(bookings, zone)
    campaigns = list(campaigns)

    # the day's campaigns and their stream key; kept alive: reasons key on id()
    campaigns_by_day: dict[date, tuple[list[Campaign], frozenset[str]]] = {}
    reasons: dict[tuple[Any, ...], str] = {}
    slot_cache: dict[tuple[tuple[str, ...], Any], list[tuple[datetime, date]]] = {}
    out: list[Assignment] = []

    for raw in channels:
        channel = _channel(raw)
        if not channel.enabled or not channel.slots:
            continue
        key = (channel.slots, channel.quiet_hours)
        if key not in slot_cache:  # each slot with its local day, shared by alike channels
            slot_cache[key] = [
                (s.astimezone(UTC), s.astimezone(zone).date())
                for s in slot_times(channel, now, end, zone)
            ]
        load = loads.get(channel.name) or _Load()
        taken = set(load.packs)
        streams: dict[frozenset[str], Iterator[PlanPack]] = {}
        wanted = (demand or {}).get(channel.county) if channel.county != CITY else None
        exhausted = False
        free = _free_room(channel, load, slot_cache[key])

        for slot, day in slot_cache[key]:
            room = _room(channel, load, slot, day)
            if room <= 0:
                continue
            if day not in campaigns_by_day:
                active = active_campaigns(campaigns, day, zone)
                campaigns_by_day[day] = (active, frozenset(c.name for c in active))
            active, stream_key = campaigns_by_day[day]
            if stream_key not in streams:
                streams[stream_key] = index.candidates(channel, active, wanted, want=free)
            stream = streams[stream_key]
            while room > 0:
                pack = _untaken(stream, taken)
                if pack is None:  # every matching pack is on this channel already
                    exhausted = True
                    break
                taken.add(pack.id)
                load.per_slot[slot] += 1
                load.per_day[day] += 1
                room -= 1
                # the reason depends on these alone; packs of one kind share it
                topics = pack.topics if active else ()  # topics only count for campaigns
                why_key = (pack.groups, topics, pack.county, channel.audience, id(active))
                why = reasons.get(why_key)
                if why is None:
                    why = reasons[why_key] = _reason(pack, channel, active)
                if wanted is not None and answers_demand(pack, wanted):
                    why += "; 群众点单: 答复本县居民点单"
                out.append(Assignment(pack.id, channel.name, slot, why))
            if exhausted:
                break
    out.sort(key=lambda a: (a.slot_at, a.channel))
    return out


def plan_urgent_detailed(
    pack: PlanPack,
    channels: Sequence[PlanChannel | _ChannelLike],
    bookings: Iterable[Booking],
    *,
    now: datetime,
    tz: tzinfo | str,
) -> tuple[list[Assignment], list[Skip]]:
    """:func:`plan_urgent`, plus the matching enabled channels left out and why."""
    now = _aware_utc(now, "now")
    zone = _zone(tz)
    loads = _index_bookings(bookings, zone)
    today = now.astimezone(zone).date()
    out: list[Assignment] = []
    skipped: list[Skip] = []
    for raw in channels:
        channel = _channel(raw)
        if not channel.enabled or not matches(pack, channel):
            continue
        load = loads.get(channel.name) or _Load()
        booked = load.packs.get(pack.id)
        if booked is not None:
            when = booked.slot_at.astimezone(zone).strftime("%m-%d %H:%M")
            skipped.append(Skip(channel.name, f"已排期: {when} ({booked.status})"))
            continue
        if channel.daily_quota is not None and load.per_day[today] >= channel.daily_quota:
            skipped.append(Skip(channel.name, f"当日配额已满: {channel.daily_quota}"))
            continue
        reason = _reason(pack, channel, (), urgent=True)
        out.append(Assignment(pack.id, channel.name, now, reason, urgent=True))
    return out, skipped


def plan_urgent(
    pack: PlanPack,
    channels: Sequence[PlanChannel | _ChannelLike],
    bookings: Iterable[Booking],
    *,
    now: datetime,
    tz: tzinfo | str,
) -> list[Assignment]:
    """An urgent pack to every enabled matching channel at ``now`` (UTC), one assignment each.

    Slots, ``per_slot`` and quiet hours are skipped; ``daily_quota`` (for ``now``'s day in
    ``tz``, counting live bookings) still holds, and a channel that already has a live booking
    of the pack is left out. :func:`plan_urgent_detailed` also says which channels were left out.
    """
    return plan_urgent_detailed(pack, channels, bookings, now=now, tz=tz)[0]


def next_free_slot(
    pack: PlanPack,
    channel: PlanChannel | _ChannelLike,
    bookings: Iterable[Booking],
    *,
    now: datetime,
    tz: tzinfo | str,
    horizon_days: int = 30,
    allow_rebook: bool = False,
) -> datetime | None:
    """The first slot of ``channel`` at or after ``now`` with room (per_slot and daily_quota,
    counting live bookings), as aware UTC; ``None`` if there is none within ``horizon_days``.

    For an editor's explicit ``queue ID --channel NAME``: audience, county and ``enabled`` are
    NOT checked (use :func:`matches` to warn). Raises :class:`AlreadyBooked` if the pack has a
    live booking on the channel, unless ``allow_rebook`` (an explicit re-send).
    """
    now = _aware_utc(now, "now")
    zone = _zone(tz)
    chan = _channel(channel)
    load = (
        _index_bookings((b for b in bookings if b.channel == chan.name), zone).get(chan.name)
        or _Load()
    )
    if not allow_rebook and pack.id in load.packs:
        raise AlreadyBooked(load.packs[pack.id])
    for slot in slot_times(chan, now, now + timedelta(days=horizon_days), zone):
        slot = slot.astimezone(UTC)
        if _room(chan, load, slot, slot.astimezone(zone).date()) > 0:
            return slot
    return None
