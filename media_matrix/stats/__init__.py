"""Dissemination statistics (科普资源传播量): metrics, aggregation and exports.

    pull(settings, store, days, now, client=...)  WeChat datacube (flow.pull_stats opens the API)
    estimate(settings, store, since=None)          estimated rows only
    RowStream(settings, store, Query(...))          rows per --by combination, streamed
    build_report(settings, store, Query(...))       total, statuses, coverage, breakdowns
    summary(settings, store, Query(start, end))     the headline figures
    write_csv / write_json / write_xlsx / write_html

See ``core`` for the counting rules (volume, labels, overlapping breakdowns, coverage).
"""

from __future__ import annotations

from media_matrix.stats.collect import (
    DAY_SPAN,
    DEFAULT_DAYS,
    ENDPOINTS,
    SUMMARY,
    TOTAL_DETAIL,
    date_chunks,
    estimate,
    pull,
    screen_impressions,
    totaldetail_rows,
)
from media_matrix.stats.core import (
    DIM_LABELS,
    DIMENSIONS,
    FIELD_LABELS,
    FIELDS,
    Query,
    Report,
    RowStream,
    StatsUsageError,
    build_report,
    check_range,
    parse_day,
    parse_dims,
    summary,
)
from media_matrix.stats.exporters import FORMATS, write_csv, write_html, write_json, write_xlsx

__all__ = [
    "DAY_SPAN",
    "DEFAULT_DAYS",
    "DIMENSIONS",
    "DIM_LABELS",
    "ENDPOINTS",
    "FIELDS",
    "FIELD_LABELS",
    "FORMATS",
    "SUMMARY",
    "TOTAL_DETAIL",
    "Query",
    "Report",
    "RowStream",
    "StatsUsageError",
    "build_report",
    "check_range",
    "date_chunks",
    "estimate",
    "parse_day",
    "parse_dims",
    "pull",
    "screen_impressions",
    "summary",
    "totaldetail_rows",
    "write_csv",
    "write_html",
    "write_json",
    "write_xlsx",
]
