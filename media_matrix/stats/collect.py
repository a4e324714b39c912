"""Metrics collection: estimated reach per delivery, measured WeChat reads via datacube.

Estimates (``source = 'estimated'``, one row per delivered delivery, day = its local delivery
day, the figure in ``impressions``) are written by dispatch as deliveries become delivered
(:func:`estimate` with ``since`` = the run's start); :func:`pull` adds measured figures only and
``stats pull --reestimate`` recomputes every estimate (after a reach change):

* every channel: its configured ``reach`` (the audience a delivery reaches);
* screens (outbox with ``passers_per_play`` > 0): plays x passers-by per play, where the entry
  plays on each day of its ``play_days`` whose weekday is in ``weekdays``, as many times as the
  daily ``window`` (whole day when unset) allows one loop of the playlist of ``play_seconds``
  per entry; the playlist holds the channel's entries delivered within the ``play_days`` before
  (and including) this one.

Measured (``source = 'measured'``, one row per delivery and stat day, ``reads`` = readers
(阅读人数) and ``shares`` = sharers (分享人数) new on that day), pulled per WeChat account
(channels sharing api_base + appid share one token and one set of calls):

* ``datacube/getarticletotaldetail`` (default): articles *published* in [begin, end] with, per
  stat_date, the totals from publication to that date (up to 30 days); we ask one publish day
  at a time for the Beijing days on which our deliveries went out, and store day-over-day
  differences.
* ``datacube/getarticlesummary``: per stat day, every article read that day with that day's
  figures; asked one day at a time.

Both endpoints take ``begin_date``/``end_date`` (YYYY-MM-DD, Beijing), ``end_date`` at most
yesterday, and a span of at most :data:`DAY_SPAN` days (1). A result row's ``msgid`` is
``<msg_data_id>_<index>`` (index from 1 in the published message); a delivery is found by the
``msg_data_id`` and its position in ``uids`` recorded in its ``remote_state`` by the WeChat
adapter, else by its article URL. Tokens, token refresh on 40001/40014/42001 and error typing
are the WeChat adapter's (:meth:`WechatMpAdapter.call`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from media_matrix.config import OutboxChannel, Settings, WechatChannel, parse_quiet_hours
from media_matrix.messages import AdapterError
from media_matrix.stats.core import offset_segments
from media_matrix.store import Store
from media_matrix.timeutil import from_iso, to_iso, utcnow

BEIJING = ZoneInfo("Asia/Shanghai")
TOTAL_DETAIL = "getarticletotaldetail"
SUMMARY = "getarticlesummary"
ENDPOINTS = (TOTAL_DETAIL, SUMMARY)
DAY_SPAN = {TOTAL_DETAIL: 1, SUMMARY: 1}  # most days one request may cover
STATS_DAYS = 30  # getarticletotaldetail follows an article this many days after publication
DEFAULT_DAYS = 7


# -- estimates ----------------------------------------------------------------------------------


def window_seconds(channel: OutboxChannel) -> int:
    if not channel.window:
        return 86400
    start, end = parse_quiet_hours(channel.window)
    begin = start.hour * 3600 + start.minute * 60
    finish = end.hour * 3600 + end.minute * 60
    return (finish - begin) % 86400 or 86400


def screen_impressions(channel: OutboxChannel, start: datetime, playlist: int) -> int:
    """Passers-by who saw one entry starting at ``start`` (local time) in a playlist of
    ``playlist`` entries: days it plays x plays a day x passers-by per play."""
    first = start.date()
    days = sum(
        1
        for offset in range(channel.play_days)
        if (first + timedelta(days=offset)).isoweekday() in channel.weekdays
    )
    plays_a_day = window_seconds(channel) // (channel.play_seconds * max(1, playlist))
    return days * plays_a_day * channel.passers_per_play


def estimate(
    settings: Settings,
    store: Store,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Write the estimated rows of delivered deliveries; returns the rows written.

    ``since``: only deliveries delivered from then on, plus those without an estimate yet
    (None: all of them, e.g. after a reach change in config).
    """
    now = now or utcnow()
    tz = settings.tz
    fetched = to_iso(now) or ""
    first, last = store.scheduled_range()
    lo = datetime.fromisoformat(first) if first else now
    hi = datetime.fromisoformat(last) if last else now
    offsets = offset_segments(tz, min(lo, now), max(hi, now) + timedelta(days=31))
    since_iso = to_iso(since) if since else None
    written = 0
    for channel in settings.channels:
        if isinstance(channel, OutboxChannel) and channel.passers_per_play > 0:
            written += _estimate_screen(store, channel, tz, since, fetched)
        else:
            written += store.estimate_flat(
                channel.name, channel.reach, offsets=offsets, fetched_at=fetched, since=since_iso
            )
    return written


def _estimate_screen(
    store: Store, channel: OutboxChannel, tz: Any, since: datetime | None, fetched: str
) -> int:
    if since is not None and store.has_missing_estimates(channel.name):
        since = None  # some delivery was never estimated: go through the whole channel
    play = timedelta(days=channel.play_days)
    recent: list[datetime] = []  # start times of the entries still in the playlist
    rows = []
    for row in store.delivered_for_stats(
        [channel.name], since=to_iso(since - play) if since else None
    ):
        at = from_iso(row["at"])
        if at is None:
            continue
        recent = [t for t in recent if t > at - play]
        recent.append(at)
        if since is not None and at < since:
            continue
        local = at.astimezone(tz)
        figure = screen_impressions(channel, local, len(recent))
        rows.append((row["id"], local.date().isoformat(), 0, 0, figure, "estimated", fetched))
    return store.upsert_metrics(rows)


# -- datacube -----------------------------------------------------------------------------------


def date_chunks(first: date, last: date, span: int) -> Iterator[tuple[date, date]]:
    """[first, last] cut into (begin, end) pieces of at most ``span`` days, both inclusive."""
    day = first
    while day <= last:
        end = min(last, day + timedelta(days=span - 1))
        yield day, end
        day = end + timedelta(days=1)


def beijing_yesterday(now: datetime) -> date:
    return now.astimezone(BEIJING).date() - timedelta(days=1)


class _Matcher:
    """msgid / article URL -> delivery id for one account."""

    def __init__(self) -> None:
        self.by_msgid: dict[str, int] = {}
        self.by_url: dict[str, int] = {}
        self.publish_days: dict[date, int] = defaultdict(int)
        self.deliveries = 0

    def add(self, row: dict[str, Any]) -> None:
        self.deliveries += 1
        try:
            state = json.loads(row["remote_state"] or "{}")
        except ValueError:
            state = {}
        if not isinstance(state, dict):
            state = {}
        uids = state.get("uids") or []
        urls = [u for u in (state.get("urls") or []) if u]
        msg_data_id = state.get("msg_data_id")
        if msg_data_id and row["uid"] in uids:
            self.by_msgid[f"{msg_data_id}_{uids.index(row['uid']) + 1}"] = row["id"]
        elif msg_data_id and len(uids) <= 1:
            self.by_msgid[f"{msg_data_id}_1"] = row["id"]
        if row.get("url"):
            self.by_url[_norm_url(row["url"])] = row["id"]
        elif len(urls) == 1:
            self.by_url[_norm_url(urls[0])] = row["id"]
        at = from_iso(row["at"])
        if at is not None:
            self.publish_days[at.astimezone(BEIJING).date()] += 1

    def find(self, item: dict[str, Any]) -> int | None:
        found = self.by_msgid.get(str(item.get("msgid", "")))
        if found is None and item.get("url"):
            found = self.by_url.get(_norm_url(str(item["url"])))
        return found


def _norm_url(url: str) -> str:
    return url.split("#", 1)[0].strip()


def _count(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def totaldetail_rows(item: dict[str, Any], yesterday: date) -> list[tuple[str, int, int]]:
    """One getarticletotaldetail article -> (stat day, new readers, new sharers) per day; the
    API reports totals since publication, so each day is the difference to the day before."""
    details = sorted(
        (d for d in item.get("detail_list") or [] if d.get("stat_date")),
        key=lambda d: str(d["stat_date"]),
    )
    out = []
    reads_before = shares_before = 0
    for detail in details:
        day = str(detail["stat_date"])
        if date.fromisoformat(day) > yesterday:
            break
        reads, shares = _count(detail.get("read_user")), _count(detail.get("share_user"))
        out.append((day, max(0, reads - reads_before), max(0, shares - shares_before)))
        reads_before, shares_before = max(reads, reads_before), max(shares, shares_before)
    return out


class WechatApi(Protocol):
    """An open WeChat account API: a call returns the decoded answer (typed errors on failure,
    token refresh inside); closing releases what it holds."""

    def call(
        self, endpoint: str, *, body: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Any]: ...

    def close(self) -> None: ...


def pull(
    settings: Settings,
    store: Store,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
    *,
    endpoint: str = TOTAL_DETAIL,
    client: Callable[[WechatChannel], WechatApi],
) -> dict[str, Any]:
    """Pull measured WeChat figures for the last ``days`` stat days
    (ending yesterday, Beijing); the daemon calls it daily. Returns what was done; failures of
    one account are listed under ``errors`` and do not stop the others.

    ``client(channel)`` opens the account's API (the WeChat adapter, handed in by
    :func:`media_matrix.flow.pull_stats`: statistics sit below the adapters and never import
    them)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown datacube endpoint {endpoint!r}; expected one of {ENDPOINTS}")
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    yesterday = beijing_yesterday(now)
    first = yesterday - timedelta(days=days - 1)
    window_start = datetime.combine(first, time(0), BEIJING)
    result: dict[str, Any] = {
        "endpoint": endpoint,
        "begin_date": first.isoformat(),
        "end_date": yesterday.isoformat(),
        "estimated_rows": 0,  # written at delivery (dispatch); `--reestimate` recomputes
        "measured_rows": 0,
        "calls": 0,
        "accounts": [],
        "unmatched": 0,
        "errors": [],
    }
    accounts: dict[tuple[str, str], list[WechatChannel]] = defaultdict(list)
    for channel in settings.channels:
        if isinstance(channel, WechatChannel):
            accounts[(channel.api_base.rstrip("/"), channel.appid)].append(channel)
    fetched = to_iso(now) or ""
    for (_base, appid), channels in accounts.items():
        names = [c.name for c in channels]
        # Articles published up to STATS_DAYS before the window still gain readers in it.
        since = to_iso(window_start - timedelta(days=STATS_DAYS))
        matcher = _Matcher()
        for row in store.delivered_for_stats(names, since=since):
            matcher.add(row)
        account = {"appid": appid, "channels": names, "deliveries": matcher.deliveries}
        result["accounts"].append(account)
        if not matcher.deliveries:
            continue
        adapter = client(channels[0])
        rows: dict[tuple[int, str], tuple[int, int]] = {}
        try:
            if endpoint == TOTAL_DETAIL:
                publish_days = sorted(d for d in matcher.publish_days if d <= yesterday)
                requests_ = [
                    chunk
                    for day in publish_days
                    for chunk in date_chunks(day, day, DAY_SPAN[endpoint])
                ]
            else:
                requests_ = list(date_chunks(first, yesterday, DAY_SPAN[endpoint]))
            for begin, end in requests_:
                data, _ = adapter.call(
                    f"datacube/{endpoint}",
                    body={"begin_date": begin.isoformat(), "end_date": end.isoformat()},
                )
                result["calls"] += 1
                items = data.get("list")
                for item in items if isinstance(items, list) else []:
                    if not isinstance(item, dict):
                        continue
                    delivery_id = matcher.find(item)
                    if delivery_id is None:
                        result["unmatched"] += 1
                        continue
                    if endpoint == TOTAL_DETAIL:
                        for day, reads, shares in totaldetail_rows(item, yesterday):
                            rows[(delivery_id, day)] = (reads, shares)
                    else:
                        day = str(item.get("ref_date") or begin.isoformat())
                        reads = _count(item.get("int_page_read_user"))
                        shares = _count(item.get("share_user"))
                        old = rows.get((delivery_id, day), (0, 0))
                        rows[(delivery_id, day)] = (old[0] + reads, old[1] + shares)
        except (AdapterError, ValueError, KeyError, TypeError) as exc:
            # one account's failure (or an answer we cannot read) never stops the others
            error = str(exc) if isinstance(exc, AdapterError) else f"unreadable answer: {exc!r}"
            account["error"] = error
            result["errors"].append({"appid": appid, "error": error})
        finally:
            adapter.close()
        result["measured_rows"] += store.upsert_metrics(
            (delivery_id, day, reads, shares, 0, "measured", fetched)
            for (delivery_id, day), (reads, shares) in sorted(rows.items())
        )
    return result
