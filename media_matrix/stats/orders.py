"""点单统计: figures of residents' orders (群众点单) in a date range.

Order-level figures, beside the delivery figures of the rest of the report: orders by county,
topic, group and status; how many were answered (fulfilled) and their share; the median time
from order to answer; how many were escalated to the city. An order with several topics or
groups counts under each of them (like packs in the topic and group breakdowns); totals count
each order once. ``--by request_topic`` and ``--by request_status`` export these rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from media_matrix.timeutil import from_iso

ORDER_DIMENSIONS = ("request_topic", "request_status")
ORDER_FIELDS = ("orders", "fulfilled", "share_fulfilled", "median_hours_to_fulfil", "escalated")
ORDER_FIELD_LABELS = {
    "orders": "点单数",
    "fulfilled": "已答复",
    "share_fulfilled": "答复率",
    "median_hours_to_fulfil": "答复用时中位数(小时)",
    "escalated": "提交市级",
}
STATUS_ORDER = ("open", "accepted", "escalated", "declined", "fulfilled")


def _hours(row: dict[str, Any]) -> float | None:
    start, end = from_iso(row["created_at"]), from_iso(row.get("fulfilled_at"))
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() / 3600)


def figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Orders, fulfilled, share fulfilled, median hours to fulfilment, escalated."""
    hours = [h for h in (_hours(r) for r in rows if r["status"] == "fulfilled") if h is not None]
    fulfilled = sum(r["status"] == "fulfilled" for r in rows)
    return {
        "orders": len(rows),
        "fulfilled": fulfilled,
        "share_fulfilled": round(fulfilled / len(rows), 4) if rows else None,
        "median_hours_to_fulfil": round(statistics.median(hours), 1) if hours else None,
        "escalated": sum(bool(r["escalated"]) for r in rows),
    }


def _keys(row: dict[str, Any], dim: str) -> Iterable[Any]:
    if dim in ("topic", "request_topic"):
        return row["topics"] or [None]
    if dim == "group":
        return row["groups"] or [None]
    if dim == "request_status":
        return [row["status"]]
    return [row[dim]]


def breakdown(rows: Sequence[dict[str, Any]], dim: str) -> list[dict[str, Any]]:
    """One row per value of ``dim`` (most orders first; statuses in workflow order)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        for key in dict.fromkeys(_keys(row, dim)):
            groups.setdefault(key, []).append(row)
    out = [{dim: key, **figures(members)} for key, members in groups.items()]
    if dim == "request_status":
        out.sort(key=lambda r: STATUS_ORDER.index(r[dim]) if r[dim] in STATUS_ORDER else 99)
    else:
        out.sort(key=lambda r: (-r["orders"], str(r[dim] or "~")))
    return out


def order_report(store: Any, since: str | None, until: str | None) -> dict[str, Any]:
    """The 点单统计 section: totals and breakdowns by county, topic, group and status."""
    rows = store.request_figures_rows(since, until)
    return {
        "total": figures(rows),
        "by_county": breakdown(rows, "county"),
        "by_topic": breakdown(rows, "topic"),
        "by_group": breakdown(rows, "group"),
        "by_status": breakdown(rows, "request_status"),
    }


__all__ = [
    "ORDER_DIMENSIONS",
    "ORDER_FIELDS",
    "ORDER_FIELD_LABELS",
    "breakdown",
    "figures",
    "order_report",
]
