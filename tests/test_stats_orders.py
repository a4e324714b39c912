"""点单统计: order figures (share fulfilled, median time to fulfilment, escalations) by county,
topic, group and status; `--by request_topic|request_status` (standalone) in the exports; the
section in the HTML and XLSX reports. Real SQLite, real exporters."""

from __future__ import annotations

import io
import sys
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from media_matrix import orders, stats
from media_matrix.stats.exporters import render_html, write_csv, write_xlsx
from media_matrix.stats.orders import breakdown, figures

sys.path.insert(0, str(Path(__file__).parent))
from console_fixtures import make_console  # noqa: E402


def row(status: str, hours: float | None = None, escalated: bool = False, **kw):  # type: ignore[no-untyped-def]
    fulfilled = None
    if hours is not None:
        fulfilled = f"2026-11-0{1 + int(hours // 24)}T{int(hours % 24):02d}:00:00+00:00"
    return {
        "county": kw.get("county", "清丰县"),
        "status": status,
        "topics": kw.get("topics", ["agriculture"]),
        "groups": kw.get("groups", ["farmers"]),
        "created_at": "2026-11-01T00:00:00+00:00",
        "fulfilled_at": fulfilled,
        "escalated": escalated,
    }


def test_figures_share_median_and_escalations():
    rows = [
        row("fulfilled", 2),
        row("fulfilled", 30, escalated=True),
        row("fulfilled", 5),
        row("open", topics=["health", "agriculture"]),
        row("declined", escalated=True, topics=[], county="华龙区"),
    ]
    got = figures(rows)
    assert got == {
        "orders": 5,
        "fulfilled": 3,
        "share_fulfilled": 0.6,
        "median_hours_to_fulfil": 5.0,
        "escalated": 2,
    }
    by_topic = {r["topic"]: r["orders"] for r in breakdown(rows, "topic")}
    assert by_topic == {"agriculture": 4, "health": 1, None: 1}  # an order under each topic
    by_county = breakdown(rows, "county")
    assert [r["county"] for r in by_county] == ["清丰县", "华龙区"]
    statuses = [r["request_status"] for r in breakdown(rows, "request_status")]
    assert statuses == ["open", "declined", "fulfilled"]  # workflow order
    assert figures([]) == {
        "orders": 0,
        "fulfilled": 0,
        "share_fulfilled": None,
        "median_hours_to_fulfil": None,
        "escalated": 0,
    }


def test_order_dimensions_stand_alone():
    assert stats.parse_dims("request_topic") == ("request_topic",)
    with pytest.raises(stats.StatsUsageError, match="stands alone"):
        stats.parse_dims("request_status,county")
    with pytest.raises(stats.StatsUsageError, match="stands alone"):
        stats.parse_dims("request_topic,request_status")


def test_exports_and_report_sections(tmp_path):
    con = make_console(tmp_path)
    settings, store = con.settings, con.store
    base = {"county": "清丰县", "township": "城关镇", "contact": "13811112222"}
    farm = orders.submit(settings, store, {**base, "text": "小麦怎么防冻"}, source="web", by="t")
    orders.submit(settings, store, {**base, "text": "老人怎么防诈骗"}, source="web", by="t")
    up = orders.submit(
        settings, store, {**base, "county": "华龙区", "text": "小麦倒伏"}, source="web", by="t"
    )
    orders.act(store, up["id"], "escalate", by="t")
    orders.act(store, farm["id"], "decline", by="t", note="重复")
    today = date.today()
    query = stats.Query(date(today.year, 1, 1), date(today.year, 12, 31), ("request_status",))

    out = io.StringIO()
    write_csv(stats.RowStream(settings, store, query), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "request_status,orders,fulfilled,share_fulfilled,median_hours_to_fulfil,escalated"
    )
    assert set(lines[1:]) == {"open,1,0,0.0,,0", "escalated,1,0,0.0,,1", "declined,1,0,0.0,,0"}

    report = stats.build_report(settings, store, query)
    assert report.orders["total"]["orders"] == 3 and report.orders["total"]["escalated"] == 1
    assert {r["county"]: r["orders"] for r in report.orders["by_county"]} == {
        "清丰县": 2,
        "华龙区": 1,
    }
    assert [r["request_status"] for r in report.breakdowns["request_status"]] == [
        "open",
        "escalated",
        "declined",
    ]
    page = render_html(report, settings)
    section = page[page.index('id="orders"') :]
    assert "点单统计" in section and "已提交市级" in section and "农业技术" in section
    assert "13811112222" not in page  # figures never carry a contact

    book = write_xlsx(
        stats.build_report(settings, store, stats.Query(query.start, query.end, ("county",))),
        tmp_path / "r.xlsx",
        settings,
    )
    sheet = load_workbook(book)["点单统计"]
    cells = [[c.value for c in r] for r in sheet.iter_rows()]
    assert ["全部点单", 3, 0, 0, "—", 1] in cells
    assert ["华龙区", 1, 0, 0, "—", 1] in cells
