"""Exporters: CSV and JSON (streamed rows), XLSX (xlsxwriter, native charts), HTML (Jinja2,
inline SVG). CSV/JSON carry stable ids (group/topic ids, ISO dates); XLSX/HTML are for people:
Chinese headers and labels."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, select_autoescape

from media_matrix.config import Settings
from media_matrix.models import DELIVERY_STATUS_LABELS
from media_matrix.stats.charts import bar_chart, column_chart
from media_matrix.stats.core import (
    DIM_LABELS,
    FIELD_LABELS,
    FIELDS,
    SOURCE_LABELS,
    TIME_DIMENSIONS,
    Report,
    RowStream,
    row_fields,
    value_label,
)
from media_matrix.stats.orders import ORDER_DIMENSIONS, ORDER_FIELD_LABELS, ORDER_FIELDS
from media_matrix.timeutil import local_text

FORMATS = ("csv", "xlsx", "json", "html")
SHEET_NAMES = {
    "county": "按区县",
    "group": "按重点人群",
    "topic": "按主题",
    "channel": "按渠道",
    "campaign": "按活动",
    "day": "按日",
    "week": "按周",
    "month": "按月",
    "officer": "按信息员",
}
# 点单统计 tables: (title, key of Report.orders, dimension)
ORDER_SECTIONS = (
    ("按区县", "by_county", "county"),
    ("按主题", "by_topic", "topic"),
    ("按重点人群", "by_group", "group"),
    ("按状态", "by_status", "request_status"),
)
RANKING_HEADS = ["名次", "科普信息员", "区县", "乡镇", "专属链接", "实测点击", "独立访客"]
CHANNEL_CLICK_HEADS = ["渠道", "已送达", "实测点击", "独立访客"]
NUMERIC = FIELDS[:-1]
CHART_ROWS = 30  # categorical charts show the top rows by volume
HTML_ROWS = 2000  # rows of a table shown in the HTML page
CONSTANT_MEMORY_ROWS = 20_000
EXCEL_ROWS = 1_048_576
COVERAGE_TARGET = 0.9

RowCallback = Callable[[int], None]


# -- CSV / JSON -----------------------------------------------------------------------------------


# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would start a formula gets a leading
    single quote (numbers stay numbers, so a negative figure is not touched)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    # a bare CR is no line end to the writer (it would not quote it) but is one to readers
    return value.replace("\r\n", "\n").replace("\r", "\n")


def write_csv(stream: RowStream, out: TextIO, *, on_row: RowCallback | None = None) -> int:
    """Header (the --by keys then FIELDS) and one line per row; empty key = none. Every cell
    goes through csv_cell: keys are names from config and packs, which strangers write."""
    writer = csv.writer(out, lineterminator="\n")
    by = list(stream.query.by)
    columns = (*by, *row_fields(by))  # an order dimension has the order figures (群众点单)
    writer.writerow([csv_cell(k) for k in columns])
    n = 0
    for row in stream:
        writer.writerow([csv_cell(row[k]) for k in columns])
        n += 1
        if on_row is not None and n % 1000 == 0:
            on_row(n)
    return n


def write_json(
    stream: RowStream,
    out: TextIO,
    *,
    timezone: str,
    on_row: RowCallback | None = None,
) -> int:
    """One JSON array: an object per combination of the ``--by`` keys, with the keys and the
    stable FIELDS, written as rows come (the totals are ``stats summary --json``'s)."""
    out.write("[")
    n = 0
    for row in stream:
        out.write(("," if n else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        n += 1
        if on_row is not None and n % 1000 == 0:
            on_row(n)
    out.write("\n]\n" if n else "]\n")
    return n


# -- XLSX -----------------------------------------------------------------------------------------


def _range_text(report: Report) -> str:
    q = report.query
    start = q.start.isoformat() if q.start else "最早"
    end = q.end.isoformat() if q.end else "最新"
    return f"{start} 至 {end}（{report.timezone}）"


def generated_text(report: Report) -> str:
    """When the report was made, as people read it: local time in the report's zone."""
    from zoneinfo import ZoneInfo

    return local_text(report.generated_at, ZoneInfo(report.timezone))


def write_xlsx(
    report: Report,
    path: Path | str,
    settings: Settings | None = None,
    *,
    on_row: RowCallback | None = None,
) -> Path:
    """A summary sheet, one sheet per --by dimension (with a native chart) and, for two or
    more dimensions, a 明细 sheet with every combination (cut at Excel's row limit, said on the
    summary sheet). Header rows are frozen."""
    import xlsxwriter

    path = Path(path)
    big = report.has_combined and (
        report.combined is None or len(report.combined) > CONSTANT_MEMORY_ROWS
    )
    # strings stay strings: no formulas or links made from a name a stranger wrote
    options = {"constant_memory": big, "strings_to_formulas": False, "strings_to_urls": False}
    wb = xlsxwriter.Workbook(str(path), options)
    fmt = {
        "title": wb.add_format({"bold": True, "font_size": 16}),
        "head": wb.add_format(
            {"bold": True, "bg_color": "#DCE6F1", "border": 1, "text_wrap": True}
        ),
        "section": wb.add_format({"bold": True, "font_size": 12}),
        "int": wb.add_format({"num_format": "#,##0"}),
        "pct": wb.add_format({"num_format": "0.0%"}),
        "text": wb.add_format({}),
        "note": wb.add_format({"italic": True, "font_color": "#555555"}),
    }
    summary = _summary_sheet(wb, fmt, report)
    for dim, rows in report.breakdowns.items():
        if dim in ORDER_DIMENSIONS:  # shown on the 点单统计 sheet
            continue
        _breakdown_sheet(wb, fmt, SHEET_NAMES[dim], [dim], rows, settings, chart=True)
    if report.has_combined:
        written, cut = _breakdown_sheet(
            wb,
            fmt,
            "明细",
            list(report.query.by),
            report.combined_rows(),
            settings,
            chart=False,
            on_row=on_row,
        )
        if cut:
            summary.write(
                3,
                0,
                f"明细超过 Excel 行数上限，只写入前 {written:,} 行；完整明细请导出 CSV。",
                fmt["note"],
            )
    _clicks_sheet(wb, fmt, report)
    _orders_sheet(wb, fmt, report, settings)
    wb.close()
    return path


def order_tables(report: Report, settings: Settings | None) -> list[dict[str, Any]]:
    """The 点单统计 tables (total first) as labelled rows, for the XLSX sheet and the HTML."""
    orders = report.orders
    if not orders:
        return []
    tables = [{"title": "合计", "rows": [{"label": "全部点单", **orders["total"]}]}]
    for title, key, dim in ORDER_SECTIONS:
        rows = [{"label": value_label(dim, r[dim], settings), **r} for r in orders[key]]
        tables.append({"title": title, "rows": rows})
    return tables


def _orders_sheet(wb: Any, fmt: dict[str, Any], report: Report, settings: Settings | None) -> None:
    """点单统计: orders by county, topic, group and status; share answered; median time."""
    ws = wb.add_worksheet("点单统计")
    ws.set_column(0, 0, 22)
    ws.set_column(1, len(ORDER_FIELDS), 14)
    ws.write(0, 0, "点单统计（群众点单、基层接单、上级支持）", fmt["section"])
    row = 1
    for table in order_tables(report, settings):
        row += 1
        ws.write(row, 0, table["title"], fmt["head"])
        for col, name in enumerate(ORDER_FIELDS, 1):
            ws.write(row, col, ORDER_FIELD_LABELS[name], fmt["head"])
        for item in table["rows"]:
            row += 1
            ws.write_string(row, 0, item["label"])
            for col, name in enumerate(ORDER_FIELDS, 1):
                value = item[name]
                if value is None:
                    ws.write_string(row, col, "—")
                elif name == "share_fulfilled":
                    ws.write_number(row, col, value, fmt["pct"])
                else:
                    ws.write_number(row, col, value, fmt["int"])
        row += 1
    if not report.orders or not report.orders["total"]["orders"]:
        ws.write(row + 1, 0, "本区间没有群众点单。", fmt["note"])


def _summary_sheet(wb: Any, fmt: dict[str, Any], report: Report) -> Any:
    ws = wb.add_worksheet("汇总")
    ws.set_column(0, 0, 22)
    ws.set_column(1, 6, 14)
    ws.write(0, 0, "科普资源传播量统计报告", fmt["title"])
    ws.freeze_panes(1, 0)
    ws.write(1, 0, "统计区间")
    ws.write(1, 1, _range_text(report))
    ws.write(2, 0, "生成时间")
    ws.write(2, 1, generated_text(report))
    row = 4
    ws.write(row, 0, "总计（不重复计算）", fmt["section"])
    row += 1
    ws.write(row, 0, "指标", fmt["head"])
    ws.write(row, 1, "数值", fmt["head"])
    for name in FIELDS:
        row += 1
        ws.write(row, 0, FIELD_LABELS[name])
        value = report.total[name]
        if name == "volume_source":
            ws.write(row, 1, SOURCE_LABELS[value])
        else:
            ws.write_number(row, 1, value, fmt["int"])
    row += 2
    ws.write(row, 0, "投放状态", fmt["section"])
    row += 1
    ws.write(row, 0, "状态", fmt["head"])
    ws.write(row, 1, "投放数", fmt["head"])
    status_first = row + 1
    for status, n in report.by_status.items():
        row += 1
        ws.write(row, 0, DELIVERY_STATUS_LABELS[status])
        ws.write_number(row, 1, n, fmt["int"])
    status_last = row
    chart = wb.add_chart({"type": "column"})
    chart.add_series(
        {
            "name": "投放数",
            "categories": ["汇总", status_first, 0, status_last, 0],
            "values": ["汇总", status_first, 1, status_last, 1],
            "data_labels": {"value": True},
        }
    )
    chart.set_title({"name": "投放状态"})
    chart.set_legend({"none": True})
    ws.insert_chart(4, 3, chart, {"x_scale": 1.2, "y_scale": 1.0})
    row += 2
    ws.write(row, 0, "覆盖率（估算）", fmt["section"])
    row += 1
    heads = ["区县", "人口", "渠道数", "有送达渠道", "受众规模(估算)", "覆盖率(估算)"]
    for col, head in enumerate(heads):
        ws.write(row, col, head, fmt["head"])
    cov_first = row + 1
    for item in report.coverage:
        row += 1
        ws.write(row, 0, item["county"])
        if item["population"]:
            ws.write_number(row, 1, item["population"], fmt["int"])
        ws.write_number(row, 2, item["channels"], fmt["int"])
        ws.write_number(row, 3, item["active_channels"], fmt["int"])
        ws.write_number(row, 4, item["reach"], fmt["int"])
        if item["coverage"] is not None:
            ws.write_number(row, 5, item["coverage"], fmt["pct"])
    cov_last = row
    if report.coverage:
        chart = wb.add_chart({"type": "bar"})
        chart.add_series(
            {
                "name": "覆盖率(估算)",
                "categories": ["汇总", cov_first, 0, cov_last, 0],
                "values": ["汇总", cov_first, 5, cov_last, 5],
                "data_labels": {"value": True, "num_format": "0.0%"},
            }
        )
        chart.set_title({"name": "各区县覆盖率（估算，目标 90%）"})
        chart.set_x_axis({"num_format": "0%", "min": 0})
        chart.set_legend({"none": True})
        ws.insert_chart(21, 3, chart, {"x_scale": 1.2, "y_scale": 1.0})
    row += 2
    ws.write(row, 0, "说明", fmt["section"])
    for note in report.notes:
        row += 1
        ws.write(row, 0, note, fmt["note"])
    return ws


def _clicks_sheet(wb: Any, fmt: dict[str, Any], report: Report) -> None:
    """信息员传播排行 (officers by unique visitors) and the clicks of each channel's links."""
    ws = wb.add_worksheet("信息员传播排行")
    ws.set_column(0, 0, 6)
    ws.set_column(1, 1, 24)
    ws.set_column(2, 6, 12)
    ws.write(0, 0, "信息员传播排行（按独立访客）", fmt["section"])
    for col, head in enumerate(RANKING_HEADS):
        ws.write(1, col, head, fmt["head"])
    ws.freeze_panes(2, 0)
    row = 1
    for rank, item in enumerate(report.officers, 1):
        row += 1
        ws.write_number(row, 0, rank, fmt["int"])
        for col, key in enumerate(("officer", "county", "township"), 1):
            ws.write_string(row, col, item[key])
        for col, key in enumerate(("links", "measured_clicks", "unique_visitors"), 4):
            ws.write_number(row, col, item[key], fmt["int"])
    if not report.officers:
        ws.write(2, 0, "尚无科普信息员。", fmt["note"])
    row = max(row, 2) + 2
    ws.write(row, 0, "各渠道跟踪链接点击", fmt["section"])
    row += 1
    for col, head in enumerate(CHANNEL_CLICK_HEADS, 1):
        ws.write(row, col, head, fmt["head"])
    for item in report.channel_clicks:
        row += 1
        ws.write_string(row, 1, item["channel"] or "（无）")
        for col, key in enumerate(("delivered", "measured_clicks", "unique_visitors"), 2):
            ws.write_number(row, col, item[key], fmt["int"])
    row += 2
    ws.write(
        row,
        0,
        "点击是单独的指标（真人打开跟踪链接或扫码），不计入传播量；详见汇总页说明。",
        fmt["note"],
    )


def _breakdown_sheet(
    wb: Any,
    fmt: dict[str, Any],
    name: str,
    dims: list[str],
    rows: Iterable[dict[str, Any]],
    settings: Settings | None,
    *,
    chart: bool,
    on_row: RowCallback | None = None,
) -> tuple[int, bool]:
    """Returns the rows written and whether the sheet was cut at Excel's limit."""
    ws = wb.add_worksheet(name)
    heads = [DIM_LABELS[d] for d in dims] + [FIELD_LABELS[f] for f in FIELDS]
    nd = len(dims)
    ws.set_column(0, max(0, nd - 1), 16)
    ws.set_column(nd, nd + len(FIELDS) - 2, 12)
    ws.set_column(nd + len(FIELDS) - 1, nd + len(FIELDS) - 1, 16)
    for col, head in enumerate(heads):
        ws.write(0, col, head, fmt["head"])
    ws.freeze_panes(1, nd)
    written, cut = 0, False
    labels: dict[tuple[str, Any], str] = {}
    for row in rows:
        if written >= EXCEL_ROWS - 1:
            cut = True
            break
        written += 1
        for c, dim in enumerate(dims):
            label = labels.get((dim, row[dim]))
            if label is None:
                label = labels[(dim, row[dim])] = value_label(dim, row[dim], settings)
            ws.write_string(written, c, label)
        for c, field in enumerate(NUMERIC, nd):
            ws.write_number(written, c, row[field], fmt["int"])
        ws.write_string(written, nd + len(NUMERIC), SOURCE_LABELS[row["volume_source"]])
        if on_row is not None and written % 10_000 == 0:
            on_row(written)
    ws.autofilter(0, 0, max(1, written), len(heads) - 1)
    if not chart or not written:
        return written, cut
    dim = dims[0]
    is_time = dim in TIME_DIMENSIONS
    last = written if is_time else min(written, CHART_ROWS)
    volume_col = nd + NUMERIC.index("volume")
    ch = wb.add_chart({"type": "line" if is_time else "bar"})
    ch.add_series(
        {
            "name": FIELD_LABELS["volume"],
            "categories": [name, 1, 0, last, 0],
            "values": [name, 1, volume_col, last, volume_col],
        }
    )
    delivered_col = nd + NUMERIC.index("delivered")
    if is_time:
        ch.add_series(
            {
                "name": FIELD_LABELS["delivered"],
                "categories": [name, 1, 0, last, 0],
                "values": [name, 1, delivered_col, last, delivered_col],
                "y2_axis": True,
            }
        )
        ch.set_y2_axis({"name": FIELD_LABELS["delivered"]})
    else:
        ch.set_y_axis({"reverse": True})  # largest first, as in the table
    top = "" if is_time or written <= CHART_ROWS else f"（前 {CHART_ROWS}）"
    ch.set_title({"name": f"{DIM_LABELS[dim]}传播量{top}"})
    ch.set_legend({"position": "bottom"} if is_time else {"none": True})
    ch.set_size({"width": 720, "height": max(300, 22 * last + 80) if not is_time else 360})
    ws.insert_chart(1, nd + len(FIELDS) + 1, ch)
    return written, cut


# -- HTML -----------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("media_matrix", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"
    return env


def render_html(report: Report, settings: Settings | None = None) -> str:
    """The single self-contained report page (inline CSS and SVG, no external resources)."""
    sections = []
    for dim, rows in report.breakdowns.items():
        if dim in ORDER_DIMENSIONS:  # shown in the 点单统计 section
            continue
        items = [
            (value_label(dim, r[dim], settings), r["volume"], f"{r['volume']:,}") for r in rows
        ]
        if dim in TIME_DIMENSIONS:
            chart = column_chart(f"{DIM_LABELS[dim]}传播量", items)
        else:
            chart = bar_chart(f"{DIM_LABELS[dim]}传播量", items, limit=CHART_ROWS)
        sections.append(
            {
                "dim": dim,
                "title": f"按{DIM_LABELS[dim]}",
                "chart": chart,
                "is_time": dim in TIME_DIMENSIONS,
                "heads": [DIM_LABELS[dim]],
                "rows": [
                    {"keys": [value_label(dim, r[dim], settings)], **r} for r in rows[:HTML_ROWS]
                ],
                "cut": max(0, len(rows) - HTML_ROWS),
            }
        )
    combined = None
    if report.has_combined:
        by = list(report.query.by)
        rows = report.combined_rows()
        shown = list(itertools.islice(rows, HTML_ROWS))
        more = sum(1 for _ in rows)
        combined = {
            "heads": [DIM_LABELS[d] for d in by],
            "rows": [{"keys": [value_label(d, r[d], settings) for d in by], **r} for r in shown],
            "cut": more,
        }
    status_chart = bar_chart(
        "投放状态",
        [(DELIVERY_STATUS_LABELS[s], n, f"{n:,}") for s, n in report.by_status.items()],
        label_width=110,
    )
    coverage_chart = bar_chart(
        "各区县覆盖率（估算）",
        [
            (
                c["county"],
                c["coverage"] or 0.0,
                "—" if c["coverage"] is None else f"{c['coverage'] * 100:.1f}%",
            )
            for c in report.coverage
        ],
        label_width=110,
        maximum=1.0,
        target=COVERAGE_TARGET,
        target_text="目标 90%",
    )
    officer_chart = bar_chart(
        "信息员传播排行（独立访客）",
        [
            (o["officer"], o["unique_visitors"], f"{o['unique_visitors']:,}")
            for o in report.officers
        ],
        limit=CHART_ROWS,
    )
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        officer_chart=officer_chart,
        range_text=_range_text(report),
        generated_text=generated_text(report),
        fields=FIELDS,
        numeric=NUMERIC,
        field_labels=FIELD_LABELS,
        source_labels=SOURCE_LABELS,
        status_labels=DELIVERY_STATUS_LABELS,
        status_chart=status_chart,
        coverage_chart=coverage_chart,
        sections=sections,
        combined=combined,
        order_tables=order_tables(report, settings),
        order_fields=ORDER_FIELDS,
        order_labels=ORDER_FIELD_LABELS,
        dims=[DIM_LABELS[d] for d in report.query.by],
    )


def write_html(report: Report, path: Path | str, settings: Settings | None = None) -> Path:
    path = Path(path)
    path.write_text(render_html(report, settings), encoding="utf-8")
    return path
