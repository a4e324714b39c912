"""/stats: a date range and breakdowns as tables, the HTML report's SVG charts (in a sandboxed
frame with its own CSP), coverage per county, and downloads from the same exporters as the CLI."""

from __future__ import annotations

import io
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, render_template, request

from media_matrix import stats
from media_matrix.stats.core import SOURCE_LABELS
from media_matrix.stats.exporters import COVERAGE_TARGET
from media_matrix.stats.orders import ORDER_FIELD_LABELS
from media_matrix.timeutil import utcnow
from media_matrix.web import common

bp = Blueprint("reports", __name__)

DEFAULT_BY = ("county", "group")
# The report page carries its own inline CSS: allowed in its frame only, with scripts off.
FRAME_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MIME = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
}


def _query() -> tuple[stats.Query, str | None]:
    """The range and dims asked for (default: this month so far, by county and group)."""
    args = request.args
    today = utcnow().astimezone(common.settings().tz).date()
    error = None
    try:
        start = stats.parse_day(args.get("from") or None, "from") or today.replace(day=1)
        end = stats.parse_day(args.get("to") or None, "to") or today
        stats.check_range(start, end)
        by = stats.parse_dims(args.getlist("by") or list(DEFAULT_BY))
    except stats.StatsUsageError as exc:
        error = str(exc)
        start, end, by = today.replace(day=1), today, DEFAULT_BY
    if (end - start) > timedelta(days=3660):
        error, start = "日期范围不能超过十年", end - timedelta(days=3660)
    return stats.Query(start, end, by), error


def _args(query: stats.Query) -> dict[str, Any]:
    return {
        "from": query.start.isoformat() if query.start else "",
        "to": query.end.isoformat() if query.end else "",
        "by": list(query.by),
    }


@bp.route("/stats")
@common.needs("read")
def index() -> Any:
    query, error = _query()
    report = stats.build_report(common.settings(), common.store(), query)
    return render_template(
        "stats.html",
        report=report,
        query=query,
        args=_args(query),
        error=error,
        dims=stats.DIMENSIONS,
        dim_labels=stats.DIM_LABELS,
        fields=stats.FIELDS,
        field_labels={**stats.FIELD_LABELS, **ORDER_FIELD_LABELS},
        source_labels=SOURCE_LABELS,
        value_label=lambda dim, v: stats.core.value_label(dim, v, common.settings()),
        row_fields=lambda dim: stats.core.row_fields((dim,)),  # 群众点单 dims: order figures
        target=COVERAGE_TARGET,
    )


@bp.route("/stats/report")
@common.needs("read")
def report_frame() -> Any:
    """The HTML report itself, for the charts frame: scripts and same-origin off by its CSP."""
    from media_matrix.stats.exporters import render_html

    query, _ = _query()
    report = stats.build_report(common.settings(), common.store(), query)
    response = Response(render_html(report, common.settings()), mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_CSP
    return response


def _filename(query: stats.Query, fmt: str) -> str:
    start = query.start or date.min
    end = query.end or date.max
    return f"stats_{start:%Y%m%d}_{end:%Y%m%d}_{'-'.join(query.by) or 'total'}.{fmt}"


@bp.route("/stats/export.<fmt>")
@common.needs("export")
def export(fmt: str) -> Any:
    if fmt not in MIME:
        abort(404)
    from media_matrix.stats.exporters import render_html

    query, error = _query()
    if error:
        abort(400)
    settings, store = common.settings(), common.store()
    if fmt == "csv":
        out = io.StringIO()
        out.write("\ufeff")  # Excel reads UTF-8 with a BOM
        stats.write_csv(stats.RowStream(settings, store, query), out)
        body: bytes = out.getvalue().encode("utf-8")
    elif fmt == "xlsx":
        report = stats.build_report(settings, store, query)
        with tempfile.TemporaryDirectory() as folder:
            path = stats.write_xlsx(report, Path(folder) / "report.xlsx", settings)
            body = path.read_bytes()
    else:
        body = render_html(stats.build_report(settings, store, query), settings).encode("utf-8")
    response = Response(body, mimetype=MIME[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(query, fmt)}"'
    if fmt == "html":
        response.headers["Content-Security-Policy"] = FRAME_CSP
    return response
