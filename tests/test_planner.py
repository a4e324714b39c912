"""Planner unit tests: pure functions, fixed clocks, no database, no network."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from media_matrix.config import Campaign, ConfigError, load_settings
from media_matrix.models import Pack
from media_matrix.planner import (
    AlreadyBooked,
    Assignment,
    Booking,
    PlanChannel,
    PlanPack,
    active_campaigns,
    cron_trigger,
    in_quiet_hours,
    matches,
    next_free_slot,
    next_slots,
    plan,
    plan_urgent,
    plan_urgent_detailed,
    slot_times,
)

SH = ZoneInfo("Asia/Shanghai")


def sh(*args: int) -> datetime:
    """A wall-clock moment in Asia/Shanghai."""
    return datetime(*args, tzinfo=SH)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def pack(pid: int, groups=("public",), topics=(), county="市级", age_hours=0, urgent=False):
    published = utc(2024, 3, 1) - timedelta(hours=age_hours)
    return PlanPack(pid, tuple(groups), tuple(topics), county, published, urgent)


def channel(name="ch", **kwargs) -> PlanChannel:
    kwargs.setdefault("slots", ("0 8 * * *",))
    return PlanChannel(name, **kwargs)


SCIENCE_DAY = Campaign.model_validate(
    {"name": "全国科普日", "from": "09-01", "to": "09-30", "topics": ["health", "frontier"]}
)
WINTER = Campaign.model_validate(
    {"name": "冬季防火", "from": "12-20", "to": "01-05", "topics": ["fire"]}
)


# --------------------------------------------------------------------------------------------
# Matching


class TestMatches:
    def test_audience_shares_a_group(self):
        farmers = channel(audience=("farmers",))
        assert matches(pack(1, groups=("farmers", "seniors")), farmers)
        assert not matches(pack(2, groups=("youth",)), farmers)

    def test_public_channel_takes_every_pack(self):
        public = channel(audience=("public", "seniors"))
        assert matches(pack(1, groups=("youth",)), public)
        assert matches(pack(2, groups=("public",)), public)
        assert matches(pack(3, groups=()), public)

    def test_public_or_untagged_pack_only_on_public_channels(self):
        keyed = channel(audience=("farmers", "workers"))
        assert not matches(pack(1, groups=("public",)), keyed)
        assert not matches(pack(2, groups=()), keyed)

    def test_city_level_pack_goes_everywhere(self):
        city = pack(1, county="市级")
        assert matches(city, channel(county="清丰县"))
        assert matches(city, channel(county="华龙区"))
        assert matches(city, channel(county="市级"))

    def test_county_pack_goes_to_its_county_and_city_channels_only(self):
        qingfeng = pack(1, county="清丰县")
        assert matches(qingfeng, channel(county="清丰县"))
        assert matches(qingfeng, channel(county="市级"))
        assert not matches(qingfeng, channel(county="南乐县"))

    def test_both_audience_and_county_must_fit(self):
        farmers_nanle = channel(county="南乐县", audience=("farmers",))
        assert not matches(pack(1, groups=("farmers",), county="清丰县"), farmers_nanle)
        assert not matches(pack(2, groups=("youth",), county="南乐县"), farmers_nanle)
        assert matches(pack(3, groups=("farmers",), county="南乐县"), farmers_nanle)


# --------------------------------------------------------------------------------------------
# Slots, cron and quiet hours


class TestSlots:
    def test_fire_times_in_config_zone_returned_aware(self):
        chan = channel(slots=("0 8,12,18 * * *",))
        got = slot_times(chan, sh(2024, 3, 1, 0, 0), sh(2024, 3, 3, 0, 0), SH)
        assert len(got) == 6
        assert got[0] == sh(2024, 3, 1, 8, 0) == utc(2024, 3, 1, 0, 0)
        assert all(t.tzinfo is not None for t in got)
        assert [t.astimezone(SH).hour for t in got] == [8, 12, 18, 8, 12, 18]

    @pytest.mark.parametrize(
        "slots",
        [
            ("0 8,12,18 * * *",),  # three a day: the first day's window holds them
            ("30 9 * * 1",),  # weekly: widened to the whole horizon
            ("0 8 1 1 *",),  # yearly: fewer than asked within eight days
            ("0 21 * * *", "0 7 * * 2,4"),  # two expressions, the first day holds one
        ],
    )
    def test_next_slots_are_the_first_of_the_whole_horizon(self, slots):
        chan = channel(slots=slots)
        for now in (sh(2024, 3, 1, 0, 0), sh(2024, 3, 1, 20, 59), sh(2024, 12, 31, 23, 0)):
            horizon = slot_times(chan, now, now + timedelta(days=8), SH)
            assert next_slots(chan, now, 3, SH) == horizon[:3]

    def test_window_is_start_inclusive_end_exclusive(self):
        chan = channel(slots=("0 8 * * *",))
        got = slot_times(chan, sh(2024, 3, 1, 8, 0), sh(2024, 3, 2, 8, 0), SH)
        assert got == [sh(2024, 3, 1, 8, 0)]

    def test_two_expressions_firing_together_make_one_slot(self):
        chan = channel(slots=("0 8 * * *", "0 8,20 * * *"))
        got = slot_times(chan, sh(2024, 3, 1), sh(2024, 3, 2), SH)
        assert got == [sh(2024, 3, 1, 8), sh(2024, 3, 1, 20)]

    def test_quiet_hours_wrapping_midnight_are_skipped(self):
        chan = channel(slots=("*/30 * * * *",), quiet_hours="22:00-07:00")
        got = slot_times(chan, sh(2024, 3, 1), sh(2024, 3, 2), SH)
        local = [t.astimezone(SH).time() for t in got]
        assert local[0] == time(7, 0)  # end of quiet hours is not quiet
        assert local[-1] == time(21, 30)  # start of quiet hours is quiet
        assert len(got) == 30  # 07:00 .. 21:30 every half hour

    def test_crontab_weekday_numbers(self):
        # 2024-03-04 is a Monday. Crontab: 1-5 = Mon..Fri, 0 and 7 = Sunday.
        week = (sh(2024, 3, 4), sh(2024, 3, 11))
        weekdays = slot_times(channel(slots=("0 8 * * 1-5",)), *week, SH)
        assert [t.date() for t in weekdays] == [date(2024, 3, d) for d in range(4, 9)]
        for expr in ("0 8 * * 0", "0 8 * * 7", "0 8 * * sun"):
            assert [t.date() for t in slot_times(channel(slots=(expr,)), *week, SH)] == [
                date(2024, 3, 10)
            ]
        weekend = slot_times(channel(slots=("0 8 * * 6-7",)), *week, SH)
        assert [t.date() for t in weekend] == [date(2024, 3, 9), date(2024, 3, 10)]
        every_other = slot_times(channel(slots=("0 8 * * */2",)), *week, SH)  # sun tue thu sat
        assert [t.weekday() for t in every_other] == [1, 3, 5, 6]

    def test_cron_trigger_bad_weekday(self):
        with pytest.raises(ValueError, match="day of week"):
            cron_trigger("0 8 * * 9", SH)

    def test_config_channel_accepted_directly(self, tmp_path: Path):
        settings = load_settings(
            write(tmp_path, CHANNEL.format(slots='["0 9,15 * * *"]', extra=""))
        )
        got = slot_times(settings.channels[0], sh(2024, 3, 1), sh(2024, 3, 2), settings.tz)
        assert got == [sh(2024, 3, 1, 9), sh(2024, 3, 1, 15)]


class TestQuietHours:
    chan = channel(quiet_hours="22:00-07:00")

    @pytest.mark.parametrize(
        ("hh", "mm", "quiet"),
        [
            (21, 59, False),
            (22, 0, True),
            (23, 59, True),
            (0, 0, True),
            (6, 59, True),
            (7, 0, False),
        ],
    )
    def test_wrapping_window(self, hh, mm, quiet):
        assert in_quiet_hours(self.chan, sh(2024, 3, 1, hh, mm), SH) is quiet

    def test_read_on_the_config_wall_clock(self):
        # 14:00 UTC is 22:00 in Shanghai: quiet there, though 14:00 is daytime in UTC
        assert in_quiet_hours(self.chan, utc(2024, 3, 1, 14, 0), SH)
        assert not in_quiet_hours(self.chan, utc(2024, 3, 1, 23, 0), SH)  # 07:00 Shanghai

    def test_daytime_window_and_none(self):
        lunch = channel(quiet_hours="12:00-13:30")
        assert in_quiet_hours(lunch, sh(2024, 3, 1, 12, 45), SH)
        assert not in_quiet_hours(lunch, sh(2024, 3, 1, 13, 30), SH)
        assert not in_quiet_hours(channel(), sh(2024, 3, 1, 3, 0), SH)

    def test_naive_moment_is_refused(self):
        with pytest.raises(ValueError, match="timezone-aware"):
            in_quiet_hours(self.chan, datetime(2024, 3, 1, 23, 0), SH)


# --------------------------------------------------------------------------------------------
# Campaigns


class TestCampaigns:
    def test_inclusive_range(self):
        assert active_campaigns([SCIENCE_DAY], sh(2024, 9, 1, 0, 0), SH) == [SCIENCE_DAY]
        assert active_campaigns([SCIENCE_DAY], sh(2024, 9, 30, 23, 59), SH) == [SCIENCE_DAY]
        assert active_campaigns([SCIENCE_DAY], sh(2024, 10, 1, 0, 0), SH) == []

    def test_range_wrapping_the_new_year(self):
        for day in (sh(2024, 12, 20), sh(2024, 12, 31, 23), sh(2025, 1, 1), sh(2025, 1, 5, 23)):
            assert active_campaigns([WINTER], day, SH) == [WINTER]
        for day in (sh(2024, 12, 19, 23), sh(2025, 1, 6), sh(2025, 6, 1)):
            assert active_campaigns([WINTER], day, SH) == []

    def test_day_is_taken_in_the_config_zone(self):
        # 16:30 UTC on 31 August is 00:30 on 1 September in Shanghai
        assert active_campaigns([SCIENCE_DAY], utc(2024, 8, 31, 16, 30), SH) == [SCIENCE_DAY]
        assert active_campaigns([SCIENCE_DAY], utc(2024, 8, 31, 15, 59), SH) == []


# --------------------------------------------------------------------------------------------
# Planning


NOW = sh(2024, 3, 1, 0, 0)  # Friday, midnight in Shanghai


def by_slot(assignments: list[Assignment]) -> dict[datetime, list[int]]:
    out: dict[datetime, list[int]] = {}
    for a in assignments:
        out.setdefault(a.slot_at.astimezone(SH), []).append(a.pack_id)
    return out


class TestPlan:
    def test_per_slot_fills_freshest_first(self):
        packs = [pack(i, age_hours=i) for i in range(1, 6)]  # 1 is the freshest
        got = plan(packs, [channel(per_slot=2)], [], now=NOW, days=2, tz=SH)
        assert by_slot(got) == {sh(2024, 3, 1, 8): [1, 2], sh(2024, 3, 2, 8): [3, 4]}
        assert all(a.slot_at.tzinfo is UTC for a in got)
        assert got[0].slot_at == utc(2024, 3, 1, 0, 0)

    def test_per_slot_counts_existing_bookings(self):
        packs = [pack(i, age_hours=i) for i in range(1, 6)]
        booked = [Booking(99, "ch", sh(2024, 3, 1, 8), "queued")]
        got = plan(packs, [channel(per_slot=2)], booked, now=NOW, days=1, tz=SH)
        assert by_slot(got) == {sh(2024, 3, 1, 8): [1]}

    def test_daily_quota_counts_existing_bookings(self):
        chan = channel(slots=("0 8,12,18 * * *",), per_slot=2, daily_quota=3)
        packs = [pack(i, age_hours=i) for i in range(1, 20)]
        # one urgent send already went out at 03:00 today (not a slot), one sits in 12:00
        booked = [
            Booking(90, "ch", sh(2024, 3, 1, 3), "delivered"),
            Booking(91, "ch", sh(2024, 3, 1, 12), "queued"),
        ]
        got = plan(packs, [chan], booked, now=NOW, days=2, tz=SH)
        slots = by_slot(got)
        assert slots[sh(2024, 3, 1, 8)] == [1]  # quota 3 - 2 booked today
        assert sh(2024, 3, 1, 12) not in slots and sh(2024, 3, 1, 18) not in slots
        assert slots[sh(2024, 3, 2, 8)] == [2, 3]
        assert slots[sh(2024, 3, 2, 12)] == [4]
        assert sum(len(v) for v in slots.values()) == 4

    def test_cancelled_bookings_free_capacity_and_allow_rebooking(self):
        packs = [pack(1), pack(2, age_hours=1)]
        booked = [Booking(1, "ch", sh(2024, 3, 1, 8), "cancelled")]
        got = plan(packs, [channel(per_slot=1, daily_quota=1)], booked, now=NOW, days=1, tz=SH)
        assert [(a.pack_id, a.slot_at) for a in got] == [(1, sh(2024, 3, 1, 8))]

    @pytest.mark.parametrize("status", ["queued", "sending", "delivered", "failed", "dead"])
    def test_never_twice_on_the_same_channel(self, status):
        packs = [pack(1), pack(2, age_hours=1)]
        booked = [Booking(1, "ch", sh(2024, 2, 1, 8), status)]  # long ago
        got = plan(packs, [channel(per_slot=5)], booked, now=NOW, days=10, tz=SH)
        assert [a.pack_id for a in got] == [2]  # and 2 only once, though 10 slots are free

    def test_each_pack_goes_to_every_matching_channel_once(self):
        packs = [pack(1, groups=("farmers",), county="清丰县"), pack(2, age_hours=1)]
        chans = [
            channel("qingfeng", county="清丰县", audience=("farmers",)),
            channel("city", county="市级", audience=("public",)),
            channel("nanle", county="南乐县", audience=("public",)),
        ]
        got = plan(packs, chans, [], now=NOW, days=3, tz=SH)
        pairs = sorted((a.channel, a.pack_id) for a in got)
        assert pairs == [("city", 1), ("city", 2), ("nanle", 2), ("qingfeng", 1)]

    def test_disabled_channels_and_urgent_packs_are_not_slotted(self):
        packs = [pack(1, urgent=True), pack(2)]
        chans = [channel("on"), channel("off", enabled=False)]
        got = plan(packs, chans, [], now=NOW, days=2, tz=SH)
        assert [(a.channel, a.pack_id) for a in got] == [("on", 2)]

    def test_slots_before_now_are_not_filled(self):
        got = plan([pack(1)], [channel()], [], now=sh(2024, 3, 1, 8, 0, 1), days=1, tz=SH)
        assert [a.slot_at for a in got] == [sh(2024, 3, 2, 8)]

    def test_quiet_hours_respected_by_plan(self):
        chan = channel(slots=("0 * * * *",), per_slot=1, quiet_hours="22:00-07:00")
        got = plan([pack(i, age_hours=i) for i in range(40)], [chan], [], now=NOW, days=1, tz=SH)
        hours = [a.slot_at.astimezone(SH).hour for a in got]
        assert hours == list(range(7, 22))

    def test_reason_names_audience_county_and_campaign(self):
        health = pack(1, groups=("farmers", "seniors"), topics=("health",), county="清丰县")
        chan = channel(county="清丰县", audience=("farmers",))
        got = plan([health], [chan], [], now=sh(2024, 9, 1), days=1, tz=SH, campaigns=[SCIENCE_DAY])
        assert got[0].reason == "受众匹配: 农民; 地区: 清丰县; 活动: 全国科普日"
        public = plan([pack(2)], [channel()], [], now=NOW, days=1, tz=SH)
        assert public[0].reason == "受众匹配: 社会公众"

    def test_reason_follows_each_pack_and_day_not_the_last_alike_one(self):
        # the planner words a reason once per kind of pack: a pack of the same groups and
        # county must still get its own campaign line, and a campaign's end its own day
        chan = channel(per_slot=2)
        health = [pack(i, topics=("health",), age_hours=i) for i in (1, 2, 3)]
        farming = pack(9, topics=("agriculture",), age_hours=0)
        got = plan([*health, farming], [chan], [], now=sh(2024, 9, 30), days=2, tz=SH,
                   campaigns=[SCIENCE_DAY])  # fmt: skip
        in_campaign = "受众匹配: 社会公众; 活动: 全国科普日"
        assert [(a.pack_id, a.reason) for a in got] == [
            (1, in_campaign),  # 09-30: the campaign's packs first
            (2, in_campaign),
            (9, "受众匹配: 社会公众"),  # 10-01: campaign over, freshest first
            (3, "受众匹配: 社会公众"),
        ]
        same_day = plan([health[0], farming], [channel(per_slot=3)], [], now=sh(2024, 9, 30),
                        days=1, tz=SH, campaigns=[SCIENCE_DAY])  # fmt: skip
        assert [(a.pack_id, a.reason) for a in same_day] == [
            (1, in_campaign),
            (9, "受众匹配: 社会公众"),
        ]
        autumn = Campaign.model_validate(
            {"name": "秋季健康月", "from": "09-30", "to": "10-31", "topics": ["health"]}
        )
        overlap = plan(health, [channel(per_slot=1)], [], now=sh(2024, 9, 30), days=2, tz=SH,
                       campaigns=[SCIENCE_DAY, autumn])  # fmt: skip
        assert [(a.pack_id, a.reason) for a in overlap] == [
            (1, "受众匹配: 社会公众; 活动: 全国科普日、秋季健康月"),
            (2, "受众匹配: 社会公众; 活动: 秋季健康月"),  # 10-01: one campaign left
        ]

    def test_naive_now_is_refused(self):
        with pytest.raises(ValueError, match="now must be timezone-aware"):
            plan([pack(1)], [channel()], [], now=datetime(2024, 3, 1), days=1, tz=SH)

    def test_output_is_deterministic_and_sorted(self):
        packs = [pack(i, age_hours=i % 3) for i in range(30)]
        chans = [channel(f"c{i}", slots=("0 8,18 * * *",), per_slot=2) for i in range(4)]
        first = plan(packs, chans, [], now=NOW, days=3, tz=SH)
        assert first == plan(list(reversed(packs)), chans, [], now=NOW, days=3, tz=SH)
        assert first == sorted(first, key=lambda a: (a.slot_at, a.channel))


class TestCampaignOrdering:
    packs = [
        pack(1, topics=("agriculture",), age_hours=1),  # freshest, no campaign
        pack(2, topics=("health",), age_hours=48),  # older, 全国科普日 topic
        pack(3, topics=("frontier",), age_hours=24),
    ]

    def test_campaign_topic_packs_come_first_then_fresher(self):
        got = plan(
            self.packs,
            [channel(per_slot=1)],
            [],
            now=sh(2024, 9, 10),
            days=3,
            tz=SH,
            campaigns=[SCIENCE_DAY],
        )
        assert [a.pack_id for a in got] == [3, 2, 1]

    def test_outside_the_campaign_freshness_alone_ranks(self):
        got = plan(
            self.packs,
            [channel(per_slot=1)],
            [],
            now=sh(2024, 10, 10),
            days=3,
            tz=SH,
            campaigns=[SCIENCE_DAY],
        )
        assert [a.pack_id for a in got] == [1, 3, 2]

    def test_campaign_starting_inside_the_window_is_judged_per_slot_day(self):
        # 08-31 is before 全国科普日: the freshest goes; from 09-01 campaign packs go first
        got = plan(
            self.packs,
            [channel(per_slot=1)],
            [],
            now=sh(2024, 8, 31),
            days=3,
            tz=SH,
            campaigns=[SCIENCE_DAY],
        )
        assert [(a.slot_at.astimezone(SH).day, a.pack_id) for a in got] == [
            (31, 1),
            (1, 3),
            (2, 2),
        ]
        assert "活动" not in got[0].reason and got[1].reason.endswith("活动: 全国科普日")


class TestTimeZones:
    def test_slot_after_shanghai_midnight_is_previous_utc_day(self):
        chan = channel(slots=("30 0 * * *",))
        got = plan([pack(1)], [chan], [], now=utc(2024, 3, 1, 12, 0), days=1, tz=SH)
        assert got[0].slot_at == utc(2024, 3, 1, 16, 30)
        assert got[0].slot_at.astimezone(SH) == sh(2024, 3, 2, 0, 30)

    def test_daily_quota_counts_shanghai_days_not_utc_days(self):
        # 23:30 and 00:30 Shanghai: the same UTC day (15:30Z, 16:30Z) but two Shanghai days
        chan = channel(slots=("30 23 * * *", "30 0 * * *"), per_slot=5, daily_quota=1)
        got = plan(
            [pack(i, age_hours=i) for i in range(5)],
            [chan],
            [],
            now=utc(2024, 3, 1, 15, 0),
            days=0.1,
            tz=SH,
        )
        assert [a.slot_at for a in got] == [utc(2024, 3, 1, 15, 30), utc(2024, 3, 1, 16, 30)]

    def test_one_shanghai_day_across_two_utc_days_shares_the_quota(self):
        # 07:30 and 08:30 Shanghai are 23:30Z and 00:30Z: two UTC days, one Shanghai day
        chan = channel(slots=("30 7,8 * * *",), per_slot=5, daily_quota=1)
        got = plan(
            [pack(i, age_hours=i) for i in range(5)],
            [chan],
            [],
            now=utc(2024, 3, 1, 23, 0),
            days=0.1,
            tz=SH,
        )
        assert [a.slot_at for a in got] == [utc(2024, 3, 1, 23, 30)]

    def test_booking_just_after_shanghai_midnight_counts_for_the_new_day(self):
        chan = channel(slots=("0 8 * * *",), per_slot=5, daily_quota=1)
        # 16:10Z on 1 March is 00:10 on 2 March in Shanghai
        booked = [Booking(99, "ch", utc(2024, 3, 1, 16, 10), "delivered")]
        got = plan([pack(1), pack(2, age_hours=1)], [chan], booked, now=NOW, days=3, tz=SH)
        assert [a.slot_at.astimezone(SH).date() for a in got] == [
            date(2024, 3, 1),
            date(2024, 3, 3),
        ]


# --------------------------------------------------------------------------------------------
# Urgent


class TestUrgent:
    chans = [
        channel("screen", county="华龙区", audience=("public",), quiet_hours="22:00-07:00"),
        channel("farm", county="清丰县", audience=("farmers",), daily_quota=2),
        channel("city", county="市级", audience=("public",), daily_quota=1),
        channel("off", county="市级", enabled=False),
        channel("youth", county="市级", audience=("youth",)),
    ]
    warning = pack(7, groups=("farmers",), topics=("weather",), urgent=True)

    def test_goes_now_to_every_matching_enabled_channel_even_in_quiet_hours(self):
        at = sh(2024, 3, 1, 23, 15)  # inside the screen's quiet hours, not a slot
        got = plan_urgent(self.warning, self.chans, [], now=at, tz=SH)
        assert [a.channel for a in got] == ["screen", "farm", "city"]
        assert all(a.slot_at == at and a.slot_at.tzinfo is UTC and a.urgent for a in got)
        assert got[1].reason.startswith("紧急: 立即发布; 受众匹配: 农民")

    def test_daily_quota_is_a_hard_cap(self):
        at = sh(2024, 3, 1, 23, 15)
        booked = [
            Booking(1, "city", sh(2024, 3, 1, 8), "delivered"),  # city quota 1: full
            Booking(2, "farm", sh(2024, 3, 1, 9), "queued"),  # farm quota 2: room for one
            Booking(3, "farm", sh(2024, 2, 29, 9), "delivered"),  # yesterday: does not count
            Booking(4, "screen", sh(2024, 3, 1, 9), "cancelled"),
        ]
        got, skipped = plan_urgent_detailed(self.warning, self.chans, booked, now=at, tz=SH)
        assert [a.channel for a in got] == ["screen", "farm"]
        assert [(s.channel, s.reason) for s in skipped] == [("city", "当日配额已满: 1")]

    def test_not_twice_on_a_channel(self):
        booked = [Booking(7, "screen", sh(2024, 3, 1, 9), "queued")]
        got, skipped = plan_urgent_detailed(
            self.warning, self.chans, booked, now=sh(2024, 3, 1, 10), tz=SH
        )
        assert "screen" not in [a.channel for a in got]
        assert skipped[0].channel == "screen" and skipped[0].reason.startswith("已排期")


# --------------------------------------------------------------------------------------------
# Next free slot


class TestNextFreeSlot:
    chan = channel(slots=("0 8,20 * * *",), per_slot=1, daily_quota=1, quiet_hours="21:00-07:00")

    def test_first_slot_with_room(self):
        assert next_free_slot(pack(1), self.chan, [], now=NOW, tz=SH) == utc(2024, 3, 1, 0, 0)

    def test_skips_full_slots_and_full_days(self):
        booked = [Booking(5, "ch", sh(2024, 3, 1, 8), "queued")]
        got = next_free_slot(pack(1), self.chan, booked, now=NOW, tz=SH)
        # 20:00 is quiet; 1 March is full by quota; 2 March 08:00 is next
        assert got == sh(2024, 3, 2, 8) and got.tzinfo is UTC

    def test_none_within_the_horizon(self):
        assert next_free_slot(pack(1), channel(slots=()), [], now=NOW, tz=SH) is None
        booked = [Booking(i, "ch", NOW + timedelta(days=i), "queued") for i in range(3)]
        got = next_free_slot(pack(9), self.chan, booked, now=NOW, tz=SH, horizon_days=3)
        assert got is None

    def test_already_booked_unless_rebooking(self):
        booked = [Booking(1, "ch", sh(2024, 3, 1, 8), "delivered")]
        with pytest.raises(AlreadyBooked, match="pack 1 is already booked on ch"):
            next_free_slot(pack(1), self.chan, booked, now=NOW, tz=SH)
        got = next_free_slot(pack(1), self.chan, booked, now=NOW, tz=SH, allow_rebook=True)
        assert got == sh(2024, 3, 2, 8)


# --------------------------------------------------------------------------------------------
# Building planner values from config and store rows


def test_values_from_models_and_rows(tmp_path: Path):
    settings = load_settings(
        write(
            tmp_path, CHANNEL.format(slots='["*/30 7-21 * * *"]', extra="quiet_hours: 22:00-07:00")
        )
    )
    chan = PlanChannel.from_config(settings.channels[0])
    assert chan.quiet_hours == (time(22, 0), time(7, 0))
    assert chan.audience == ("public", "farmers") and chan.county == "清丰县"
    row = Pack(
        id=3,
        title="t",
        url=None,
        summary="",
        status="approved",
        content_hash="h",
        published_at=None,
        fetched_at="2024-03-01T00:00:00+00:00",
        updated_at="2024-03-01T00:00:00+00:00",
        groups=["farmers"],
        county="清丰县",
    )
    plan_pack = PlanPack.from_pack(row)
    assert plan_pack.published_at == utc(2024, 3, 1) and plan_pack.groups == ("farmers",)
    booking = Booking.from_delivery(
        {"pack_id": 3, "channel": "x", "slot_at": None, "scheduled_at": "2024-03-01T08:00:00+08:00"}
    )
    assert booking.slot_at == utc(2024, 3, 1, 0, 0) and booking.status == "queued"
    assert Assignment(3, "x", utc(2024, 3, 1), "r").to_dict()["slot_at"] == (
        "2024-03-01T00:00:00+00:00"
    )


# --------------------------------------------------------------------------------------------
# Channel config validation (issue 4 item 2)

CHANNEL = """
timezone: Asia/Shanghai
channels:
  - name: qingfeng-media-centre
    type: webhook
    county: 清丰县
    audience: [public, farmers]
    url: https://cms.example/api
    secret: s
    slots: {slots}
    {extra}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return str(info.value)


class TestChannelValidation:
    def test_bad_cron_names_channel_key_and_expression(self, tmp_path: Path):
        message = config_error(
            tmp_path, CHANNEL.format(slots='["0 8 * * *", "0 25 * * *"]', extra="")
        )
        assert "config.yaml: channels[0] (qingfeng-media-centre).slots:" in message
        assert "bad cron expression '0 25 * * *' at slots[1]" in message

    def test_wrong_field_count(self, tmp_path: Path):
        message = config_error(tmp_path, CHANNEL.format(slots='["0 8 * *"]', extra=""))
        assert "channels[0] (qingfeng-media-centre).slots:" in message
        assert "got 4, expected 5 (minute hour day month weekday)" in message

    def test_unknown_group_names_channel_and_key(self, tmp_path: Path):
        text = CHANNEL.format(slots='["0 8 * * *"]', extra="").replace(
            "[public, farmers]", "[public, farmer]"
        )
        message = config_error(tmp_path, text)
        assert "channels[0] (qingfeng-media-centre).audience: unknown group id 'farmer'" in message

    def test_slot_inside_quiet_hours(self, tmp_path: Path):
        text = CHANNEL.format(
            slots='["0 9 * * *", "30 23 * * 1"]', extra="quiet_hours: 22:00-07:00"
        )
        message = config_error(tmp_path, text)
        assert (
            "channels[0] (qingfeng-media-centre): slots[1] '30 23 * * 1' fires at 23:30" in message
        )
        assert "inside quiet_hours '22:00-07:00'" in message

    def test_slot_partly_inside_quiet_hours(self, tmp_path: Path):
        text = CHANNEL.format(slots='["*/30 6-21 * * *"]', extra="quiet_hours: 22:00-07:00")
        message = config_error(tmp_path, text)
        assert "slots[0] '*/30 6-21 * * *' fires at 06:00" in message

    def test_slots_outside_quiet_hours_load(self, tmp_path: Path):
        text = CHANNEL.format(slots='["*/30 7-21 * * *"]', extra="quiet_hours: 22:00-07:00")
        assert load_settings(write(tmp_path, text)).channels[0].quiet_hours == "22:00-07:00"

    def test_empty_and_malformed_quiet_hours(self, tmp_path: Path):
        message = config_error(
            tmp_path, CHANNEL.format(slots='["0 9 * * *"]', extra="quiet_hours: 07:00-07:00")
        )
        assert "channels[0] (qingfeng-media-centre).quiet_hours:" in message
        assert "start and end at the same time" in message
        message = config_error(
            tmp_path, CHANNEL.format(slots='["0 9 * * *"]', extra="quiet_hours: nights")
        )
        assert "quiet_hours: expected HH:MM-HH:MM, got 'nights'" in message
