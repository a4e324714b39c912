"""Crontab weekdays read the crontab way, the same in config validation, planner and daemon."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from media_matrix.config import WebhookChannel
from media_matrix.cron import cron_trigger

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_sunday_is_0_and_7_and_weekdays_are_monday_to_friday():
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=SHANGHAI)
    for expr in ("0 8 * * 0", "0 8 * * 7", "0 8 * * sun"):
        fire = cron_trigger(expr, SHANGHAI).get_next_fire_time(None, saturday)
        assert fire == datetime(2026, 11, 29, 8, 0, tzinfo=SHANGHAI), expr
    fire = cron_trigger("0 8 * * 1-5", SHANGHAI).get_next_fire_time(None, saturday)
    assert fire.weekday() == 0  # Monday


def test_config_accepts_crontab_sunday():
    channel = WebhookChannel(
        name="c", type="webhook", url="http://127.0.0.1:1/x", secret="s", slots=["0 8 * * 7"]
    )
    assert channel.slots == ["0 8 * * 7"]
