"""Dissemination statistics: metrics, aggregation and every export format, on a real SQLite
database; the CLI through a subprocess; the datacube pull over real HTTP against the sandbox;
the HTML page rendered by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml

from media_matrix import stats
from media_matrix.adapters.wechat_mp import WechatMpAdapter
from media_matrix.config import load_settings
from media_matrix.flow import pull_stats
from media_matrix.models import Item, PackStatus, Tag
from media_matrix.render import DEFAULT_COVER
from media_matrix.sandbox import SandboxServers, WechatSandbox
from media_matrix.stats.core import day_start_utc
from media_matrix.store import Store, open_store
from media_matrix.timeutil import to_iso

AT = "2024-04-01T00:00:00+00:00"
APPID, SECRET = "wx-sandbox-appid", "sandbox-secret"
STATUSES = ("queued", "sending", "submitted", "delivered", "failed", "dead", "unknown", "cancelled")
MAY = ("2024-05-01", "2024-05-31")


# -- building a database ------------------------------------------------------------------------


def write_config(root: Path, api_base: str = "http://127.0.0.1:9") -> Path:
    cfg = {
        "timezone": "Asia/Shanghai",
        "database": "var/mm.db",
        "counties": {"华龙区": 720000, "清丰县": 650000, "濮阳县": 1050000},
        "channels": [
            {
                "name": "puyang-wechat",
                "type": "wechat_mp",
                "county": "市级",
                "reach": 50000,
                "appid": APPID,
                "secret": SECRET,
                "api_base": api_base,
            },
            {
                "name": "qingfeng-cms",
                "type": "webhook",
                "county": "清丰县",
                "reach": 30000,
                "url": "http://127.0.0.1:9/cms",
                "secret": "s",
            },
            {
                "name": "hualong-screen",
                "type": "outbox",
                "county": "华龙区",
                "reach": 800,
                "path": "var/outbox",
                "passers_per_play": 20,
                "play_seconds": 15,
                "window": "08:00-20:00",
                "play_days": 7,
            },
            {
                "name": "puyang-robot",
                "type": "wecom_robot",
                "county": "濮阳县",
                "reach": 2000,
                "webhook_url": "http://127.0.0.1:9/robot",
            },
        ],
        "campaigns": [
            {
                "name": "防灾减灾日",
                "from": "05-10",
                "to": "05-16",
                "topics": ["disaster", "weather"],
            },
            {"name": "科技活动周", "from": "05-18", "to": "05-25", "topics": ["frontier"]},
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def add_pack(store: Store, n: int, groups: list[str], topics: list[str]) -> int:
    item = Item(guid=f"g{n}", title=f"科普内容{n}", content_hash=f"h{n}")
    pack_id = store.insert_pack("test", item, at=AT, status=PackStatus.APPROVED)
    tags = [Tag("group", g, 1.0, "test") for g in groups]
    tags += [Tag("topic", t, 1.0, "test") for t in topics]
    store.replace_rule_tags(pack_id, tags, at=AT)
    return pack_id


def add_delivery(
    store: Store,
    pack_id: int,
    channel: str,
    scheduled_at: str,
    status: str,
    *,
    remote_state: dict[str, Any] | None = None,
    url: str | None = None,
) -> int:
    delivery_id = store.queue_delivery(pack_id, channel, scheduled_at=scheduled_at, resend=True)
    path = {"cancelled": [], "dead": ["sending"], "unknown": ["sending"], "queued": []}
    for step in path.get(status, ["sending"]):  # through the state machine, like a sender
        store.execute("UPDATE deliveries SET status = ? WHERE id = ?", (step, delivery_id))
    store.execute(
        "UPDATE deliveries SET status = ?, delivered_at = ?, remote_state = ?, url = ?"
        " WHERE id = ?",
        (
            status,
            scheduled_at if status == "delivered" else None,
            json.dumps(remote_state or {}),
            url,
            delivery_id,
        ),
    )
    return delivery_id


PACKS = [  # (groups, topics)
    (["youth", "farmers"], ["disaster"]),
    (["seniors"], ["health", "weather"]),
    ([], []),
    (["youth"], ["frontier"]),
    (["workers", "officials", "public"], ["safety", "fire"]),
]
CHANNELS = ["puyang-wechat", "qingfeng-cms", "hualong-screen", "puyang-robot"]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Any, Store]:
    config = write_config(tmp_path)
    settings = load_settings(config)
    store = open_store(settings.database)
    yield config, settings, store
    store.close()


@pytest.fixture
def populated(project: tuple[Path, Any, Store]) -> dict[str, Any]:
    """Deliveries of every status over April-June 2024 (edges around Beijing midnight), with
    estimates for the delivered ones and measured WeChat reads for some of them."""
    config, settings, store = project
    packs = [add_pack(store, i, g, t) for i, (g, t) in enumerate(PACKS)]
    ids: list[int] = []
    start = datetime(2024, 4, 25, 15, 30, tzinfo=UTC)  # 23:30 in Beijing
    for day in range(0, 60, 2):
        for c, channel in enumerate(CHANNELS):
            pack = packs[(day + c) % len(packs)]
            when = start + timedelta(days=day, minutes=45 * c)
            status = STATUSES[(day // 2 + 3 * c) % len(STATUSES)]
            ids.append(add_delivery(store, pack, channel, to_iso(when), status))
    stats.estimate(settings, store)
    wechat = [r["id"] for r in store.list_deliveries(channel="puyang-wechat", status="delivered")]
    measured = wechat[::2]
    for k, delivery_id in enumerate(measured):
        store.upsert_metrics(
            [
                (delivery_id, "2024-05-02", 100 + k, 3, 0, "measured", AT),
                (delivery_id, "2024-05-03", 40, 1, 0, "measured", AT),
            ]
        )
    return {"config": config, "settings": settings, "store": store, "measured": measured}


def log_counts(store: Store, settings: Any, first: str, last: str) -> dict[str, int]:
    """What the delivery log says for the range (local days in the config time zone)."""
    lo = to_iso(day_start_utc(date.fromisoformat(first), settings.tz))
    hi = to_iso(day_start_utc(date.fromisoformat(last) + timedelta(days=1), settings.tz))
    rows = store.list_deliveries(since=lo, until=hi)
    statuses = Counter(r["status"] for r in rows)
    return {
        "deliveries": len(rows),
        "delivered": statuses["delivered"],
        "failed": statuses["failed"] + statuses["dead"],
        "ids": [r["id"] for r in rows],  # type: ignore[dict-item]
    }


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def expected_volume(store: Store, ids: list[int]) -> tuple[int, int, int]:
    """Volume of these deliveries computed the slow way, one delivery at a time."""
    volume = estimated = reads = 0
    for delivery_id in ids:
        rows = store.metrics_of(delivery_id)
        m = [r for r in rows if r["source"] == "measured"]
        e = sum(r["impressions"] for r in rows if r["source"] == "estimated")
        estimated += e
        reads += sum(r["reads"] for r in m)
        volume += sum(r["reads"] for r in m) if m else e
    return volume, estimated, reads


# -- totals in every format ---------------------------------------------------------------------


def test_totals_in_every_format_equal_the_delivery_log(populated: dict[str, Any], tmp_path):
    config, settings, store = populated["config"], populated["settings"], populated["store"]
    log = log_counts(store, settings, *MAY)
    volume, estimated, reads = expected_volume(store, log["ids"])
    assert log["deliveries"] > 20 and log["delivered"] and log["failed"]
    first, last = MAY
    want = {
        "deliveries": log["deliveries"],
        "delivered": log["delivered"],
        "failed": log["failed"],
        "estimated_reach": estimated,
        "measured_reads": reads,
        "volume": volume,
    }

    # CSV to stdout, by county (a partition: rows add up to the total)
    out = run_cli(config, "stats", "export", "--from", first, "--to", last, "--by", "county")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["county", *stats.FIELDS]
    for name, value in want.items():
        assert sum(int(r[name]) for r in rows) == value, name

    # JSON to stdout: rows per county x month, plus the total
    out = run_cli(
        config, "stats", "export", "--from", first, "--to", last, "--by", "county,month",
        "--format", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)  # one array, a row per county x month
    for name, value in want.items():
        assert sum(r[name] for r in rows) == value, name
    assert set(rows[0]) == {"county", "month", *stats.FIELDS}
    summary = run_cli(config, "stats", "summary", "--from", first, "--to", last, "--json")
    data = json.loads(summary.stdout)
    for name, value in want.items():
        assert data["total"][name] == value, name
    assert sum(data["by_status"].values()) == log["deliveries"]

    # XLSX: the summary sheet's totals and the county sheet's rows
    xlsx = tmp_path / "may.xlsx"
    out = run_cli(
        config, "stats", "export", "--from", first, "--to", last, "--by", "county,group",
        "--format", "xlsx", "-o", str(xlsx),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    book = openpyxl.load_workbook(xlsx)
    summary = {
        row[0]: row[1] for row in book["汇总"].iter_rows(min_row=6, max_row=13, values_only=True)
    }
    labels = stats.FIELD_LABELS
    for name, value in want.items():
        assert summary[labels[name]] == value, name
    county_rows = list(book["按区县"].iter_rows(min_row=2, values_only=True))
    assert sum(r[1] for r in county_rows) == log["deliveries"]
    assert sum(r[7] for r in county_rows) == volume

    # HTML: the headline cards
    page = tmp_path / "may.html"
    out = run_cli(
        config, "stats", "export", "--from", first, "--to", last, "--by", "county,group",
        "--format", "html", "-o", str(page),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    html = page.read_text(encoding="utf-8")
    for label, name in (("传播量", "volume"), ("投放数", "deliveries"), ("已送达", "delivered")):
        assert f'<div class="label">{label}</div><div class="value">{want[name]:,}</div>' in html


def test_group_topic_and_campaign_rows_overlap_but_the_total_does_not(populated):
    settings, store = populated["settings"], populated["store"]
    query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), ("group",))
    stream = stats.RowStream(settings, store, query)
    rows = list(stream)
    log = log_counts(store, settings, *MAY)
    by_pack = Counter(r["pack_id"] for r in store.list_deliveries() if r["id"] in log["ids"])
    for row in rows:  # each group counts the deliveries of every pack carrying it
        packs = [
            p.id
            for p in store.list_packs()
            if (row["group"] in p.groups) or (row["group"] is None and not p.groups)
        ]
        assert row["deliveries"] == sum(by_pack[p] for p in packs)
    assert sum(r["deliveries"] for r in rows) > log["deliveries"]
    assert stream.total["deliveries"] == log["deliveries"]
    assert [r["group"] for r in rows] == sorted(
        [r["group"] for r in rows], key=lambda g: (g is None, g or "")
    )

    campaigns = stats.build_report(
        settings, store, stats.Query(query.start, query.end, ("campaign",))
    )
    names = {r["campaign"]: r["deliveries"] for r in campaigns.breakdowns["campaign"]}
    assert set(names) <= {"防灾减灾日", "科技活动周", None}
    assert names["防灾减灾日"] and names[None]
    # the campaign's deliveries: local day 05-10..05-16 and a pack with disaster or weather
    expected = 0
    for r in store.list_deliveries():
        local = datetime.fromisoformat(r["scheduled_at"]).astimezone(settings.tz).date()
        pack = store.get_pack(r["pack_id"])
        if date(2024, 5, 10) <= local <= date(2024, 5, 16) and {"disaster", "weather"} & set(
            pack.topics
        ):
            expected += 1
    assert names["防灾减灾日"] == expected


def test_local_days_weeks_and_months_follow_the_config_time_zone(populated):
    settings, store = populated["settings"], populated["store"]
    report = stats.build_report(
        settings, store, stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("day", "week", "month"))
    )
    days = Counter()
    for r in store.list_deliveries():
        local = datetime.fromisoformat(r["scheduled_at"]).astimezone(settings.tz).date()
        days[local.isoformat()] += 1
    assert {r["day"]: r["deliveries"] for r in report.breakdowns["day"]} == dict(days)
    months = Counter()
    for day, n in days.items():
        months[day[:7]] += n
    assert {r["month"]: r["deliveries"] for r in report.breakdowns["month"]} == dict(months)
    weeks = Counter()
    for day, n in days.items():
        year, week, _ = date.fromisoformat(day).isocalendar()
        weeks[f"{year}-W{week:02d}"] += n
    assert {r["week"]: r["deliveries"] for r in report.breakdowns["week"]} == dict(weeks)


# -- measured over estimated --------------------------------------------------------------------


def test_measured_figures_override_estimates_and_are_labelled(populated):
    settings, store = populated["settings"], populated["store"]
    measured = populated["measured"]
    query = stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("channel",))
    rows = {r["channel"]: r for r in stats.RowStream(settings, store, query)}
    wechat = rows["puyang-wechat"]
    delivered = wechat["delivered"]
    assert 0 < len(measured) < delivered
    # estimates stay visible, volume takes the measured reads where there are any
    assert wechat["estimated_reach"] == delivered * 50000
    reads = sum(100 + k + 40 for k in range(len(measured)))
    assert wechat["measured_reads"] == reads
    assert wechat["measured_shares"] == 4 * len(measured)
    assert wechat["volume"] == reads + (delivered - len(measured)) * 50000
    assert wechat["volume_source"] == "mixed"
    assert rows["qingfeng-cms"]["volume_source"] == "estimated"
    assert rows["qingfeng-cms"]["volume"] == rows["qingfeng-cms"]["delivered"] * 30000

    # measure the rest too: the channel becomes purely measured
    others = [
        r["id"]
        for r in store.list_deliveries(channel="puyang-wechat", status="delivered")
        if r["id"] not in measured
    ]
    store.upsert_metrics([(i, "2024-05-04", 7, 0, 0, "measured", AT) for i in others])
    row = next(
        r for r in stats.RowStream(settings, store, query) if r["channel"] == "puyang-wechat"
    )
    assert row["volume_source"] == "measured"
    assert row["volume"] == reads + 7 * len(others)
    assert row["estimated_reach"] == delivered * 50000
    single = stats.build_report(
        settings, store, stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("channel",))
    )
    labelled = {r["channel"]: r["volume_source"] for r in single.breakdowns["channel"]}
    assert labelled["puyang-wechat"] == "measured"


def test_estimates_use_reach_and_screen_plays(project):
    config, settings, store = project
    pack = add_pack(store, 1, ["public"], ["health"])
    screen = settings.channel("hualong-screen")
    first = add_delivery(store, pack, "hualong-screen", "2024-05-06T02:00:00+00:00", "delivered")
    second = add_delivery(store, pack, "hualong-screen", "2024-05-08T02:00:00+00:00", "delivered")
    web = add_delivery(store, pack, "qingfeng-cms", "2024-05-08T02:00:00+00:00", "delivered")
    failed = add_delivery(store, pack, "qingfeng-cms", "2024-05-09T02:00:00+00:00", "failed")
    assert stats.estimate(settings, store) == 3
    plays = 12 * 3600 // 15  # the 08:00-20:00 window, 15 s per play
    assert store.metrics_of(first)[0]["impressions"] == 7 * plays * 20
    # the second entry shares the playlist with the first: half the plays
    assert store.metrics_of(second)[0]["impressions"] == 7 * (plays // 2) * 20
    assert store.metrics_of(second)[0]["day"] == "2024-05-08"
    assert store.metrics_of(web) == [
        {"day": "2024-05-08", "reads": 0, "shares": 0, "impressions": 30000, "source": "estimated"}
    ]
    assert store.metrics_of(failed) == []
    assert stats.estimate(settings, store) == 2  # screens rewrite, flat rows already hold it
    assert len(store.metrics_of(web)) == 1
    weekdays_only = screen.model_copy(update={"weekdays": [1, 2, 3, 4, 5]})
    start = datetime(2024, 5, 6, 10, tzinfo=settings.tz)  # a Monday
    assert stats.screen_impressions(weekdays_only, start, 1) == 5 * plays * 20


# -- empty range, bad input ---------------------------------------------------------------------


def test_an_empty_range_gives_a_valid_empty_report(populated, tmp_path):
    config = populated["config"]
    args = ("stats", "export", "--from", "2023-01-01", "--to", "2023-01-31", "--by")
    out = run_cli(config, *args, "county,group")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [",".join(["county", "group", *stats.FIELDS])]
    out = run_cli(config, *args, "county,group", "--format", "json")
    assert json.loads(out.stdout) == []
    xlsx = tmp_path / "empty.xlsx"
    out = run_cli(config, *args, "county,month", "--format", "xlsx", "-o", str(xlsx))
    assert out.returncode == 0, out.stderr
    book = openpyxl.load_workbook(xlsx)
    assert book.sheetnames == ["汇总", "按区县", "按月", "明细", "信息员传播排行", "点单统计"]
    assert book["按区县"].max_row == 1  # the header only
    page = tmp_path / "empty.html"
    out = run_cli(config, *args, "month", "--format", "html", "-o", str(page))
    assert out.returncode == 0, out.stderr
    assert "本区间没有投放记录" in page.read_text(encoding="utf-8")
    out = run_cli(
        config, "stats", "summary", "--from", "2023-01-01", "--to", "2023-01-31", "--json"
    )
    assert json.loads(out.stdout)["total"]["deliveries"] == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--from", "2024-13-01", "--to", "2024-12-31"), ["2024-13-01", "--from"]),
        (("--from", "2024-01-01", "--to", "31/12/2024"), ["31/12/2024", "--to"]),
        (("--from", "2024-02-01", "--to", "2024-01-01"), ["--from", "--to"]),
        (("--from", "2024-01-01", "--to", "2024-01-31", "--by", "county,region"), ["region"]),
        (("--from", "2024-01-01", "--to", "2024-01-31", "--format", "pdf"), ["pdf"]),
    ],
)
def test_bad_date_or_unknown_dimension_exits_2_naming_it(project, args, named):
    config = project[0]
    out = run_cli(config, "stats", "export", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    for word in named:
        assert word in out.stderr
    assert out.stdout == ""


def test_summary_cli(populated):
    config, settings, store = populated["config"], populated["settings"], populated["store"]
    out = run_cli(config, "stats", "summary", "--from", MAY[0], "--to", MAY[1], "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    log = log_counts(store, settings, *MAY)
    assert data["total"]["deliveries"] == log["deliveries"]
    assert {c["county"] for c in data["coverage"]} == {"华龙区", "清丰县", "濮阳县", "市级"}
    qingfeng = next(c for c in data["coverage"] if c["county"] == "清丰县")
    assert qingfeng["coverage"] == round(30000 / 650000, 4) and qingfeng["estimate"] is True
    city = next(c for c in data["coverage"] if c["county"] == "市级")
    assert city["population"] == 720000 + 650000 + 1050000
    assert sum(r["deliveries"] for r in data["by_county"]) == log["deliveries"]
    out = run_cli(config, "stats", "summary", "--from", MAY[0], "--to", MAY[1])
    assert out.returncode == 0 and "传播量" in out.stdout and "覆盖率" in out.stdout
    out = run_cli(config, "stats", "summary", "--from", "May")
    assert out.returncode == 2 and "May" in out.stderr


def test_xlsx_and_html_need_no_output_name(populated, tmp_path):
    config = populated["config"]
    args = ("stats", "export", "--from", MAY[0], "--to", MAY[1], "--by", "group", "--format")
    out = subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args, "xlsx"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    name = "stats_2024-05-01_2024-05-31_group.xlsx"
    assert (tmp_path / name).is_file() and name in out.stderr


# -- XLSX structure -----------------------------------------------------------------------------


def test_xlsx_has_its_sheets_frozen_headers_formats_and_native_charts(populated, tmp_path):
    settings, store = populated["settings"], populated["store"]
    query = stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("county", "group", "month"))
    path = stats.write_xlsx(stats.build_report(settings, store, query), tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == [
        "汇总",
        "按区县",
        "按重点人群",
        "按月",
        "明细",
        "信息员传播排行",
        "点单统计",
    ]
    county = book["按区县"]
    assert [c.value for c in county[1]] == ["区县", *(stats.FIELD_LABELS[f] for f in stats.FIELDS)]
    assert county.freeze_panes == "B2"
    assert book["明细"].freeze_panes == "D2"
    assert county["B2"].number_format == "#,##0"
    groups = [row[0] for row in book["按重点人群"].iter_rows(min_row=2, values_only=True)]
    assert "青少年" in groups and "（未标注人群）" in groups
    sources = {row[-1] for row in county.iter_rows(min_row=2, values_only=True)}
    assert sources <= {"实测", "估算", "混合(实测+估算)"} and "混合(实测+估算)" in sources
    # openpyxl reads charts back; the parts are in the package too (native, no images)
    assert len(book["汇总"]._charts) == 2
    for name in ("按区县", "按重点人群", "按月"):
        assert len(book[name]._charts) == 1, name
    with zipfile.ZipFile(path) as package:
        names = package.namelist()
    charts = [n for n in names if n.startswith("xl/charts/chart") and n.endswith(".xml")]
    assert len(charts) == 5
    assert not [n for n in names if n.startswith("xl/media/")]
    with zipfile.ZipFile(path) as package:
        chart_xml = package.read(charts[0]).decode("utf-8")
    assert "<c:barChart>" in chart_xml or "<c:lineChart>" in chart_xml


# -- HTML in a real browser ---------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_html_report_renders_in_headless_chromium(populated, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    settings, store = populated["settings"], populated["store"]
    query = stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("county", "topic", "week"))
    page = stats.write_html(stats.build_report(settings, store, query), tmp_path / "report.html")
    html = page.read_text(encoding="utf-8")
    for outside in ("<script", "src=", "href=", "url(", "@import", "http://", "https://"):
        assert outside not in html  # self-contained
    assert html.count("<svg") == 5  # statuses, coverage, county, topic, week
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    out = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 2000)
    assert len(data) > 20_000  # text, tables and charts, not a blank page
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=180
    )
    rendered = dom.stdout.decode("utf-8")
    assert "科普资源传播量统计报告" in rendered and "<rect" in rendered
    keep = os.environ.get("MM_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "stats_report.png")
    print(f"screenshot: {shot}")


# -- datacube over real HTTP --------------------------------------------------------------------


def _publish(adapter: WechatMpAdapter, titles: list[str]) -> dict[str, Any]:
    thumb, _ = adapter.call(
        "cgi-bin/material/add_material",
        params={"type": "image"},
        files={"media": ("cover.png", DEFAULT_COVER.read_bytes(), "image/png")},
    )
    articles = [
        {"title": t, "content": f"<p>{t}</p>", "thumb_media_id": thumb["media_id"]} for t in titles
    ]
    draft, _ = adapter.call("cgi-bin/draft/add", body={"articles": articles})
    sub, _ = adapter.call("cgi-bin/freepublish/submit", body={"media_id": draft["media_id"]})
    got, _ = adapter.call("cgi-bin/freepublish/get", body={"publish_id": sub["publish_id"]})
    assert got["publish_status"] == 0
    urls = [i["article_url"] for i in got["article_detail"]["item"]]
    return {"msg_data_id": sub["msg_data_id"], "publish_id": sub["publish_id"], "urls": urls}


@pytest.mark.parametrize("endpoint", [stats.TOTAL_DETAIL, stats.SUMMARY])
def test_pull_reads_datacube_over_http_up_to_yesterday(tmp_path, endpoint):
    wechat = WechatSandbox(publish_polls=0, followers=20000)
    with SandboxServers(wechat=wechat) as sb:
        config = write_config(tmp_path, api_base=sb.urls["wechat"])
        settings = load_settings(config)
        store = open_store(settings.database)
        channel = settings.channel("puyang-wechat")
        adapter = WechatMpAdapter(channel)
        published = _publish(adapter, ["流感防护", "防灾减灾"])
        day = wechat.today()
        pack_a = add_pack(store, 1, ["seniors"], ["health"])
        pack_b = add_pack(store, 2, ["public"], ["disaster"])
        sent_at = to_iso(datetime.fromtimestamp(wechat.now(), UTC))
        a = add_delivery(store, pack_a, "puyang-wechat", sent_at, "delivered")
        b = add_delivery(store, pack_b, "puyang-wechat", sent_at, "delivered")
        uids = [store.get_delivery(i)["uid"] for i in (a, b)]
        state = {"mode": "publish", "uids": uids, **published}
        for i, delivery_id in enumerate((a, b)):
            store.execute(
                "UPDATE deliveries SET remote_state = ?, url = ? WHERE id = ?",
                (json.dumps(state), published["urls"][i], delivery_id),
            )
        unrelated = add_pack(store, 3, [], [])
        add_delivery(store, unrelated, "puyang-wechat", sent_at, "failed")
        # what dispatch writes when a delivery becomes delivered (these were written by hand)
        assert stats.estimate(settings, store) == 2

        # nothing is over yet: the pull asks for nothing later than yesterday
        now = datetime.fromtimestamp(wechat.now(), UTC)
        first = pull_stats(settings, store, days=3, now=now, endpoint=endpoint)
        assert first["errors"] == [] and first["end_date"] == str(day - timedelta(days=1))
        assert first["measured_rows"] == 0

        wechat.advance(3 * 86400)  # three days later (tokens expired meanwhile)
        now = datetime.fromtimestamp(wechat.now(), UTC)
        result = pull_stats(settings, store, days=7, now=now, endpoint=endpoint)
        assert result["errors"] == [], result
        assert result["end_date"] == str(day + timedelta(days=2))
        assert result["unmatched"] == 0
        calls = 1 if endpoint == stats.TOTAL_DETAIL else 7
        assert result["calls"] == calls
        for idx, delivery_id in enumerate((a, b), 1):
            msgid = f"{published['msg_data_id']}_{idx}"
            rows = [r for r in store.metrics_of(delivery_id) if r["source"] == "measured"]
            assert [r["day"] for r in rows] == [str(day + timedelta(days=k)) for k in range(3)]
            assert [r["reads"] for r in rows] == [
                wechat._reads(msgid, age)["users"] for age in range(3)
            ]
            estimated = [r for r in store.metrics_of(delivery_id) if r["source"] == "estimated"]
            assert estimated and estimated[0]["impressions"] == 50000
        # again: the same rows, not more
        again = pull_stats(settings, store, days=7, now=now, endpoint=endpoint)
        assert again["measured_rows"] == result["measured_rows"] == 6
        total = len(store.metrics_of(a)) + len(store.metrics_of(b))
        assert total == 8
        report = stats.build_report(settings, store, stats.Query(None, None, ("channel",)))
        row = report.breakdowns["channel"][0]
        assert row["volume_source"] == "measured"
        assert row["volume"] == sum(
            wechat._reads(f"{published['msg_data_id']}_{i}", age)["users"]
            for i in (1, 2)
            for age in range(3)
        )
        store.close()


def test_pull_cli_reports_an_unreachable_account_and_exits_1(populated):
    store = populated["store"]
    recent = to_iso(datetime.now(UTC) - timedelta(days=2))
    pack = add_pack(store, 99, ["youth"], ["health"])
    state = {"msg_data_id": "77", "uids": []}
    add_delivery(store, pack, "puyang-wechat", recent, "delivered", remote_state=state)
    out = run_cli(populated["config"], "stats", "pull", "--days", "2", "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["errors"] and data["errors"][0]["appid"] == APPID
    assert data["estimated_rows"] >= 0


def test_datacube_requests_respect_the_day_span():
    chunks = list(stats.date_chunks(date(2024, 5, 1), date(2024, 5, 7), 3))
    assert chunks == [
        (date(2024, 5, 1), date(2024, 5, 3)),
        (date(2024, 5, 4), date(2024, 5, 6)),
        (date(2024, 5, 7), date(2024, 5, 7)),
    ]
    assert all(span == 1 for span in stats.DAY_SPAN.values())
    item = {
        "msgid": "1_1",
        "detail_list": [
            {"stat_date": "2024-05-02", "read_user": 150, "share_user": 4},
            {"stat_date": "2024-05-01", "read_user": 100, "share_user": 3},
            {"stat_date": "2024-05-03", "read_user": 170, "share_user": 4},
        ],
    }
    assert stats.totaldetail_rows(item, date(2024, 5, 2)) == [
        ("2024-05-01", 100, 3),
        ("2024-05-02", 50, 1),
    ]


# -- large exports --------------------------------------------------------------------------------


def test_too_many_combinations_are_streamed_and_excel_rows_capped(populated, tmp_path, monkeypatch):
    from media_matrix.stats import core, exporters

    settings, store = populated["settings"], populated["store"]
    query = stats.Query(date(2024, 4, 1), date(2024, 6, 30), ("county", "group", "month"))
    held = stats.build_report(settings, store, query)
    monkeypatch.setattr(core, "COMBINED_LIMIT", 5)
    streamed = stats.build_report(settings, store, query)
    assert held.combined and streamed.combined is None
    assert list(streamed.combined_rows()) == held.combined == list(stats.RowStream(
        settings, store, query
    ))  # fmt: skip
    assert streamed.breakdowns == held.breakdowns and streamed.total == held.total
    path = stats.write_xlsx(streamed, tmp_path / "streamed.xlsx")
    detail = list(openpyxl.load_workbook(path)["明细"].iter_rows(min_row=2, values_only=True))
    assert len(detail) == len(held.combined)
    assert sum(r[3] for r in detail) == sum(r["deliveries"] for r in held.combined)

    monkeypatch.setattr(exporters, "EXCEL_ROWS", 4)
    path = stats.write_xlsx(held, tmp_path / "cut.xlsx")
    book = openpyxl.load_workbook(path)
    assert book["明细"].max_row == 4
    assert "完整明细请导出 CSV" in book["汇总"]["A4"].value

    monkeypatch.setattr(exporters, "HTML_ROWS", 3)
    html = exporters.render_html(streamed, settings)
    assert f"另有 {len(held.combined) - 3} 行未显示" in html


def test_progress_on_stderr_when_asked(populated):
    config = populated["config"]
    args = ("stats", "export", "--from", MAY[0], "--to", MAY[1], "--by", "county,group")
    out = run_cli(config, *args, "--progress")
    assert out.returncode == 0 and "汇总查询中" in out.stderr
    assert out.stdout.startswith("county,group,")
    quiet = run_cli(config, *args)  # not a terminal: no progress unless asked
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == out.stdout


def test_group_and_topic_rows_follow_every_tag_change(project: tuple[Path, Any, Store]) -> None:
    """The per-pack tag lists the aggregation groups by (kept by triggers) follow rule
    re-tagging, an editor's removal and an editor's addition, and a pack without tags."""
    _, settings, store = project
    tagged = add_pack(store, 1, ["youth", "farmers"], ["water"])
    bare = add_pack(store, 2, [], [])
    for pack_id in (tagged, bare):
        add_delivery(store, pack_id, CHANNELS[0], "2024-05-10T02:00:00+00:00", "delivered")
    query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), ("group", "topic"))

    def rows() -> set[tuple[Any, Any]]:
        return {(r["group"], r["topic"]) for r in stats.RowStream(settings, store, query)}

    assert rows() == {("farmers", "water"), ("youth", "water"), (None, None)}
    store.replace_rule_tags(tagged, [Tag("group", "seniors", 1.0, "t")], at=AT)  # rules again
    assert rows() == {("seniors", None), (None, None)}
    store.set_editor_tag(tagged, "group", "seniors", removed=True, who="ed", at=AT)
    store.set_editor_tag(tagged, "topic", "health", removed=False, who="ed", at=AT)
    store.set_editor_tag(bare, "group", "workers", removed=False, who="ed", at=AT)
    assert rows() == {(None, "health"), ("workers", None)}


def test_figures_follow_metric_rows_added_and_replaced(project: tuple[Path, Any, Store]) -> None:
    """A delivery's figures (kept per delivery by triggers on metrics) follow new rows and
    rows replaced by a later fetch: estimate first, then measured reads that grow."""
    _, settings, store = project
    pack = add_pack(store, 1, ["youth"], ["water"])
    delivery = add_delivery(store, pack, CHANNELS[0], "2024-05-10T02:00:00+00:00", "delivered")
    query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), ())

    def total() -> tuple[int, str]:
        report = stats.build_report(settings, store, query)
        return report.total["volume"], report.total["volume_source"]

    at = "2024-05-11T00:00:00+00:00"
    store.upsert_metrics([(delivery, "2024-05-10", 0, 0, 900, "estimated", at)])
    assert total() == (900, "estimated")
    store.upsert_metrics([(delivery, "2024-05-10", 40, 2, 0, "measured", at)])
    store.upsert_metrics([(delivery, "2024-05-11", 10, 0, 0, "measured", at)])
    assert total() == (50, "measured")
    store.upsert_metrics([(delivery, "2024-05-11", 25, 1, 0, "measured", at)])  # re-fetched
    assert total() == (65, "measured")
