"""Metrics family: per-delivery, per-day figures (measured or estimated) and the statistics SQL.

The ``metrics`` table itself is created with the deliveries (see ``deliveries.py``); this module
owns its writes and every aggregation query of ``media_matrix.stats``.

Aggregation is one ``GROUP BY`` over the deliveries of a date range, streamed from the cursor
(nothing is loaded row by row into Python). A delivery's figures are reduced per delivery (its
measured reads/shares, its estimated impressions, whether it has any measured row) as they are
written, into ``delivery_figures`` (kept by triggers on ``metrics``), so a delivery is counted
once however many metric rows it has, and a report reads one row per delivery. Each pack's
groups and topics are read as lists from ``pack_tag_sets`` (kept by triggers on ``pack_tags``).
Group, topic and campaign are *set* dimensions: a pack may carry several groups or topics, and a
delivery may fall into several campaigns. They are returned as a sorted comma list per row
(``"farmers,youth"``) instead of being joined in, so each delivery still lands in exactly one
result row; the stats layer expands the lists into one entry per group/topic/campaign. Sum the
result rows for a total that never double counts; expand them for per-group/topic/campaign
figures (which overlap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from media_matrix.store.base import Migration, StoreBase

# A delivery's metric rows reduced to its figures: measured reads and shares, how many rows are
# measured and estimated, estimated impressions (NULL sums where it has no such rows).
_FIGURES_SELECT = """
    SELECT delivery_id,
           sum(CASE WHEN source = 'measured' THEN reads END),
           sum(CASE WHEN source = 'measured' THEN shares END),
           sum(source = 'measured'),
           sum(source = 'estimated'),
           sum(CASE WHEN source = 'estimated' THEN impressions END)
    FROM metrics {where} GROUP BY delivery_id
"""


def _delivery_figures_triggers() -> str:
    """Triggers that rewrite a delivery's ``delivery_figures`` row whenever one of its metric
    rows is added, changed or deleted (DELETE then INSERT: a trigger's OR REPLACE would give
    way to the conflict clause of the upsert that fired it)."""
    script = ""
    for name, event, row in (
        ("ins", "INSERT", "NEW"),
        ("upd", "UPDATE", "NEW"),
        ("del", "DELETE", "OLD"),
    ):
        delivery = f"{row}.delivery_id"
        select = _FIGURES_SELECT.format(where=f"WHERE delivery_id = {delivery}")
        script += (
            f";\nCREATE TRIGGER delivery_figures_{name} AFTER {event} ON metrics BEGIN"
            f" DELETE FROM delivery_figures WHERE delivery_id = {delivery};"
            f" INSERT INTO delivery_figures (delivery_id, mr, ms, nm, ne, ei) {select}; END"
        )
    return script


MIGRATIONS: list[Migration] = [
    (
        "metrics_001_indexes",
        """
        CREATE INDEX IF NOT EXISTS deliveries_stats ON deliveries
            (scheduled_at, channel, pack_id, status);
        CREATE INDEX IF NOT EXISTS metrics_rollup ON metrics
            (delivery_id, source, reads, shares, impressions)
        """,
    ),
    (
        # Each delivery's metric rows reduced once, kept by triggers on every metrics write:
        # a report reads one row per delivery instead of grouping its metric rows again.
        "metrics_002_delivery_figures",
        """
        CREATE TABLE delivery_figures (
            delivery_id INTEGER PRIMARY KEY,
            mr INTEGER, ms INTEGER, nm INTEGER, ne INTEGER, ei INTEGER
        );
        INSERT INTO delivery_figures (delivery_id, mr, ms, nm, ne, ei)
        """
        + _FIGURES_SELECT.format(where="")
        + _delivery_figures_triggers(),
    ),
]

STATUSES = ("queued", "sending", "submitted", "delivered", "failed", "dead", "unknown", "cancelled")
# Figures returned after the keys of every aggregate row, in this order.
FIGURES = (
    *(f"n_{s}" for s in STATUSES),
    "estimated_reach",
    "measured_reads",
    "measured_shares",
    "volume",
    "n_measured",
    "n_estimated",
    "measured_clicks",
    "unique_visitors",
)
SET_KEYS = ("group", "topic", "campaign")

# A metric row to upsert: (delivery_id, day, reads, shares, impressions, source, fetched_at).
MetricRow = tuple[int, str, int, int, int, str, str]


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign as the SQL sees it: MM-DD bounds (inclusive, may wrap) and pack criteria."""

    start: str
    end: str
    topics: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


# A bucketing of instants: (UTC ISO start, label) in ascending order; an instant gets the
# label of the last start at or before it (see bucket_sql).
Edges = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class AggregateSpec:
    """What one aggregation reads and how it groups.

    ``start``/``end`` bound ``deliveries.scheduled_at`` (UTC ISO, end exclusive; None: open).
    ``keys`` are plain grouping keys (county, channel, day, week, month) and ``sets`` set
    dimensions (SET_KEYS), each returned in the given order. ``edges`` holds, for each time key
    used (day, week, month) and for ``campaign_days`` (labels like ',0,2,': the campaigns
    running that local day), the local-time buckets as UTC instants, so no per-row time-zone
    arithmetic is needed.
    ``counties`` maps channel name -> county; ``campaigns`` are indexed by position and come
    back as comma lists of those positions.
    """

    start: str | None
    end: str | None
    keys: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    edges: dict[str, Edges] = field(default_factory=dict)
    counties: dict[str, str] = field(default_factory=dict)
    campaigns: tuple[CampaignSpec, ...] = ()
    order: bool = True


def bucket_sql(column: str, edges: Edges, params: list[Any]) -> str:
    """A balanced CASE tree giving ``column`` the label of its bucket (NULL before the first);
    a few string comparisons per row instead of parsing dates."""
    if not edges:
        return "NULL"

    def build(lo: int, hi: int) -> str:
        if hi - lo == 1:
            if edges[lo][1] is None:
                return "NULL"
            params.append(edges[lo][1])
            return "?"
        mid = (lo + hi) // 2
        params.append(edges[mid][0])
        cond = f"CASE WHEN {column} < ? THEN "
        left = build(lo, mid)
        right = build(mid, hi)
        return f"{cond}{left} ELSE {right} END"

    params.append(edges[0][0])
    return f"CASE WHEN {column} < ? THEN NULL ELSE {build(0, len(edges))} END"


def local_day_sql(column: str, offsets: Sequence[tuple[str | None, int]]) -> str:
    """SQL for the local calendar day (YYYY-MM-DD) of a stored UTC ISO instant."""
    if len(offsets) == 1:
        return f"date({column}, '{offsets[0][1]:+d} minutes')"
    whens = " ".join(
        f"WHEN {column} < '{until}' THEN '{minutes:+d} minutes'" for until, minutes in offsets[:-1]
    )
    return f"date({column}, CASE {whens} ELSE '{offsets[-1][1]:+d} minutes' END)"


class MetricsStore(StoreBase):
    # -- writes ---------------------------------------------------------------------------------

    def upsert_metrics(self, rows: Iterable[MetricRow]) -> int:
        """Insert or replace metric rows keyed by (delivery, day, source); returns the count."""
        batch = list(rows)
        if not batch:
            return 0
        with self.transaction() as conn:
            conn.executemany(
                """
                INSERT INTO metrics (delivery_id, day, reads, shares, impressions, source,
                                     fetched_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (delivery_id, day, source) DO UPDATE SET
                    reads = excluded.reads, shares = excluded.shares,
                    impressions = excluded.impressions, fetched_at = excluded.fetched_at
                """,
                batch,
            )
        return len(batch)

    def estimate_flat(
        self,
        channel: str,
        impressions: int,
        *,
        offsets: Sequence[tuple[str | None, int]],
        fetched_at: str,
        since: str | None = None,
    ) -> int:
        """One ``estimated`` row per delivered delivery of ``channel`` (day = its local delivery
        day) holding a fixed impression count; rows already holding it are left alone.

        With ``since``: only deliveries delivered at or after it, plus any delivered delivery
        that has no estimate yet. Returns the number of rows written.
        """
        when = "COALESCE(d.delivered_at, d.scheduled_at)"
        day = local_day_sql(when, offsets)
        scope = ["d.channel = ?", "d.status = 'delivered'"]
        params: list[Any] = [channel]
        if since:
            scope.append(
                f"({when} >= ? OR NOT EXISTS (SELECT 1 FROM metrics e"
                " WHERE e.delivery_id = d.id AND e.source = 'estimated'))"
            )
            params.append(since)
        where = " AND ".join(scope)
        with self.transaction() as conn:
            # A delivery keeps a single estimated row: drop one filed under another day.
            conn.execute(
                f"""
                DELETE FROM metrics WHERE rowid IN (
                    SELECT m.rowid FROM metrics m JOIN deliveries d ON d.id = m.delivery_id
                    WHERE m.source = 'estimated' AND m.day != {day} AND {where})
                """,
                params,
            )
            cursor = conn.execute(
                f"""
                INSERT INTO metrics (delivery_id, day, reads, shares, impressions, source,
                                     fetched_at)
                SELECT d.id, {day}, 0, 0, ?, 'estimated', ? FROM deliveries d
                WHERE {where}
                ON CONFLICT (delivery_id, day, source) DO UPDATE SET
                    impressions = excluded.impressions, fetched_at = excluded.fetched_at
                WHERE impressions != excluded.impressions
                """,
                [impressions, fetched_at, *params],
            )
            return max(cursor.rowcount, 0)

    def has_missing_estimates(self, channel: str) -> bool:
        """Whether a delivered delivery of ``channel`` has no estimated row yet."""
        row = self.query_one(
            "SELECT 1 AS found FROM deliveries d WHERE d.channel = ? AND d.status = 'delivered'"
            " AND NOT EXISTS (SELECT 1 FROM metrics m WHERE m.delivery_id = d.id"
            " AND m.source = 'estimated') LIMIT 1",
            (channel,),
        )
        return row is not None

    # -- reads for the pull ---------------------------------------------------------------------

    def delivered_for_stats(
        self, channels: Sequence[str], since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Delivered deliveries of these channels, oldest first, streamed: id, uid, channel,
        delivered_at (or scheduled_at), url, remote_state (JSON text)."""
        if not channels:
            return
        marks = ", ".join("?" for _ in channels)
        when = "COALESCE(delivered_at, scheduled_at)"
        sql = (
            f"SELECT id, uid, channel, {when} AS at, url, remote_state FROM deliveries"
            f" WHERE status = 'delivered' AND channel IN ({marks})"
        )
        params: list[Any] = list(channels)
        if since:
            sql += f" AND {when} >= ?"
            params.append(since)
        sql += f" ORDER BY {when}, id"
        names = ("id", "uid", "channel", "at", "url", "remote_state")
        with self.lock:
            for row in self.conn.execute(sql, params):
                yield dict(zip(names, row, strict=True))

    def metrics_of(self, delivery_id: int) -> list[dict[str, Any]]:
        return self.query(
            "SELECT day, reads, shares, impressions, source FROM metrics WHERE delivery_id = ?"
            " ORDER BY source, day",
            (delivery_id,),
        )

    def scheduled_range(self) -> tuple[str | None, str | None]:
        """The first and last ``scheduled_at`` of all deliveries (None, None when empty)."""
        row = self.query_one(
            "SELECT min(scheduled_at) AS first, max(scheduled_at) AS last FROM deliveries"
        )
        return (row["first"], row["last"]) if row else (None, None)

    # -- aggregation ----------------------------------------------------------------------------

    def aggregate(
        self,
        spec: AggregateSpec,
        *,
        on_step: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Stream aggregate rows: ``spec.keys`` values, ``spec.sets`` comma lists, then FIGURES.

        Rows come ordered by the plain keys (NULLs last) when ``spec.order``.
        ``on_step`` is called every few hundred thousand SQLite VM steps.
        """
        with self.lock:
            sql, params = self._aggregate_sql(spec)
            self._prepare_temp(spec)
            if on_step is not None:
                self.conn.set_progress_handler(lambda: on_step() or 0, 200_000)
            try:
                yield from self.conn.execute(sql, params)
            finally:
                if on_step is not None:
                    self.conn.set_progress_handler(None, 0)

    def officer_ranking(self, start_day: str | None, end_day: str | None) -> list[dict[str, Any]]:
        """Officers by unique visitors to their personal links on local days [start, end]
        (a visitor counted once per link and day), then by clicks."""
        return self.query(
            """
            SELECT o.id, o.name, o.county, o.township, o.disabled,
                   count(DISTINCT l.id) AS links,
                   coalesce(sum(h.counted), 0) AS measured_clicks,
                   count(DISTINCT CASE WHEN h.counted
                         THEN h.link_id || '/' || h.day || '/' || h.visitor END)
                       AS unique_visitors
            FROM officers o
            LEFT JOIN links l ON l.officer_id = o.id
            LEFT JOIN hits h ON h.link_id = l.id AND h.day >= ? AND h.day <= ?
            GROUP BY o.id
            ORDER BY unique_visitors DESC, measured_clicks DESC, o.id
    """,
            (start_day or "", end_day or "~"),
        )

    def _prepare_temp(self, spec: AggregateSpec) -> None:
        conn = self.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS mm_stats_channels (name TEXT PRIMARY KEY, county TEXT)"
        )
        conn.execute("DELETE FROM temp.mm_stats_channels")
        conn.executemany(
            "INSERT INTO temp.mm_stats_channels (name, county) VALUES (?, ?)",
            list(spec.counties.items()),
        )

    def _scan_hint(self, spec: AggregateSpec) -> str:
        """Read the whole table in rowid order unless the range holds a small part of it; then
        read the range from the stats index."""
        if not (spec.start or spec.end):
            return "NOT INDEXED"
        index = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'deliveries_stats'"
        ).fetchone()
        if index is None:  # an unmigrated database: let SQLite choose
            return ""
        last = self.conn.execute("SELECT max(rowid) FROM deliveries").fetchone()[0] or 0
        in_range = self.conn.execute(
            "SELECT count(*) FROM deliveries INDEXED BY deliveries_stats"
            " WHERE scheduled_at >= ? AND scheduled_at < ?",
            (spec.start or "", spec.end or "~"),
        ).fetchone()[0]
        return "NOT INDEXED" if in_range * 4 > last else "INDEXED BY deliveries_stats"

    def _aggregate_sql(self, spec: AggregateSpec) -> tuple[str, list[Any]]:
        inner_params: list[Any] = []
        time_columns = []
        for name in ("day", "week", "month", "campaign_days"):
            wanted = name in spec.keys or (name == "campaign_days" and "campaign" in spec.sets)
            if wanted:
                expr = bucket_sql("d.scheduled_at", spec.edges.get(name, ()), inner_params)
                time_columns.append(f"{expr} AS {name}")
        where, wparams = [], []
        if spec.start:
            where.append("d.scheduled_at >= ?")
            wparams.append(spec.start)
        if spec.end:
            where.append("d.scheduled_at < ?")
            wparams.append(spec.end)
        where_sql = ("WHERE " + " AND ".join(where)) if where else ""
        params: list[Any] = []
        key_sql = {
            "county": "c.county",
            "channel": "d.channel",
            "day": "d.day",
            "week": "d.week",
            "month": "d.month",
        }
        selects = [f"{key_sql[k]} AS k{i}" for i, k in enumerate(spec.keys, 1)]
        for name in spec.sets:
            if name == "group":
                selects.append("trim(ps.groups, ',')")
            elif name == "topic":
                selects.append("trim(ps.topics, ',')")
            else:
                selects.append(_campaign_sql(spec.campaigns, params))
        figures = [
            *(f"sum(d.status = '{s}')" for s in STATUSES),
            "coalesce(sum(d.ei), 0)",
            "coalesce(sum(d.mr), 0)",
            "coalesce(sum(d.ms), 0)",
            "coalesce(sum(CASE WHEN d.nm > 0 THEN d.mr ELSE d.ei END), 0)",
            "coalesce(sum(d.nm > 0), 0)",
            "coalesce(sum(d.nm = 0 AND d.ne > 0), 0)",
            "coalesce(sum(lf.clicks), 0)",
            "coalesce(sum(lf.visitors), 0)",
        ]
        columns = len(selects)
        group_by = (
            ("GROUP BY " + ", ".join(str(i) for i in range(1, columns + 1))) if columns else ""
        )
        order_by = ""
        if spec.order and spec.keys:
            order_by = "ORDER BY " + ", ".join(
                f"(k{i} IS NULL), k{i}" for i in range(1, len(spec.keys) + 1)
            )
        sets_join = "LEFT JOIN pack_tag_sets ps ON ps.pack_id = d.pack_id" if spec.sets else ""
        extra = "".join(f", {c}" for c in time_columns)
        county_join = (  # a report keys by channel and maps counties itself: no join then
            "LEFT JOIN temp.mm_stats_channels c ON c.name = d.channel"
            if "county" in spec.keys
            else ""
        )
        # Each delivery with its reduced metric rows (delivery_figures), joined with its
        # tracked link's clicks and daily unique visitors (reduced per delivery once, in
        # ``lf``), then grouped by the keys.
        sql = f"""
            WITH dd AS (
                SELECT d.id, d.pack_id, d.channel, d.status{extra},
                       f.mr, f.ms, f.nm, f.ne, f.ei
                FROM deliveries d {self._scan_hint(spec)}
                LEFT JOIN delivery_figures f ON f.delivery_id = d.id
                {where_sql}
            ),
            lf AS (
                SELECT l.delivery_id, count(*) AS clicks,
                       count(DISTINCT h.day || h.visitor) AS visitors
                FROM links l JOIN hits h ON h.link_id = l.id
                WHERE l.delivery_id IS NOT NULL AND h.counted = 1
                GROUP BY l.delivery_id
            )
            SELECT {", ".join([*selects, *figures])}
            FROM dd d
            LEFT JOIN lf ON lf.delivery_id = d.id
            {county_join}
            {sets_join}
            {group_by}
            {order_by}
        """
        return sql, [*inner_params, *wparams, *params]


def _campaign_sql(campaigns: Sequence[CampaignSpec], params: list[Any]) -> str:
    """Comma list of the positions of the campaigns a delivery belongs to (NULL for none): the
    campaign runs on its local day (``campaign_days``) and its pack shares a topic (when the
    campaign lists topics) and a group (when it lists groups)."""
    parts = []
    for i, camp in enumerate(campaigns):
        if not camp.topics and not camp.groups:
            continue
        cond = [f"instr(d.campaign_days, ',{i},') > 0"]
        for column, tags in (("ps.topics", camp.topics), ("ps.groups", camp.groups)):
            if tags:
                cond.append("(" + " OR ".join(f"instr({column}, ?) > 0" for _ in tags) + ")")
                params.extend(f",{t}," for t in tags)
        parts.append(f"CASE WHEN {' AND '.join(cond)} THEN ',{i}' ELSE '' END")
    if not parts:
        return "NULL"
    return "nullif(substr(" + " || ".join(parts) + ", 2), '')"
