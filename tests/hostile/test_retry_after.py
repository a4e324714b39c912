"""Class: a remote's Retry-After is a stranger's number. It is parsed without raising and capped
(``dispatch.max_retry_after``, default 1h), so a delivery always ends its attempt with a sane
next time: never stuck ``sending``, never parked until year 9999."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_dispatch import add_packs, queue, webhook, write_settings  # noqa: E402

from media_matrix.dispatch import dispatch_due  # noqa: E402
from media_matrix.ingest import next_fetch_delay  # noqa: E402
from media_matrix.sandbox import MediaCentreSandbox, SandboxServers  # noqa: E402
from media_matrix.store import open_store  # noqa: E402
from media_matrix.timeutil import (  # noqa: E402
    RETRY_AFTER_CEILING,
    cap_retry_after,
    from_iso,
    parse_retry_after,
)

NOW = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("99999999999999999999", RETRY_AFTER_CEILING),
        ("9" * 400, RETRY_AFTER_CEILING),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CEILING),
        ("Fri, 31 Dec 9999 23:59:59 -2359", RETRY_AFTER_CEILING),
        ("Mon, 01 Jan 2024 00:00:00 GMT", 0.0),  # in the past: at once
        ("120", 120.0),
        ("0" * 30 + "7", 7.0),
        ("-5", None),
        ("NaN", None),
        ("inf", None),
        ("1e9", None),
        ("1.5", None),
        ("²", None),  # a digit to str.isdigit, no number to float()
        ("١٢٣", None),  # Arabic-Indic digits
        ("Thu, 01 Jan 99999 00:00:00 GMT", None),
        ("Thu, 01 Jan 2020 00:00:00 +9999", None),
        ("", None),
    ],
)
def test_parse_retry_after_never_raises_and_stays_in_range(header, expected):
    assert parse_retry_after(header, NOW) == expected


def test_parse_retry_after_honours_a_smaller_cap():
    assert parse_retry_after("99999999999999999999", NOW, cap=3600) == 3600
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW, cap=60) == 60


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e30, 1e300, "7", None, True])
def test_cap_retry_after_is_finite_or_none(value):
    got = cap_retry_after(value, 3600)
    assert got is None or 0 <= got <= 3600


def test_ingest_backoff_takes_a_huge_retry_after_capped():
    assert next_fetch_delay(600, 1, retry_after=parse_retry_after("9" * 30), cap=7200) == 7200


@pytest.fixture
def centre() -> Iterator[SandboxServers]:
    servers = SandboxServers(mediacentre=MediaCentreSandbox())
    with servers:
        yield servers


@pytest.mark.parametrize(
    "header", ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "NaN", "-1"]
)
def test_hostile_retry_after_on_a_webhook_gives_a_failed_delivery_with_a_sane_retry(
    tmp_path, centre, header
):
    settings = write_settings(
        tmp_path,
        [webhook("cms", centre.mediacentre.url())],
        backoff_base=1,
        backoff_cap=10,
        max_retry_after="1h",
    )
    store = open_store(settings.database)
    (delivery_id,) = queue(store, add_packs(store, 1), "cms")
    centre.mediacentre.faults.fail_next(1, status=503, retry_after=header)
    before = datetime.now(UTC)
    report = dispatch_due(settings, store)
    assert report.retrying == 1
    row = store.get_delivery(delivery_id)
    assert row["status"] == "failed" and "503" in row["last_error"]
    wait = from_iso(row["next_attempt_at"]) - before
    assert timedelta(0) <= wait <= timedelta(hours=1, seconds=5)
    if header[0].isdigit() or header.startswith("Fri"):  # a real ask for a long wait: the cap
        assert wait >= timedelta(minutes=59)
    (attempt,) = store.attempts_of(delivery_id)
    assert attempt["outcome"] == "retry" and attempt["retry_at"] == row["next_attempt_at"]
    store.close()
