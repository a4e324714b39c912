"""Geometry for the inline SVG charts of the HTML report (the template only draws it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Bar:
    label: str
    value: float
    text: str
    y: float
    width: float


@dataclass
class BarChart:
    """Horizontal bars: one row per item, label on the left, value at the bar's end."""

    title: str
    width: int
    height: int
    label_width: int
    bar_area: int
    row_height: int
    bars: list[Bar] = field(default_factory=list)
    target_x: float | None = None  # a vertical marker (e.g. the 90% coverage target)
    target_text: str = ""


def bar_chart(
    title: str,
    items: Sequence[tuple[str, float, str]],
    *,
    width: int = 760,
    label_width: int = 200,
    row_height: int = 26,
    limit: int = 25,
    maximum: float | None = None,
    target: float | None = None,
    target_text: str = "",
) -> BarChart:
    """``items``: (label, value, text shown at the bar's end); at most ``limit`` rows."""
    items = list(items)[:limit]
    bar_area = width - label_width - 90
    top = max([maximum or 0.0, *(v for _, v, _ in items), target or 0.0]) or 1.0
    bars = [
        Bar(
            label=label,
            value=value,
            text=text,
            y=8 + i * row_height,
            width=max(0.0, bar_area * value / top),
        )
        for i, (label, value, text) in enumerate(items)
    ]
    chart = BarChart(
        title=title,
        width=width,
        height=16 + max(1, len(items)) * row_height,
        label_width=label_width,
        bar_area=bar_area,
        row_height=row_height,
        bars=bars,
    )
    if target is not None:
        chart.target_x = label_width + bar_area * target / top
        chart.target_text = target_text
    return chart


@dataclass
class Column:
    label: str
    value: float
    text: str
    x: float
    y: float
    width: float
    height: float
    show_label: bool


@dataclass
class ColumnChart:
    """Vertical columns over time (day / week / month), with a few labelled ticks."""

    title: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    left: int
    columns: list[Column] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, text) gridlines


def column_chart(
    title: str,
    items: Sequence[tuple[str, float, str]],
    *,
    width: int = 760,
    height: int = 260,
    max_labels: int = 12,
) -> ColumnChart:
    items = list(items)
    left, right, plot_top, plot_bottom = 70, 10, 14, height - 40
    plot_width = width - left - right
    plot_height = plot_bottom - plot_top
    top = max((v for _, v, _ in items), default=0.0) or 1.0
    n = max(1, len(items))
    slot = plot_width / n
    every = max(1, -(-n // max_labels))
    columns = []
    for i, (label, value, text) in enumerate(items):
        h = plot_height * value / top
        columns.append(
            Column(
                label=label,
                value=value,
                text=text,
                x=left + i * slot + slot * 0.1,
                y=plot_bottom - h,
                width=max(1.0, slot * 0.8),
                height=h,
                show_label=i % every == 0,
            )
        )
    ticks = [(plot_bottom - plot_height * k / 4, _short(top * k / 4)) for k in range(5)]
    return ColumnChart(
        title=title,
        width=width,
        height=height,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        left=left,
        columns=columns,
        ticks=ticks,
    )


def _short(value: float) -> str:
    if value >= 100_000_000:
        return f"{value / 100_000_000:.1f}亿"
    if value >= 10_000:
        return f"{value / 10_000:.1f}万"
    return f"{value:.0f}"
