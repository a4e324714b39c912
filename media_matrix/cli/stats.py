"""`stats pull | summary | export`: dissemination figures (科普资源传播量)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from media_matrix import stats
from media_matrix.cli.common import (
    DAY,
    MAX_DAYS,
    OUTPUT_FILE,
    STATS_DIMS,
    AppContext,
    BoundedInt,
    RuntimeFailure,
    UsageFailure,
    echo_json,
    echo_table,
    json_option,
    pass_app,
)
from media_matrix.flow import pull_stats
from media_matrix.models import DELIVERY_STATUS_LABELS
from media_matrix.redact import redact
from media_matrix.stats.core import SOURCE_LABELS


@click.group("stats")
def stats_group() -> None:
    """传播量统计 (dissemination statistics)."""


def _query(first: date | None, last: date | None, by: str | None = None) -> stats.Query:
    """--from/--to arrive as dates in MIN_YEAR..MAX_YEAR (the DAY type); the span is checked
    here so a hundred-year query is a usage error, not an hour of aggregation."""
    try:
        stats.check_range(first, last)
        dims = stats.parse_dims(by)
    except stats.StatsUsageError as exc:
        raise UsageFailure(str(exc)) from None
    return stats.Query(first, last, dims)


# -- pull ---------------------------------------------------------------------------------------


@stats_group.command("pull")
@click.option(
    "--days",
    type=BoundedInt(1, MAX_DAYS),
    default=stats.DEFAULT_DAYS,
    show_default=True,
    help="拉取的统计天数, 截至昨天 (北京时间)",
)
@click.option(
    "--endpoint",
    type=click.Choice(stats.ENDPOINTS),
    default=stats.TOTAL_DETAIL,
    show_default=True,
    help="微信 datacube 接口",
)
@click.option("--reestimate", is_flag=True, help="重新计算所有估算 (渠道受众规模改变后)")
@json_option
@pass_app
def pull_cmd(app: AppContext, days: int, endpoint: str, reestimate: bool, as_json: bool) -> None:
    """写入估算触达, 并从微信 datacube 拉取实测阅读和分享。"""
    settings, store = app.settings, app.store
    reestimated = stats.estimate(settings, store) if reestimate else 0
    result = pull_stats(settings, store, days=days, endpoint=endpoint)
    result["estimated_rows"] += reestimated
    if as_json:
        echo_json(result)
    else:
        echo_table(
            ["项目", "值"],
            [
                ("统计日期", f"{result['begin_date']} 至 {result['end_date']}（北京时间）"),
                ("接口", f"datacube/{result['endpoint']}"),
                ("写入估算行", result["estimated_rows"]),
                ("写入实测行", result["measured_rows"]),
                ("接口调用次数", result["calls"]),
                ("未匹配的文章", result["unmatched"]),
            ],
            title="传播量数据拉取",
        )
        if result["accounts"]:
            echo_table(
                ["公众号 appid", "渠道", "投放", "错误"],
                [
                    (
                        a["appid"],
                        ", ".join(a["channels"]),
                        a["deliveries"],
                        redact(a.get("error", "")),
                    )
                    for a in result["accounts"]
                ],
                title="微信公众号",
            )
    if result["errors"]:
        raise RuntimeFailure("; ".join(f"{e['appid']}: {e['error']}" for e in result["errors"]))


# -- summary ------------------------------------------------------------------------------------


@stats_group.command("summary")
@click.option("--from", "start", type=DAY, metavar="DATE", help="起始日期, YYYY-MM-DD (默认: 全部)")
@click.option("--to", "end", type=DAY, metavar="DATE", help="结束日期, YYYY-MM-DD (含当天)")
@json_option
@pass_app
def summary_cmd(app: AppContext, start: date | None, end: date | None, as_json: bool) -> None:
    """传播量概况: 传播量、各状态投放数、各区县覆盖率。"""
    query = _query(start, end)
    report = stats.summary(app.settings, app.store, query)
    if as_json:
        data = report.as_dict()
        data["by_county"] = data.pop("breakdowns").get("county", [])
        data.pop("rows", None)
        data["by"] = []
        echo_json(data)
        return
    total = report.total
    period = f"{query.start or '最早'} 至 {query.end or '最新'}"
    echo_table(
        ["指标", "数值"],
        [
            ("统计区间", period),
            ("传播量", f"{total['volume']:,}（{SOURCE_LABELS[total['volume_source']]}）"),
            ("投放数", f"{total['deliveries']:,}"),
            ("已送达", f"{total['delivered']:,}"),
            ("失败", f"{total['failed']:,}"),
            ("估算触达", f"{total['estimated_reach']:,}"),
            ("实测阅读", f"{total['measured_reads']:,}"),
            ("实测分享", f"{total['measured_shares']:,}"),
            ("实测点击（跟踪链接，单独计量）", f"{total['measured_clicks']:,}"),
            ("独立访客（每链接每日）", f"{total['unique_visitors']:,}"),
        ],
        title="传播量概况",
    )
    echo_table(
        ["状态", "投放数"],
        [
            (f"{DELIVERY_STATUS_LABELS[s]} ({s})", f"{n:,}")
            for s, n in report.by_status.items()
            if n
        ],
        title="投放状态",
    )
    echo_table(
        ["区县", "人口", "有送达渠道/渠道", "受众规模", "覆盖率(估算)"],
        [
            (
                c["county"],
                f"{c['population']:,}" if c["population"] else "-",
                f"{c['active_channels']}/{c['channels']}",
                f"{c['reach']:,}",
                "-" if c["coverage"] is None else f"{c['coverage'] * 100:.1f}%",
            )
            for c in report.coverage
        ],
        title="覆盖率（估算，目标 90%）",
    )


# -- export -------------------------------------------------------------------------------------


class _Progress:
    """A rich spinner on stderr: SQL steps, then rows written. Off when disabled."""

    def __init__(self, enabled: bool, forced: bool = False) -> None:
        self.enabled = enabled
        self.forced = forced
        self.progress: Progress | None = None
        self.task: Any = None
        self.steps = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            # asked for explicitly (--progress): draw it even when stderr is not a terminal
            console = Console(stderr=True, force_terminal=self.forced or None)
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("汇总查询中 (aggregating)…", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def step(self) -> None:
        if self.progress is not None:
            self.steps += 1
            self.progress.update(self.task, description=f"汇总查询中 (aggregating)… {self.steps}")

    def rows(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"写出 (writing) {n:,} 行")

    def stage(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)


@contextmanager
def _text_out(output: str | None, encoding: str) -> Iterator[io.TextIOBase]:
    if output is None or output == "-":
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            yield stream
        finally:
            stream.flush()
            stream.detach()
        return
    path = Path(output)  # its folder exists (OUTPUT_FILE); none is created
    with path.open("w", encoding=encoding, newline="") as handle:
        yield handle  # type: ignore[misc]


def default_name(query: stats.Query, fmt: str) -> str:
    dims = "-".join(query.by) or "total"
    return f"stats_{query.start}_{query.end}_{dims}.{fmt}"


@stats_group.command("export")
@click.option(
    "--from", "start", type=DAY, metavar="DATE", required=True, help="起始日期, YYYY-MM-DD"
)
@click.option(
    "--to", "end", type=DAY, metavar="DATE", required=True, help="结束日期, YYYY-MM-DD (含当天)"
)
@click.option(
    "--by",
    "by",
    type=STATS_DIMS,
    metavar="DIMS",
    default="county",
    show_default=True,
    help="统计维度, 逗号分隔 (id 或中文名): " + ", ".join(stats.DIMENSIONS),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(stats.FORMATS),
    default="csv",
    show_default=True,
    help="输出格式",
)
@click.option(
    "-o",
    "--output",
    type=OUTPUT_FILE,
    metavar="FILE",
    help="输出文件 (所在文件夹须已存在); CSV/JSON 默认输出到标准输出, "
    "XLSX/HTML 默认为 stats_起_止_维度.扩展名",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="在 stderr 显示进度 (默认: stderr 是终端时)",
)
@pass_app
def export_cmd(
    app: AppContext,
    start: date,
    end: date,
    by: str,
    fmt: str,
    output: str | None,
    progress: bool | None,
) -> None:
    """按 --by 维度组合导出传播量, 格式为 CSV、JSON、XLSX 或 HTML。

    人群、主题和活动的行会重叠 (一个内容包计入它的每个人群和主题), 不能相加;
    不重复计算的总计见 XLSX/HTML 的汇总页和 stats summary --json。JSON 为一个数组:
    每个维度组合一个对象 (维度取值和各项指标), 边算边写。
    """
    query = _query(start, end, by)
    settings, store = app.settings, app.store
    show = sys.stderr.isatty() if progress is None else progress
    with _Progress(show, forced=bool(progress)) as bar:
        if fmt in ("csv", "json"):
            stream = stats.RowStream(settings, store, query, on_step=bar.step)
            encoding = "utf-8-sig" if fmt == "csv" else "utf-8"  # BOM: Excel reads UTF-8
            try:
                with _text_out(output, encoding) as out:
                    if fmt == "csv":
                        n = stats.write_csv(stream, out, on_row=bar.rows)  # type: ignore[arg-type]
                    else:
                        n = stats.write_json(
                            stream,
                            out,  # type: ignore[arg-type]
                            timezone=settings.timezone,
                            on_row=bar.rows,
                        )
            except BrokenPipeError:  # e.g. `| head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
            if output and output != "-":
                click.echo(f"已写入 (written) {output}: {n} 行", err=True)
            return
        target = output or default_name(query, fmt)
        report = stats.build_report(settings, store, query, on_step=bar.step)
        bar.stage("写出 (writing) " + target)
        if fmt == "xlsx":
            stats.write_xlsx(report, target, settings, on_row=bar.rows)
        else:
            stats.write_html(report, target, settings)
    note = "" if output else "（未指定 -o，使用默认文件名 / no -o given, default name）"
    click.echo(f"已写入 (written) {target}{note}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(stats_group)
