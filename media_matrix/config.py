"""config.yaml -> validated, typed settings.

Relative paths resolve against the config file's folder, ``${ENV_VAR}`` expands anywhere in a
string value, and every error names the file, the key and what was expected, so the CLI can
exit 2 before the database is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from media_matrix import redact
from media_matrix.cron import cron_trigger
from media_matrix.errors import CONFIG_ENV, ConfigError
from media_matrix.models import CITY, TOPICS, check_group_ids
from media_matrix.netpolicy import NetworkPolicy, network_policy

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

# Range bounds shared by the settings below. Every number a config carries has a range: a value
# outside it is a config error naming the key (a negative lease once let two dispatchers publish
# every article twice). Upper bounds keep each value inside what timedelta, SQLite and a sane
# deployment can hold.
HOUR, DAY = 3600.0, 86400.0
MAX_TIMEOUT = 300.0  # seconds an HTTP exchange may take
MAX_PEOPLE = 10**9  # populations, reach, passers-by
MAX_COUNT = 100_000  # items per fetch, per slot, per day, per minute
MAX_WORKERS = 64


def parse_duration(value: str | int | float) -> float:
    """'30m' -> 1800.0; bare numbers are seconds. The range is each field's to check."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 45s, 30m, 2h or 1d, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 45s, 30m, 2h or 1d, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def check_month_day(value: str) -> str:
    """'09-30' is a day of the year; '13-45' and '02-30' are not (02-29 is: leap years)."""
    try:
        month, day = (int(part) for part in value.split("-"))
        date(2024, month, day)  # a leap year, so 02-29 passes
    except ValueError:
        raise ValueError(f"expected a month and day MM-DD such as 09-30, got {value!r}") from None
    return value


def parse_quiet_hours(value: str) -> tuple[time, time]:
    """'22:00-07:00' -> (22:00, 07:00); the window may wrap past midnight."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}") from None
    return start, end


class _Model(BaseModel):
    # allow_inf_nan=False: .nan or .inf in YAML is no number for any setting
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, allow_inf_nan=False, defer_build=True
    )


class HtmlSelectors(_Model):
    item: str
    link: str = "a"
    title: str | None = None
    date: str | None = None
    body: str
    article_title: str | None = None  # title selector on the article page, if better there
    # the list's "next page" link (e.g. "a.next"): older entries are read from the pages it
    # leads to, on the same site, up to max_pages list pages in all, and only until a page
    # holds nothing new (the pages beyond were read on earlier polls)
    next_page: str | None = None
    max_pages: int = Field(default=5, ge=1, le=50)


class FeedConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["rss", "html", "packdir"]
    url: str
    every: float = Field(default=1800.0, ge=1, le=30 * DAY)
    auto_approve: bool = False
    enabled: bool = True
    county: str = CITY
    selectors: HtmlSelectors | None = None
    encoding: str | None = None  # force a charset for sites that lie about theirs
    max_items: int = Field(default=200, ge=1, le=MAX_COUNT)
    # Dedupe order: a feed never merges into (or overwrites) a pack first delivered by a feed of
    # higher trust. Default: 1 for auto_approve feeds (editors already trust them), else 0.
    trust: int | None = Field(default=None, ge=0, le=100)

    @field_validator("every", mode="before")
    @classmethod
    def _parse_every(cls, value: Any) -> float:
        return parse_duration(value)

    @property
    def trust_level(self) -> int:
        if self.trust is not None:
            return self.trust
        return 1 if self.auto_approve else 0

    @model_validator(mode="after")
    def _html_needs_selectors(self) -> FeedConfig:
        if self.kind == "html" and self.selectors is None:
            raise ValueError("an html feed needs selectors: {item, link, body}")
        return self


class _ChannelBase(_Model):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    county: str = CITY
    audience: list[str] = Field(default_factory=lambda: ["public"])
    reach: int = Field(default=0, ge=0, le=MAX_PEOPLE)
    slots: list[str] = Field(default_factory=list)
    per_slot: int = Field(default=1, ge=1, le=MAX_COUNT)
    daily_quota: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    quiet_hours: str | None = None
    enabled: bool = True
    concurrency: int = Field(default=2, ge=1, le=MAX_WORKERS)
    rate_per_minute: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    title: str | None = Field(default=None, max_length=100)  # display name; the slug is the id

    @field_validator("audience")
    @classmethod
    def _known_groups(cls, value: list[str]) -> list[str]:
        return check_group_ids(value)  # type: ignore[return-value]

    @field_validator("slots")
    @classmethod
    def _valid_cron(cls, value: list[str]) -> list[str]:
        for i, expr in enumerate(value):
            try:
                cron_trigger(expr, "UTC")
            except ValueError as exc:
                detail = str(exc).removeprefix(f"{expr!r}: ")
                raise ValueError(f"bad cron expression {expr!r} at slots[{i}]: {detail}") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _valid_quiet(cls, value: str | None) -> str | None:
        if value is not None:
            start, end = parse_quiet_hours(value)
            if start == end:
                raise ValueError(
                    f"quiet hours {value!r} start and end at the same time; "
                    "expected a window like 22:00-07:00"
                )
        return value

    @model_validator(mode="after")
    def _slots_outside_quiet_hours(self) -> _ChannelBase:
        """No slot may fire inside quiet hours. Both are wall-clock times in the config time
        zone, so a week of fire times is checked on a fixed week (the windows repeat daily):
        for each day, the first fire time at or after the window's start must be after its end.
        """
        if self.quiet_hours is None or not self.slots:
            return self
        start, end = parse_quiet_hours(self.quiet_hours)
        monday = datetime(2024, 1, 1, tzinfo=UTC)
        for i, expr in enumerate(self.slots):
            trigger = cron_trigger(expr, UTC)
            for offset in range(7):
                day = monday + timedelta(days=offset)
                opens = datetime.combine(day.date(), start, UTC)
                closes = datetime.combine(day.date(), end, UTC)
                if closes <= opens:  # wraps midnight
                    closes += timedelta(days=1)
                fire = trigger.get_next_fire_time(None, opens)
                if fire is not None and fire < closes:
                    raise ValueError(
                        f"slots[{i}] {expr!r} fires at {fire:%H:%M}, inside quiet_hours "
                        f"{self.quiet_hours!r}; move the slot or the quiet hours"
                    )
        return self


class WechatChannel(_ChannelBase):
    type: Literal["wechat_mp"]
    appid: str
    secret: str
    api_base: str = "https://api.weixin.qq.com"
    mode: Literal["publish", "mass_send"] = "publish"
    cover: str | None = None  # image path or URL used when a pack has none (default: shipped)
    author: str = ""
    timeout: float = Field(default=15.0, gt=0, le=MAX_TIMEOUT)


class WecomChannel(_ChannelBase):
    type: Literal["wecom_robot"]
    webhook_url: str
    format: Literal["news", "markdown"] = "news"
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)


class WebhookChannel(_ChannelBase):
    type: Literal["webhook"]
    url: str
    secret: str
    field_map: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)
    id_key: str = "id"  # where the CMS answer carries the manuscript id
    url_key: str = "url"  # and its public URL, if any


class OutboxChannel(_ChannelBase):
    type: Literal["outbox"]
    path: Path
    ticker_max: int = Field(default=60, ge=10, le=10_000)
    play_seconds: int = Field(default=15, ge=1, le=int(DAY))
    passers_per_play: int = Field(default=0, ge=0, le=MAX_PEOPLE)
    # ISO weekdays, 1 = Monday .. 7 = Sunday
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=1
    )
    window: str | None = None  # daily play window "HH:MM-HH:MM"
    play_days: int = Field(default=7, ge=1, le=366)  # how long a playlist entry stays valid
    qr_position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "bottom-right"

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value


class PosterChannel(_ChannelBase):
    """A print-ready PDF per delivery for community bulletin boards (科普宣传栏)."""

    type: Literal["poster"]
    path: Path
    paper: Literal["A4", "A3"] = "A4"
    key_points: int = Field(default=4, ge=0, le=8)  # lines of the text shown as key points


ChannelConfig = Annotated[
    WechatChannel | WecomChannel | WebhookChannel | OutboxChannel | PosterChannel,
    Field(discriminator="type"),
]


class PublicConfig(_Model):
    """The public face (`media-matrix public`): where tracked links point, and its limits."""

    base_url: str = "http://127.0.0.1:8090"
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    threads: int = Field(default=8, ge=1, le=64)
    miss_burst: int = Field(default=20, ge=1, le=100_000)  # unknown codes a client may try at once
    miss_rate: float = Field(default=0.2, gt=0, le=10_000)  # and per second after that
    flush_every: float = Field(default=0.5, gt=0, le=60)  # seconds between hit buffer flushes
    cache_seconds: float = Field(default=2.0, ge=0, le=3600)  # how long a resolved link is reused
    # The address of a reverse proxy in front: its X-Forwarded-For names the client.
    trusted_proxy: str | None = None
    # 群众点单 form (/request): orders one visitor (address + agent) and one address may leave
    # per order_window seconds (token buckets over HMAC keys, in memory; no address kept).
    order_burst: int = Field(default=5, ge=1, le=10_000)
    order_address_burst: int = Field(default=30, ge=1, le=100_000)
    order_window: float = Field(default=3600, gt=0, le=7 * 86400)

    @field_validator("base_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
            raise ValueError(f"expected an http(s) URL without query, got {value!r}")
        return value.rstrip("/")


class Campaign(_Model):
    name: str
    start: str = Field(alias="from", pattern=r"^\d{2}-\d{2}$")
    end: str = Field(alias="to", pattern=r"^\d{2}-\d{2}$")
    topics: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    @field_validator("start", "end")
    @classmethod
    def _day_of_year(cls, value: str) -> str:
        return check_month_day(value)


def _month_day(text: str) -> tuple[int, int]:
    month, day = text.split("-")
    return int(month), int(day)


def _campaign_on(campaign: Campaign, day: date) -> bool:
    start, end = _month_day(campaign.start), _month_day(campaign.end)
    today = (day.month, day.day)
    if start <= end:
        return start <= today <= end
    return today >= start or today <= end  # wraps the new year: 12-20 .. 01-05


def active_campaigns(
    campaigns: Iterable[Campaign], moment: datetime | date, tz: tzinfo | str
) -> list[Campaign]:
    """Campaigns whose MM-DD range (both ends inclusive) covers ``moment``'s day in ``tz``.

    A range whose end is before its start wraps the new year. A ``date`` is taken as-is. Here
    beside the campaign dates so the planner and the statistics read them the same way.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"moment must be timezone-aware, got naive {moment.isoformat()}")
        day = moment.astimezone(ZoneInfo(tz) if isinstance(tz, str) else tz).date()
    else:
        day = moment
    return [campaign for campaign in campaigns if _campaign_on(campaign, day)]


Weight = Annotated[float, Field(ge=-100, le=100)]  # a keyword's weight in a tagging rule


class RuleConfig(_Model):
    """Tagging rule for one group or topic (see tagging.py and media_matrix/rules.yaml).

    In config.yaml an inline rule *extends* the rule of the same id from the rules file: its
    keywords and negatives are added (its weight wins for a word in both; weight 0 switches a
    default keyword off), its categories are added, and label/threshold replace when given.
    ``replace: true`` makes the inline rule replace the default rule whole.
    """

    label: str | None = None
    keywords: dict[str, Weight] = Field(default_factory=dict)
    negatives: dict[str, Weight] = Field(default_factory=dict)
    categories: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, gt=0, le=1000)
    replace: bool = False

    @field_validator("keywords", "negatives", mode="before")
    @classmethod
    def _keyword_map(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list):  # a plain list of words: weight 1 each
            value = {word: 1.0 for word in value}
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of keyword: weight")
        out = {}
        for word, weight in value.items():
            word = str(word).strip()
            if not word:
                raise ValueError("a keyword is empty")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"keyword {word!r}: expected a number as weight, got {weight!r}")
            if weight != weight or weight in (float("inf"), float("-inf")):
                raise ValueError(f"keyword {word!r}: weight must be a finite number")
            out[word] = float(weight)
        return out

    @field_validator("categories", mode="before")
    @classmethod
    def _category_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str | int):
            value = [value]
        return [str(v) for v in value] if isinstance(value, list) else value


class TaggingConfig(_Model):
    rules_file: Path | None = None  # None: media_matrix/rules.yaml shipped with the package
    threshold: float = Field(default=2.0, gt=0, le=1000)
    title_weight: float = Field(default=2.0, ge=0, le=100)
    # a topic also needs this share of the pack's best topic score (0 turns the check off)
    topic_share: float = Field(default=0.3, ge=0, le=1)
    # likewise for groups: long bodies mention many people in passing
    group_share: float = Field(default=0.2, ge=0, le=1)


class IngestConfig(_Model):
    user_agent: str = "media-matrix/0.1 (+science-popularization feed reader)"
    connect_timeout: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT)
    read_timeout: float = Field(default=20.0, gt=0, le=MAX_TIMEOUT)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    max_backoff: float = Field(default=DAY, ge=1, le=30 * DAY)
    workers: int = Field(default=4, ge=1, le=MAX_WORKERS)
    # the whole fetch (redirects and body included) of a feed, article page or image
    deadline: float = Field(default=60.0, gt=0, le=3600)
    max_redirects: int = Field(default=5, ge=0, le=20)
    # a published date later than now + future_skew is clamped to the fetch time and reported
    future_skew: float = Field(default=DAY, ge=0, le=30 * DAY)
    # caps on one resource pack (folder or zip), reported per pack when exceeded
    pack_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=1024**3)
    pack_max_files: int = Field(default=500, ge=1, le=1_000_000)
    pack_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024, le=64 * 1024**3)

    @field_validator("max_backoff", "deadline", "future_skew", mode="before")
    @classmethod
    def _parse_backoff(cls, value: Any) -> float:
        return parse_duration(value)


class NetworkConfig(_Model):
    """Non-public addresses that untrusted fetches (feeds, pages, images) may reach:
    ``127.0.0.1``, ``10.0.0.0/8``, ``127.0.0.1:8080``, ``[::1]:8080``, ``localhost:8080``."""

    allow: list[str] = Field(default_factory=list)

    @field_validator("allow")
    @classmethod
    def _valid_entries(cls, value: list[str]) -> list[str]:
        network_policy(value)  # raises ValueError naming the bad entry
        return value

    @cached_property
    def policy(self) -> NetworkPolicy:
        return network_policy(self.allow)


class DispatchConfig(_Model):
    """``dispatch:`` settings. Lease and backoffs are seconds; ``max_retry_after`` (a duration,
    default 1h) caps how long a remote's Retry-After may put a delivery off."""

    lease_seconds: float = Field(default=300.0, ge=0.1, le=DAY)
    max_attempts: int = Field(default=6, ge=1, le=100)
    backoff_base: float = Field(default=30.0, ge=0, le=DAY)
    backoff_cap: float = Field(default=3600.0, ge=0, le=7 * DAY)
    max_retry_after: float = Field(default=HOUR, gt=0, le=7 * DAY)
    workers: int = Field(default=8, ge=1, le=MAX_WORKERS)
    claim_batch: int = Field(default=200, ge=1, le=100_000)  # claimed per channel per round
    # a `submitted` delivery polled this long without a final answer becomes `unknown`
    submitted_max_age: float = Field(default=DAY, gt=0, le=30 * DAY)

    @field_validator("max_retry_after", "submitted_max_age", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _cap_above_base(self) -> DispatchConfig:
        if self.backoff_cap < self.backoff_base:
            raise ValueError(
                f"backoff_cap ({self.backoff_cap:g}s) must be at least backoff_base "
                f"({self.backoff_base:g}s)"
            )
        return self


class DaemonConfig(_Model):
    """``daemon:`` settings (see daemon.py).

    ``slot_second`` is the seconds field of every slot job's cron (default "0": a slot fires at
    the start of its minute, where the planner puts it). Tests, demos and the lateness benchmark
    set e.g. "*/2" to fire each slot minute every two seconds; every such fire fills the slot of
    its minute (quotas still hold per minute) and dispatches what is due.
    """

    # a slot missed by at most this much still runs, once
    misfire_grace: float = Field(default=600.0, ge=0, le=DAY)
    sweep_every: float = Field(default=15.0, gt=0, le=DAY)
    heartbeat_every: float = Field(default=5.0, gt=0, le=HOUR)
    # a lock without heartbeat this long is free
    stale_after: float = Field(default=60.0, gt=0, le=DAY)
    stats_at: str = "30 6 * * *"  # daily stats pull (crontab, config time zone)
    slot_second: str = "0"
    workers: int = Field(default=8, ge=2, le=MAX_WORKERS)

    @field_validator(
        "misfire_grace", "sweep_every", "heartbeat_every", "stale_after", mode="before"
    )
    @classmethod
    def _parse_durations(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("stats_at")
    @classmethod
    def _valid_stats_cron(cls, value: str) -> str:

        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {value!r}: {exc}") from None
        return value

    @field_validator("slot_second")
    @classmethod
    def _valid_second(cls, value: Any) -> str:
        value = str(value).strip()
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(second=value)
        except ValueError as exc:
            raise ValueError(
                f"bad seconds field {value!r}: {exc} (expected e.g. 0, */2 or 0,30)"
            ) from None
        return value

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> DaemonConfig:
        if self.stale_after < 3 * self.heartbeat_every:
            raise ValueError(
                f"stale_after ({self.stale_after:g}s) must be at least three heartbeats "
                f"({3 * self.heartbeat_every:g}s)"
            )
        return self


class WebConfig(_Model):
    """``web:`` settings of the editor console (``serve``)."""

    secret_key: str | None = None  # ${ENV}; without it a key is generated once and stored
    secure_cookies: bool = False  # Secure session cookie: on whenever served over HTTPS
    session_lifetime: float = Field(default=8 * HOUR, ge=60, le=30 * DAY)
    login_attempts: int = Field(default=5, ge=1, le=100)
    lockout: float = Field(default=900.0, ge=0, le=DAY)

    @field_validator("session_lifetime", "lockout", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        return value


class Settings(_Model):
    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False, defer_build=True
    )

    path: Path = Field(exclude=True)
    timezone: str = "Asia/Shanghai"
    database: Path = Path("var/media_matrix.db")
    templates: Path = Path("channels")
    # population per county; 0 means not known (no coverage figure)
    counties: dict[str, Annotated[int, Field(ge=0, le=MAX_PEOPLE)]] = Field(default_factory=dict)
    feeds: list[FeedConfig] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(default_factory=list)
    campaigns: list[Campaign] = Field(default_factory=list)
    tagging: TaggingConfig = Field(default_factory=TaggingConfig)
    groups: dict[str, RuleConfig] = Field(default_factory=dict)
    topics: dict[str, RuleConfig] = Field(default_factory=dict)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    sandbox: dict[str, Any] = Field(default_factory=dict)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    public: PublicConfig = Field(default_factory=PublicConfig)
    officers: Path | None = None  # a 科普信息员 CSV imported by `run --once`
    requests: Path | None = None  # a 群众点单 paper sheet (CSV) imported by `run --once`
    web: WebConfig = Field(default_factory=WebConfig)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; expected e.g. Asia/Shanghai") from None
        return value

    @field_validator("groups")
    @classmethod
    def _known_group_rules(cls, value: dict[str, RuleConfig]) -> dict[str, RuleConfig]:
        return check_group_ids(value)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for what, names in (
            ("feeds", [f.name for f in self.feeds]),
            ("channels", [c.name for c in self.channels]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: name {dupes[0]!r} is used more than once")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def feed(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise ConfigError(
            f"{self.path}: no feed named {name!r} (feeds: {[f.name for f in self.feeds]})"
        )

    def channel(self, name: str) -> ChannelConfig:
        for channel in self.channels:
            if channel.name == name:
                return channel
        names = [c.name for c in self.channels]
        raise ConfigError(f"{self.path}: no channel named {name!r} (channels: {names})")

    def county_names(self) -> list[str]:
        """City level first, then the configured counties: what people pick a county from."""
        return [CITY, *self.counties]

    def county_channels(self) -> dict[str, str]:
        """Channel name -> its county, for channels of a county (not city level)."""
        return {c.name: c.county for c in self.channels if c.county != CITY}

    def channel_title(self, name: str) -> str:
        """The channel's display name (``title:``), else its slug; unknown names as given."""
        for channel in self.channels:
            if channel.name == name:
                return channel.title or channel.name
        return name

    def resolve(self, path: Path | str) -> Path:
        """A path from config, made absolute against the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, else $MEDIA_MATRIX_CONFIG, else ./config.yaml."""
    candidate = explicit or os.environ.get(CONFIG_ENV) or "config.yaml"
    path = Path(candidate).expanduser()
    if not path.is_file():
        source = (
            "--config" if explicit else (CONFIG_ENV if os.environ.get(CONFIG_ENV) else "default")
        )
        raise ConfigError(f"{path}: config file not found (from {source})")
    return path.resolve()


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """YAML through libyaml's safe loader when PyYAML has it: the same documents as
    ``yaml.safe_load``, ten times faster (the rules file alone took 0.3 s in pure Python,
    paid by every command)."""
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


def load_settings(explicit: str | os.PathLike[str] | None = None) -> Settings:
    path = find_config(explicit)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    data = _expand_env(raw, path, ())
    data["path"] = path
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(path, raw, exc)) from None
    _resolve_paths(settings)
    settings.groups, settings.topics = load_rules(settings)
    redact.remember(secrets_of(settings))
    return settings


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the config holds, for redaction: channel secrets, every query value and
    password in a channel's URLs (a WeCom robot key), sensitive query values in feed URLs."""
    out: list[str] = []
    for channel in settings.channels:
        out.append(getattr(channel, "secret", None) or "")
        for attr in ("webhook_url", "url", "api_base"):
            out += redact.url_secrets(getattr(channel, attr, None))
    for feed in settings.feeds:
        out += redact.url_secrets(feed.url, every_value=False)
    return out


DEFAULT_RULES = Path(__file__).with_name("rules.yaml")


class _RulesFile(_Model):
    groups: dict[str, RuleConfig] = Field(default_factory=dict)
    topics: dict[str, RuleConfig] = Field(default_factory=dict)

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, value: dict[str, RuleConfig]) -> dict[str, RuleConfig]:
        return check_group_ids(value)  # type: ignore[return-value]


def load_rules(settings: Settings) -> tuple[dict[str, RuleConfig], dict[str, RuleConfig]]:
    """The effective tagging rules: the rules file, then config.yaml's inline groups/topics.

    The rules file is ``tagging.rules_file`` (already made absolute against the config folder)
    or, when unset, ``media_matrix/rules.yaml``. An inline rule extends the file's rule of the
    same id, or replaces it with ``replace: true`` (see RuleConfig). Group ids must be in
    models.GROUPS; topic ids may be new. Errors raise ConfigError naming the file and key.
    """
    path = settings.tagging.rules_file or DEFAULT_RULES
    try:
        raw = load_yaml(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{settings.path}: tagging.rules_file: cannot read {path}: {exc.strerror or exc}"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with groups: and topics:, got {type(raw).__name__}"
        )
    try:
        base = _RulesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(Path(path), raw, exc)) from None
    return (
        _merge_rules(base.groups, settings.groups),
        _merge_rules(base.topics, settings.topics),
    )


def _merge_rules(
    base: dict[str, RuleConfig], inline: dict[str, RuleConfig]
) -> dict[str, RuleConfig]:
    merged = dict(base)
    for rule_id, rule in inline.items():
        default = merged.get(rule_id)
        if default is None or rule.replace:
            merged[rule_id] = rule
            continue
        merged[rule_id] = RuleConfig(
            label=rule.label or default.label,
            keywords={**default.keywords, **rule.keywords},
            negatives={**default.negatives, **rule.negatives},
            categories=list(dict.fromkeys([*default.categories, *rule.categories])),
            threshold=rule.threshold if rule.threshold is not None else default.threshold,
        )
    return merged


def _expand_env(value: Any, path: Path, key: tuple[Any, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, path, (*key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path, (*key, i)) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{path}: {_dotted(key)}: environment variable {name} is not set "
                    f"(expected a secret in ${{{name}}})"
                )
            return os.environ[name]

        return _ENV_REF.sub(substitute, value)
    return value


def _dotted(key: tuple[Any, ...], raw: Any = None) -> str:
    """('channels', 1, 'slots', 0) -> 'channels[1] (name).slots[0]'."""
    out = ""
    node = raw
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    out += f" ({node['name']})"
            else:
                node = None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _describe(path: Path, raw: Any, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{path}: {_dotted(loc, raw)}: {message}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {
        "wechat_mp",
        "wecom_robot",
        "webhook",
        "outbox",
        "poster",
    }


def _resolve_paths(settings: Settings) -> None:
    settings.database = settings.resolve(settings.database)
    settings.templates = settings.resolve(settings.templates)
    if settings.tagging.rules_file is not None:
        settings.tagging.rules_file = settings.resolve(settings.tagging.rules_file)
    for feed in settings.feeds:
        if "://" not in feed.url:
            feed.url = str(settings.resolve(feed.url))
    for channel in settings.channels:
        if isinstance(channel, OutboxChannel | PosterChannel):
            channel.path = settings.resolve(channel.path)
    if settings.officers is not None:
        settings.officers = settings.resolve(settings.officers)
    if settings.requests is not None:
        settings.requests = settings.resolve(settings.requests)


__all__ = [
    "TOPICS",
    "Campaign",
    "ChannelConfig",
    "ConfigError",
    "FeedConfig",
    "Settings",
    "WebConfig",
    "load_settings",
    "parse_duration",
    "parse_quiet_hours",
]
