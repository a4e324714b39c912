"""Time helpers. The rules, in one place:

* Stored times have ONE format: ISO-8601 in UTC with its offset and fixed microsecond
  precision, ``2026-11-29T05:30:00.000000+00:00`` (:func:`to_iso`), so they compare correctly
  both as text and through ``julianday``.
* A naive time typed by a person (``--at``, ``--now``, web forms) is read in the config time
  zone: :func:`parse_local` is the only parser of people's times. A naive value read back from
  the store or a machine is taken as UTC (:func:`from_iso`): only rows written before this rule
  can be naive.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, tzinfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(dt: datetime | None) -> str | None:
    """Render an aware datetime as UTC ISO-8601 with offset; naive input is taken as UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(value: str | None) -> datetime | None:
    """Parse a stored or user-given ISO-8601 string; naive values are taken as UTC."""
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_local(text: str, tz: tzinfo) -> datetime:
    """An ISO-8601 time typed by a person: with an offset as given, without one in ``tz`` (the
    config time zone). Returns it in UTC; ValueError with a message fit for the CLI."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"无法识别的时间 {text!r}: 请用 ISO-8601, 例如 2024-09-10T08:00 或 "
            "2024-09-10T08:00+08:00 (bad ISO time)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def as_aware(value: datetime | str | None) -> datetime | None:
    """A datetime or ISO text, aware; naive values are taken as UTC (the store's rule)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return from_iso(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# How people see a time (CLI tables, audit notes, reports): minutes, in the config time zone.
# ``--json`` and the store keep ISO-8601 with the offset.
LOCAL_FORMAT = "%Y-%m-%d %H:%M"


def local_text(at: datetime | str | None, tz: tzinfo, fmt: str = LOCAL_FORMAT) -> str:
    """A stored time as people read it: in the config time zone; "-" when absent."""
    value = as_aware(at)
    return value.astimezone(tz).strftime(fmt) if value else "-"


def now_iso() -> str:
    return to_iso(utcnow())  # type: ignore[return-value]


# Whatever a server or config says, no retry is put off longer than this: a bound that keeps
# every timedelta built from a Retry-After finite (a year of seconds is far inside its range).
RETRY_AFTER_CEILING = 366 * 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,20}")


def parse_retry_after(
    value: str | None, now: datetime | None = None, *, cap: float = RETRY_AFTER_CEILING
) -> float | None:
    """Retry-After as seconds in [0, cap]: delta-seconds or an HTTP date.

    None when absent or unparseable: a negative, fractional, NaN or non-ASCII number, or a date
    that is no date. Huge numbers and far-future dates (year 9999) come back as ``cap``; past
    dates as 0. A stranger writes this header, so nothing here may raise.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        if not _DELTA_SECONDS.fullmatch(digits):  # more than 20 digits: far beyond any cap
            return cap_retry_after(float("inf"), cap)
        return cap_retry_after(float(int(digits)), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return cap_retry_after(max(0.0, seconds), cap)


def cap_retry_after(value: object, cap: float = RETRY_AFTER_CEILING) -> float | None:
    """A wait a remote asked for, as finite seconds in [0, min(cap, ceiling)]; None if it is
    no number (NaN, text). Used wherever a Retry-After becomes a time, so it never overflows."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if seconds != seconds:  # NaN
        return None
    limit = min(max(0.0, float(cap)), RETRY_AFTER_CEILING)
    return min(max(0.0, seconds), limit)
