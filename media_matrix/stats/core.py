"""Dissemination figures from the delivery log: dimensions, date ranges, rows and reports.

Rules held here (every exporter and the CLI show the same figures):

* A delivery belongs to the range and period of its ``scheduled_at`` in the config time zone,
  exactly as the delivery log lists it. Its reads measured on later days count in that period.
* Volume (传播量) per delivery = its measured WeChat reads where it has measured rows, else
  its estimated reach. A row's ``volume_source`` says which: ``measured`` (every delivery with
  figures is measured), ``estimated`` (none is) or ``mixed``.
* ``failed`` counts ``failed`` and ``dead`` deliveries; ``deliveries`` counts every status.
* Group, topic and campaign breakdowns overlap: a delivery counts toward each group and topic of
  its pack and each campaign it falls in, so their rows add up to more than the total. Packs
  without a group/topic, and deliveries outside every campaign, appear under an empty key
  (``null`` in JSON). The total (``Report.total``, JSON ``total``) never double counts.
* Coverage per county = configured ``reach`` of the county's channels that delivered at least
  once in the range / the county population from config. Audiences overlap and a reach is a
  channel's audience, not unique people: it is an estimate (估算) toward the 90% target.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from media_matrix.config import Settings, active_campaigns
from media_matrix.models import CITY, GROUPS, TOPICS
from media_matrix.models import REQUEST_STATUS_LABELS as ORDER_STATUS_LABELS
from media_matrix.stats.orders import ORDER_DIMENSIONS, ORDER_FIELDS, order_report
from media_matrix.stats.orders import breakdown as order_breakdown
from media_matrix.store.metrics import (
    FIGURES,
    SET_KEYS,
    STATUSES,
    AggregateSpec,
    CampaignSpec,
    Edges,
    MetricsStore,
)
from media_matrix.timeutil import to_iso, utcnow

DIMENSIONS = (
    "county",
    "group",
    "topic",
    "channel",
    "campaign",
    "day",
    "week",
    "month",
    "officer",
    *ORDER_DIMENSIONS,  # 群众点单: order-level rows (stats/orders.py), each used on its own
)
TIME_DIMENSIONS = ("day", "week", "month")
FIELDS = (
    "deliveries",
    "delivered",
    "failed",
    "estimated_reach",
    "measured_reads",
    "measured_shares",
    "volume",
    "measured_clicks",
    "unique_visitors",
    "volume_source",
)
DIM_LABELS = {
    "county": "区县",
    "group": "重点人群",
    "topic": "主题",
    "channel": "渠道",
    "campaign": "活动",
    "day": "日期",
    "week": "周",
    "month": "月份",
    "officer": "科普信息员",
    "request_topic": "点单主题",
    "request_status": "点单状态",
}
FIELD_LABELS = {
    "deliveries": "投放数",
    "delivered": "已送达",
    "failed": "失败",
    "estimated_reach": "估算触达",
    "measured_reads": "实测阅读",
    "measured_shares": "实测分享",
    "volume": "传播量",
    "measured_clicks": "实测点击",
    "unique_visitors": "独立访客",
    "volume_source": "数据来源",
}
SOURCE_LABELS = {"measured": "实测", "estimated": "估算", "mixed": "混合(实测+估算)"}
EMPTY_LABELS = {
    "county": "（未配置区县）",
    "group": "（未标注人群）",
    "topic": "（未标注主题）",
    "campaign": "（非活动期）",
    "channel": "（无）",
    "request_topic": "（未识别主题）",
}
NOTES = (
    "传播量：有实测数据（微信公众号阅读人数）的投放取实测值，否则取估算触达；“数据来源”标明实测、估算或混合。",
    "按投放计划时间（配置时区）归入日期区间和日/周/月；投放后各日的实测阅读计入投放所在期间。",
    "重点人群、主题、活动分组会重叠：一条内容计入其每个人群、主题和所在活动，分组合计大于总计；总计不重复计算。",
    "覆盖率为估算：区县内当期有送达的渠道的受众规模之和 ÷ 区县人口，渠道受众可能重叠。",
    "估算触达：渠道配置的受众规模；户外屏为播放窗口内的播放次数 × 每次路过人数。",
    "实测点击是单独的指标，不计入传播量：每条投放的跟踪链接（含二维码扫码）被真人打开的次数；"
    "爬虫、链接预览和 HEAD 请求只记录不计数。",
    "独立访客：同一访客（当日随机密钥下的地址与浏览器摘要，不保存地址）在同一链接上每天只计一次；"
    "各链接、各日相加。",
    "信息员传播排行按信息员专属链接的独立访客排序，按点击发生的日期计入区间；"
    "专属链接不属于任何投放，不计入上方投放的点击合计。",
    "点单统计按点单提交时间归入区间；一条点单有多个主题或人群时分别计入；答复用时为提交到"
    "答复内容在本县送达的时间。",
)

COMBINED_LIMIT = 100_000  # combinations a report holds in memory; beyond, they are streamed
_FIGURE_INDEX = {name: i for i, name in enumerate(FIGURES)}
_STATUS_SLICE = slice(0, len(STATUSES))
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class StatsUsageError(ValueError):
    """A bad dimension or date given by the user (the CLI exits 2 with this message)."""


# -- parsing ------------------------------------------------------------------------------------


def parse_dims(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'county,group,month' -> ('county', 'group', 'month'); duplicates dropped, order kept."""
    if text is None:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    dims: list[str] = []
    for raw in parts:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in DIMENSIONS:
            raise StatsUsageError(
                f"unknown dimension {raw.strip()!r} in --by; expected a comma list of "
                f"{', '.join(DIMENSIONS)}"
            )
        if name not in dims:
            dims.append(name)
    if "officer" in dims and len(dims) > 1:
        raise StatsUsageError(
            "--by officer stands alone: officers' personal links belong to no delivery, so "
            "they cannot be crossed with delivery dimensions"
        )
    for name in ORDER_DIMENSIONS:
        if name in dims and len(dims) > 1:
            raise StatsUsageError(
                f"--by {name} stands alone: it counts residents' orders (群众点单), not "
                "deliveries, so it cannot be crossed with other dimensions"
            )
    return tuple(dims)


def parse_day(text: str | date | None, option: str = "--from") -> date | None:
    """'2024-05-01' -> date; a bad value raises StatsUsageError naming the option."""
    if text is None or isinstance(text, date):
        return text
    value = text.strip()
    try:
        if not _DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise StatsUsageError(
            f"bad date {text!r} for {option}: expected YYYY-MM-DD (e.g. 2024-05-01)"
        ) from None


MAX_SPAN_DAYS = 3660  # ten years: a report covers a season or a year, not a century


def check_range(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise StatsUsageError(f"--from {start} is after --to {end}")
    if start and end and (end - start).days >= MAX_SPAN_DAYS:
        raise StatsUsageError(
            f"--from {start} --to {end} spans {(end - start).days + 1} days; "
            f"at most {MAX_SPAN_DAYS} days (ten years) per report"
        )


# -- time zone plumbing -------------------------------------------------------------------------


def day_start_utc(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def offset_segments(tz: tzinfo, start: datetime, end: datetime) -> tuple[tuple[str | None, int]]:
    """UTC offset of ``tz`` in minutes over [start, end], as (until UTC ISO, minutes) segments
    (the last one open, None). One segment for zones without DST such as Asia/Shanghai."""

    def minutes(at: datetime) -> int:
        offset = at.astimezone(tz).utcoffset() or timedelta(0)
        return int(offset.total_seconds() // 60)

    start = start.astimezone(UTC) - timedelta(days=1)
    end = end.astimezone(UTC) + timedelta(days=1)
    segments: list[tuple[str | None, int]] = []
    current = minutes(start)
    at = start
    while at < end:
        step = min(at + timedelta(hours=6), end)
        if minutes(step) != current:
            lo, hi = at, step  # find the change to the minute
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if minutes(mid) == current:
                    lo = mid
                else:
                    hi = mid
            hi = hi.replace(second=0, microsecond=0)
            segments.append((to_iso(hi), current))
            current = minutes(step)
        at = step
    segments.append((None, current))
    return tuple(segments)  # type: ignore[return-value]


# -- the query ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A date range (local days, both inclusive; None: open) and the --by dimensions."""

    start: date | None = None
    end: date | None = None
    by: tuple[str, ...] = ()

    def bounds(self, tz: tzinfo) -> tuple[str | None, str | None]:
        lo = to_iso(day_start_utc(self.start, tz)) if self.start else None
        hi = to_iso(day_start_utc(self.end + timedelta(days=1), tz)) if self.end else None
        return lo, hi


def channel_counties(settings: Settings) -> dict[str, str]:
    return {c.name: c.county for c in settings.channels}


def _merged(days: list[date], label: Callable[[date], str], tz: tzinfo) -> Edges:
    """Buckets of consecutive local days sharing a label, as (UTC ISO start, label)."""
    edges: list[tuple[str, str | None]] = []
    for day in days:
        text = label(day)
        if not edges or edges[-1][1] != text:
            edges.append((to_iso(day_start_utc(day, tz)) or "", text))
    if days:  # instants after the last day fall out of every bucket
        edges.append((to_iso(day_start_utc(days[-1] + timedelta(days=1), tz)) or "", None))
    return tuple(edges)


def time_edges(
    settings: Settings, first: date, last: date, names: Iterable[str]
) -> dict[str, Edges]:
    """Local-day buckets over [first, last] for the time keys and campaign days wanted."""
    tz = settings.tz
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    campaigns = list(settings.campaigns)
    positions = {id(c): i for i, c in enumerate(campaigns)}

    def campaign_days(day: date) -> str:
        active = sorted(positions[id(c)] for c in active_campaigns(campaigns, day, tz))
        return "," + ",".join(str(i) for i in active) + "," if active else ","

    labels: dict[str, Callable[[date], str]] = {
        "day": date.isoformat,
        "week": lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]),
        "month": lambda d: d.isoformat()[:7],
        "campaign_days": campaign_days,
    }
    out = {}
    for name in names:
        out[name] = _merged(days, labels[name], tz)
    return out


def build_spec(
    settings: Settings,
    store: MetricsStore,
    query: Query,
    keys: Sequence[str],
    sets: Sequence[str],
    *,
    order: bool = True,
) -> AggregateSpec:
    tz = settings.tz
    lo, hi = query.bounds(tz)
    wanted = [k for k in TIME_DIMENSIONS if k in keys]
    if "campaign" in sets:
        wanted.append("campaign_days")
    edges: dict[str, Edges] = {}
    if wanted:
        first, last = query.start, query.end
        if first is None or last is None:
            stored_first, stored_last = store.scheduled_range()
            today = utcnow().astimezone(tz).date()
            if first is None:
                first = _local_day(stored_first, tz) or today
            if last is None:
                last = _local_day(stored_last, tz) or today
        edges = time_edges(settings, first, max(first, last), wanted)
    campaigns = tuple(
        CampaignSpec(c.start, c.end, tuple(c.topics), tuple(c.groups)) for c in settings.campaigns
    )
    return AggregateSpec(
        start=lo,
        end=hi,
        keys=tuple(keys),
        sets=tuple(sets),
        edges=edges,
        counties=channel_counties(settings),
        campaigns=campaigns,
        order=order,
    )


def _local_day(value: str | None, tz: tzinfo) -> date | None:
    return datetime.fromisoformat(value).astimezone(tz).date() if value else None


# -- rows ---------------------------------------------------------------------------------------


def new_acc() -> list[int]:
    return [0] * len(FIGURES)


def add(acc: list[int], figures: Sequence[int]) -> None:
    for i, value in enumerate(figures):
        acc[i] += value or 0


def finish(acc: Sequence[int]) -> dict[str, Any]:
    """Summed FIGURES -> the stable output fields."""
    n = dict(zip(FIGURES, acc, strict=True))
    measured, estimated = n["n_measured"], n["n_estimated"]
    if measured and estimated:
        source = "mixed"
    elif measured:
        source = "measured"
    else:
        source = "estimated"
    return {
        "deliveries": sum(acc[_STATUS_SLICE]),
        "delivered": n["n_delivered"],
        "failed": n["n_failed"] + n["n_dead"],
        "estimated_reach": n["estimated_reach"],
        "measured_reads": n["measured_reads"],
        "measured_shares": n["measured_shares"],
        "volume": n["volume"],
        "measured_clicks": n["measured_clicks"],
        "unique_visitors": n["unique_visitors"],
        "volume_source": source,
    }


def status_counts(acc: Sequence[int]) -> dict[str, int]:
    return {s: acc[_FIGURE_INDEX[f"n_{s}"]] for s in STATUSES}


def _sort_key(key: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((value is None, value or "") for value in key)


class _Decoder:
    """Turns one aggregate row's keys into output values: week labels, campaign names, sets."""

    def __init__(self, settings: Settings, keys: Sequence[str], sets: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.sets = tuple(sets)
        self.campaign_names = [c.name for c in settings.campaigns]
        self.nkeys = len(self.keys) + len(self.sets)

    def plain(self, row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.keys, row, strict=False))

    def set_values(self, row: Sequence[Any]) -> dict[str, list[str | None]]:
        out: dict[str, list[str | None]] = {}
        for i, name in enumerate(self.sets):
            raw = row[len(self.keys) + i]
            if not raw:
                out[name] = [None]
            elif name == "campaign":
                out[name] = [self.campaign_names[int(p)] for p in str(raw).split(",")]
            else:
                out[name] = sorted(set(str(raw).split(",")))
        return out

    def figures(self, row: Sequence[Any]) -> Sequence[int]:
        return row[self.nkeys :]


def officer_label(row: dict[str, Any]) -> str:
    return f"{row['name']}（{row['county']}{row['township']}）"


def officer_ranking(settings: Settings, store: MetricsStore, query: Query) -> list[dict[str, Any]]:
    """信息员传播排行: officers by unique visitors to their personal links in the range."""
    start = query.start.isoformat() if query.start else None
    end = query.end.isoformat() if query.end else None
    return [
        {
            "officer": officer_label(r),
            "county": r["county"],
            "township": r["township"],
            "links": r["links"],
            "measured_clicks": r["measured_clicks"],
            "unique_visitors": r["unique_visitors"],
            "disabled": bool(r["disabled"]),
        }
        for r in store.officer_ranking(start, end)
    ]


def officer_rows(settings: Settings, store: MetricsStore, query: Query) -> list[dict[str, Any]]:
    """``--by officer`` rows: the export's columns, only the click figures filled."""
    rows = []
    for r in officer_ranking(settings, store, query):
        figures = finish(new_acc())
        figures.update(
            measured_clicks=r["measured_clicks"],
            unique_visitors=r["unique_visitors"],
            volume_source="measured",
        )
        rows.append({"officer": r["officer"], **figures})
    return rows


def request_report(settings: Settings, store: Any, query: Query) -> dict[str, Any]:
    """点单统计 of the range (orders by their creation time)."""
    return order_report(store, *query.bounds(settings.tz))


def request_rows(settings: Settings, store: Any, query: Query) -> list[dict[str, Any]]:
    """``--by request_topic`` / ``--by request_status`` rows: ORDER_FIELDS per value."""
    since, until = query.bounds(settings.tz)
    return order_breakdown(store.request_figures_rows(since, until), query.by[0])


def row_fields(by: Sequence[str]) -> tuple[str, ...]:
    """The figure columns of export rows: order figures for an order dimension."""
    return ORDER_FIELDS if len(by) == 1 and by[0] in ORDER_DIMENSIONS else FIELDS


def _split_dims(by: Sequence[str]) -> tuple[list[str], list[str]]:
    return [d for d in by if d not in SET_KEYS], [d for d in by if d in SET_KEYS]


class RowStream:
    """One row per combination of the --by keys, streamed in key order; then ``total`` and
    ``by_status`` hold the range's figures (no double counting).

    The SQL groups by the plain keys and the set lists, ordered by the plain keys; rows that
    share the plain keys preceding the first set dimension are expanded and re-summed together,
    so memory holds one such block, never the whole result.
    """

    def __init__(
        self,
        settings: Settings,
        store: MetricsStore,
        query: Query,
        *,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.query = query
        self.on_step = on_step
        self.total_acc = new_acc()

    @property
    def total(self) -> dict[str, Any]:
        return finish(self.total_acc)

    @property
    def by_status(self) -> dict[str, int]:
        return status_counts(self.total_acc)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        by = self.query.by
        if by == ("officer",):
            yield from officer_rows(self.settings, self.store, self.query)
            return
        if len(by) == 1 and by[0] in ORDER_DIMENSIONS:
            yield from request_rows(self.settings, self.store, self.query)
            return
        plain, sets = _split_dims(by)
        spec = build_spec(self.settings, self.store, self.query, plain, sets)
        decoder = _Decoder(self.settings, plain, sets)
        first_set = next((i for i, d in enumerate(by) if d in SET_KEYS), len(by))
        prefix_len = len([d for d in by[:first_set] if d not in SET_KEYS])
        block: dict[tuple[Any, ...], list[int]] = {}
        block_prefix: tuple[Any, ...] | None = None
        for row in self.store.aggregate(spec, on_step=self.on_step):
            figures = decoder.figures(row)
            add(self.total_acc, figures)
            prefix = tuple(row[:prefix_len])
            if prefix != block_prefix and block:
                yield from self._flush(block)
                block = {}
            block_prefix = prefix
            values = decoder.plain(row)
            choices = decoder.set_values(row)
            for combo in itertools.product(*(choices[s] for s in sets)):
                values.update(zip(sets, combo, strict=True))
                key = tuple(values[d] for d in by)
                acc = block.get(key)
                if acc is None:
                    acc = block[key] = new_acc()
                add(acc, figures)
        if block:
            yield from self._flush(block)

    def _flush(self, block: dict[tuple[Any, ...], list[int]]) -> Iterator[dict[str, Any]]:
        for key in sorted(block, key=_sort_key):
            yield {**dict(zip(self.query.by, key, strict=True)), **finish(block[key])}


# -- reports (summary, XLSX, HTML) --------------------------------------------------------------


@dataclass
class Report:
    """Everything a report shows, for one range and --by list."""

    query: Query
    timezone: str
    generated_at: str
    total: dict[str, Any]
    by_status: dict[str, int]
    coverage: list[dict[str, Any]]
    breakdowns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    combined: list[dict[str, Any]] | None = None
    notes: tuple[str, ...] = NOTES
    officers: list[dict[str, Any]] = field(default_factory=list)  # 信息员传播排行
    channel_clicks: list[dict[str, Any]] = field(default_factory=list)  # per channel
    orders: dict[str, Any] = field(default_factory=dict)  # 点单统计 (stats/orders.py)
    # Too many combinations to hold: the combined rows are streamed again when written.
    stream: Callable[[], Iterable[dict[str, Any]]] | None = field(default=None, repr=False)

    @property
    def has_combined(self) -> bool:
        return len(self.query.by) > 1

    def combined_rows(self) -> Iterator[dict[str, Any]]:
        """Every --by combination in key order (held, or streamed from a second scan)."""
        if self.combined is not None:
            yield from self.combined
        elif self.stream is not None:
            yield from self.stream()

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.query.start.isoformat() if self.query.start else None,
            "to": self.query.end.isoformat() if self.query.end else None,
            "timezone": self.timezone,
            "by": list(self.query.by),
            "generated_at": self.generated_at,
            "total": self.total,
            "by_status": self.by_status,
            "coverage": self.coverage,
            "breakdowns": self.breakdowns,
            "rows": list(self.combined_rows()) if self.has_combined else None,
            "officers": self.officers,
            "channel_clicks": self.channel_clicks,
            "orders": self.orders,
            "notes": list(self.notes),
        }


def build_report(
    settings: Settings,
    store: MetricsStore,
    query: Query,
    *,
    on_step: Callable[[], None] | None = None,
) -> Report:
    """One aggregate scan grouped by channel, the plain --by keys and the set lists; every
    breakdown, the combined rows, the total and the coverage are summed from it in memory
    (the scan returns grouped rows, at most one per channel x key combination x tag set)."""
    requested = query.by
    officers = officer_ranking(settings, store, query)
    orders = request_report(settings, store, query)
    standalone = requested == ("officer",) or (
        len(requested) == 1 and requested[0] in ORDER_DIMENSIONS
    )
    if standalone:  # officer links and orders belong to no delivery: scan for totals only
        query = Query(query.start, query.end, ())
    by = query.by
    plain, sets = _split_dims(by)
    keys = ["channel", *[d for d in plain if d not in ("channel", "county")]]
    spec = build_spec(settings, store, query, keys, sets, order=False)
    decoder = _Decoder(settings, keys, sets)
    counties = channel_counties(settings)
    total = new_acc()
    per_channel: dict[str | None, list[int]] = {}
    per_dim: dict[str, dict[Any, list[int]]] = {d: {} for d in by}
    combined: dict[tuple[Any, ...], list[int]] = {}
    collect = len(by) > 1
    for row in store.aggregate(spec, on_step=on_step):
        figures = decoder.figures(row)
        add(total, figures)
        values = decoder.plain(row)
        values["county"] = counties.get(values["channel"])
        add(per_channel.setdefault(values["channel"], new_acc()), figures)
        choices = decoder.set_values(row)
        for dim in by:
            for value in choices[dim] if dim in SET_KEYS else [values[dim]]:
                add(per_dim[dim].setdefault(value, new_acc()), figures)
        if collect:
            for combo in itertools.product(*(choices[s] for s in sets)):
                values.update(zip(sets, combo, strict=True))
                key = tuple(values[d] for d in by)
                add(combined.setdefault(key, new_acc()), figures)
            if len(combined) > COMBINED_LIMIT:
                collect = False
                combined.clear()
    breakdowns = {}
    for dim in by:
        rows = [{dim: value, **finish(acc)} for value, acc in per_dim[dim].items()]
        if dim in TIME_DIMENSIONS:
            rows.sort(key=lambda r, d=dim: _sort_key((r[d],)))
        else:
            rows.sort(key=lambda r, d=dim: (-r["volume"], *_sort_key((r[d],))))
        breakdowns[dim] = rows
    combined_rows = None
    stream = None
    if collect:
        combined_rows = [
            {**dict(zip(by, key, strict=True)), **finish(combined[key])}
            for key in sorted(combined, key=_sort_key)
        ]
    elif len(by) > 1:

        def stream() -> Iterable[dict[str, Any]]:
            return RowStream(settings, store, query, on_step=on_step)

    if standalone:
        query = Query(query.start, query.end, requested)
        if requested == ("officer",):
            breakdowns["officer"] = officer_rows(settings, store, query)
        else:
            breakdowns[requested[0]] = request_rows(settings, store, query)
    return Report(
        query=query,
        officers=officers,
        orders=orders,
        channel_clicks=channel_clicks(per_channel),
        timezone=settings.timezone,
        generated_at=to_iso(utcnow()) or "",
        total=finish(total),
        by_status=status_counts(total),
        coverage=coverage(settings, per_channel),
        breakdowns=breakdowns,
        combined=combined_rows,
        stream=stream,
    )


def channel_clicks(per_channel: dict[str | None, list[int]]) -> list[dict[str, Any]]:
    """Clicks and unique visitors of each channel's tracked links, most clicked first."""
    rows = []
    for name, acc in per_channel.items():
        figures = finish(acc)
        rows.append(
            {
                "channel": name,
                "delivered": figures["delivered"],
                "measured_clicks": figures["measured_clicks"],
                "unique_visitors": figures["unique_visitors"],
            }
        )
    rows.sort(key=lambda r: (-r["measured_clicks"], -r["unique_visitors"], str(r["channel"])))
    return rows


def coverage(settings: Settings, per_channel: dict[str | None, list[int]]) -> list[dict[str, Any]]:
    """Per county: reach of its channels that delivered in the range / its population."""
    delivered_index = _FIGURE_INDEX["n_delivered"]
    active = {name for name, acc in per_channel.items() if acc[delivered_index] > 0}
    counties = list(settings.counties)
    for channel in settings.channels:
        if channel.county not in counties:
            counties.append(channel.county)
    total_population = sum(settings.counties.values())
    out = []
    for county in counties:
        channels = [c for c in settings.channels if c.county == county]
        live = [c for c in channels if c.name in active]
        reach = sum(c.reach for c in live)
        population = (
            settings.counties.get(county) or (total_population if county == CITY else 0) or None
        )
        out.append(
            {
                "county": county,
                "population": population,
                "channels": len(channels),
                "active_channels": len(live),
                "reach": reach,
                "coverage": round(reach / population, 4) if population else None,
                "estimate": True,
            }
        )
    return out


def summary(settings: Settings, store: MetricsStore, query: Query) -> Report:
    """Headline figures of a range: total, statuses, coverage and the breakdown by county."""
    return build_report(settings, store, Query(query.start, query.end, ("county",)))


# -- labels -------------------------------------------------------------------------------------


def value_label(dim: str, value: Any, settings: Settings | None = None) -> str:
    """How a key value reads in a report (Chinese labels for group and topic ids)."""
    if value is None:
        return EMPTY_LABELS.get(dim, "（无）")
    if dim == "group":
        return GROUPS.get(value, value)
    if dim == "request_status":
        return ORDER_STATUS_LABELS.get(value, value)
    if dim == "request_topic":
        dim = "topic"
    if dim == "topic":
        rule = settings.topics.get(value) if settings is not None else None
        if rule is not None and rule.label:
            return rule.label
        return TOPICS.get(value, value)
    return str(value)
