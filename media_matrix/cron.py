"""Crontab expressions as APScheduler triggers, read the crontab way (0 and 7 = Sunday).

Shared by config validation, the planner and the daemon so all three agree on when a slot
fires: plain ``CronTrigger.from_crontab`` numbers weekdays from Monday = 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # APScheduler loads when a crontab is read, not with the config module
    from apscheduler.triggers.cron import CronTrigger


def _zone(tz: tzinfo | str) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 = Sunday


def _dow_value(token: str, expr: str) -> int:
    token = token.strip().lower()
    if token in _DOW_NAMES:
        return _DOW_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"bad day of week {token!r} in cron expression {expr!r}")


def _crontab_weekdays(dow: str, expr: str) -> str:
    """Crontab day-of-week field -> an APScheduler field of names, same days."""
    if dow in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in dow.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in day of week {part!r} of cron expression {expr!r}")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            lo, hi = base.split("-", 1)
            first, last = _dow_value(lo, expr), _dow_value(hi, expr)
            if hi.strip() == "7":
                last = 7  # "5-7" is fri..sun
            if last < first:
                raise ValueError(f"day of week range {base!r} runs backwards in {expr!r}")
        else:
            first = _dow_value(base, expr)
            last = 6 if step_text else first  # "1/2": from monday every other day
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DOW_NAMES[day] for day in sorted(days))


def cron_trigger(expr: str, tz: tzinfo | str) -> CronTrigger:
    """APScheduler CronTrigger for a 5-field crontab string, with crontab weekday numbers.

    ``0 8 * * 1-5`` fires at 08:00 Monday to Friday in ``tz`` (plain
    ``CronTrigger.from_crontab`` would pick Tuesday to Saturday).
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expr!r}: wrong number of fields; got {len(fields)}, expected 5"
            " (minute hour day month weekday)"
        )
    minute, hour, day, month, dow = fields
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_weekdays(dow, expr),
        timezone=_zone(tz),
    )


def fire_times(
    trigger: CronTrigger, start: datetime, end: datetime, *, include_end: bool = True
) -> Iterator[datetime]:
    """Fire times from ``start`` (included) to ``end`` (included unless ``include_end`` is
    false)."""
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and (fire <= end if include_end else fire < end):
        yield fire
        fire = trigger.get_next_fire_time(fire, fire)


def last_fire_before(
    trigger: CronTrigger, now: datetime, *, after: datetime, grace: float
) -> datetime | None:
    """The latest fire time in ``(after, now]`` that is at most ``grace`` seconds old."""
    start = max(after + timedelta(seconds=1), now - timedelta(seconds=grace))
    last = None
    for fire in fire_times(trigger, start.replace(microsecond=0), now):
        if fire > after:
            last = fire
    return last
