"""Measured clicks and unique visitors in every statistics output, and the officer ranking."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from media_matrix import stats
from media_matrix.links import new_code
from media_matrix.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from test_dispatch import add_packs, outbox, queue, webhook  # noqa: E402
from test_public import write_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RANGE = ("--from", "2026-01-01", "--to", "2026-01-31")


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture
def clicked(tmp_path):
    settings = write_config(
        tmp_path,
        [webhook("cms", "https://cms.example.cn/api"), outbox("screen", tmp_path / "screen")],
    )
    store = open_store(settings.database)
    packs = add_packs(store, 2)
    cms = queue(store, packs, "cms")
    (screen,) = queue(store, packs[:1], "screen")
    link = {
        d: store.query_one(
            "SELECT id FROM links WHERE code = ?", (store.delivery_link(d, new_code),)
        )["id"]
        for d in [*cms, screen]
    }
    store.record_hits(
        [
            (link[cms[0]], "2026-01-02", "mobile", 1, "v1"),
            (link[cms[0]], "2026-01-02", "mobile", 1, "v1"),  # same visitor, same day
            (link[cms[0]], "2026-01-03", "mobile", 1, "v1"),  # next day: counted again
            (link[cms[0]], "2026-01-02", "wechat", 1, "v2"),
            (link[cms[0]], "2026-01-02", "bot", 0, "v3"),  # a crawler: not a click
            (link[cms[1]], "2026-01-04", "desktop", 1, "v1"),
            (link[screen], "2026-01-05", "mobile", 1, "v9"),  # a QR scan at the screen
        ]
    )
    store.import_officers(
        [
            {"name": "王芳", "county": "清丰县", "township": "韩村镇", "groups": []},
            {"name": "李强", "county": "范县", "township": "濮城镇", "groups": []},
        ],
        new_token=lambda: new_code() * 2,
    )
    wang, li = sorted(store.list_officers(), key=lambda o: o["id"])
    wang_links = store.officer_links(wang["id"], packs, new_code)
    li_links = store.officer_links(li["id"], packs, new_code)
    ids = {
        c: store.query_one("SELECT id FROM links WHERE code = ?", (c,))["id"]
        for c in [*wang_links.values(), *li_links.values()]
    }
    w1, w2 = (ids[wang_links[p]] for p in packs)
    (l1,) = (ids[li_links[packs[0]]],)
    store.record_hits(
        [
            (w1, "2026-01-05", "wechat", 1, "a"),
            (w1, "2026-01-05", "wechat", 1, "b"),
            (w2, "2026-01-06", "wechat", 1, "a"),
            (l1, "2026-01-05", "wechat", 1, "a"),
            (l1, "2026-01-05", "wechat", 1, "a"),
            (l1, "2026-01-05", "wechat", 1, "a"),
            (l1, "2026-02-05", "wechat", 1, "c"),  # outside the range
        ]
    )
    yield settings, store
    store.close()


def test_clicks_and_unique_visitors_per_channel_and_in_total(clicked):
    settings, store = clicked
    query = stats.Query(date(2026, 1, 1), date(2026, 1, 31), ("channel",))
    rows = {r["channel"]: r for r in stats.RowStream(settings, store, query)}
    assert (rows["cms"]["measured_clicks"], rows["cms"]["unique_visitors"]) == (5, 4)
    assert (rows["screen"]["measured_clicks"], rows["screen"]["unique_visitors"]) == (1, 1)
    report = stats.build_report(settings, store, query)
    assert report.total["measured_clicks"] == 6 and report.total["unique_visitors"] == 5
    assert report.total["volume"] == 0  # clicks are their own measure, not volume
    assert [(c["channel"], c["measured_clicks"]) for c in report.channel_clicks] == [
        ("cms", 5),
        ("screen", 1),
    ]
    assert any("实测点击是单独的指标" in note for note in report.notes)


def test_officer_ranking_by_unique_visitors(clicked):
    settings, store = clicked
    query = stats.Query(date(2026, 1, 1), date(2026, 1, 31), ("officer",))
    rows = list(stats.RowStream(settings, store, query))
    assert [(r["officer"], r["measured_clicks"], r["unique_visitors"]) for r in rows] == [
        ("王芳（清丰县韩村镇）", 3, 3),
        ("李强（范县濮城镇）", 3, 1),
    ]
    report = stats.build_report(settings, store, query)
    assert report.breakdowns["officer"] == rows
    assert [o["officer"] for o in report.officers] == ["王芳（清丰县韩村镇）", "李强（范县濮城镇）"]
    with pytest.raises(stats.StatsUsageError, match="officer"):
        stats.parse_dims("officer,county")


def test_every_export_and_the_summary_carry_the_click_columns(clicked, tmp_path):
    settings, _store = clicked
    config = settings.path
    out = run_cli(config, "stats", "export", *RANGE, "--by", "county,channel")
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(io.StringIO(out.stdout.lstrip("\ufeff"))))
    assert {r["channel"]: r["measured_clicks"] for r in table} == {"cms": "5", "screen": "1"}
    assert "unique_visitors" in table[0]
    out = run_cli(config, "stats", "export", *RANGE, "--by", "officer", "--format", "json")
    assert json.loads(out.stdout)[0]["unique_visitors"] == 3
    bad = run_cli(config, "stats", "export", *RANGE, "--by", "officer,day")
    assert bad.returncode == 2 and "officer" in bad.stderr
    xlsx = tmp_path / "r.xlsx"
    assert (
        run_cli(
            config,
            "stats",
            "export",
            *RANGE,
            "--by",
            "channel",
            "--format",
            "xlsx",
            "-o",
            str(xlsx),
        ).returncode
        == 0
    )
    book = openpyxl.load_workbook(xlsx)
    ranking = book["信息员传播排行"]
    assert ranking["B3"].value == "王芳（清丰县韩村镇）" and ranking["G3"].value == 3
    heads = [c.value for c in book["按渠道"][1]]
    assert "实测点击" in heads and "独立访客" in heads
    html = tmp_path / "r.html"
    assert (
        run_cli(
            config,
            "stats",
            "export",
            *RANGE,
            "--by",
            "channel",
            "--format",
            "html",
            "-o",
            str(html),
        ).returncode
        == 0
    )
    page = html.read_text(encoding="utf-8")
    assert (
        "信息员传播排行" in page and "王芳（清丰县韩村镇）" in page and "各渠道跟踪链接点击" in page
    )
    summary = run_cli(config, "stats", "summary", *RANGE)
    assert "实测点击" in summary.stdout and "独立访客" in summary.stdout
    data = json.loads(run_cli(config, "stats", "summary", *RANGE, "--json").stdout)
    assert data["total"]["measured_clicks"] == 6 and data["officers"][0]["unique_visitors"] == 3
