"""`init`, `ingest` and `run`: the main job over the whole flow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from media_matrix.cli.common import (
    FEED,
    AppContext,
    RuntimeFailure,
    console,
    echo_json,
    echo_table,
    json_option,
    pass_app,
)
from media_matrix.cli.packs import shown
from media_matrix.errortext import error_phrase
from media_matrix.ingest import FeedReport, IngestReport, run_ingest
from media_matrix.models import DELIVERY_STATUS_LABELS, PACK_STATUS_LABELS
from media_matrix.redact import redact

PROGRESS_THRESHOLD = 5  # show a progress bar from this many feeds on


@click.command("init")
@pass_app
def init_command(app: AppContext) -> None:
    """创建或升级数据库。"""
    applied = app.store.migrate()
    click.echo(f"数据库: {app.settings.database}")
    click.echo(f"已应用迁移: {', '.join(applied) or '无 (已是最新)'}")


@click.command("ingest")
@click.option("--feed", "feed_names", type=FEED, multiple=True, help="只导入此订阅源 (可重复)")
@click.option("--due", is_flag=True, help="只抓取已到下次抓取时间的订阅源")
@json_option
@pass_app
def ingest_command(app: AppContext, feed_names: tuple[str, ...], due: bool, as_json: bool) -> None:
    """从配置的订阅源抓取、解析、清洗、去重并保存内容包; 任一订阅源失败则退出码为 1。"""
    settings = app.settings
    names = list(feed_names) or None
    total = len(names or [f for f in settings.feeds if f.enabled])
    with _progress(total, "导入订阅源") as advance:
        report = run_ingest(settings, app.store, feeds=names, due_only=due, progress=advance)
    if as_json:
        echo_json([f.to_dict() for f in report.feeds])
    else:
        print_ingest_report(report)
    if report.failed:  # any feed: a script must see a partial failure too
        raise RuntimeFailure(
            f"{len(report.failed)}/{len(report.feeds)} 个订阅源导入失败: "
            + "; ".join(f"{f.feed} ({f.error_text})" for f in report.failed)
        )


@click.command("run")
@click.option("--once", is_flag=True, help="整个流程运行一次后退出")
@json_option
@pass_app
def run_command(app: AppContext, once: bool, as_json: bool) -> None:
    """运行主流程: 导入、打标签、审核规则、排期和投递; 不带 --once 时为守护进程。"""
    if not once:
        from media_matrix.cli.schedule import start_daemon  # the daemon: until SIGTERM/SIGINT

        start_daemon(app)
        return
    from media_matrix.flow import run_once  # the whole flow: only `run` loads it
    from media_matrix.sandbox.embedded import embedded_sandbox

    total = len([f for f in app.settings.feeds if f.enabled])
    with embedded_sandbox(app.settings) as (settings, servers):
        if servers is not None and not as_json:
            click.echo("沙箱渠道服务 (sandbox channels): " + ", ".join(servers.urls.values()))
        with _progress(total, "导入订阅源") as advance:
            result = run_once(settings, app.store, progress=advance)
    if as_json:
        echo_json(result.to_dict())
        return
    print_ingest_report(result.ingest)
    packs = app.store.list_packs(ids=result.ingest.new_pack_ids) if result.ingest.feeds else []
    if packs:
        echo_table(
            ["ID", "状态", "标题", "来源"],
            [
                (p.id, PACK_STATUS_LABELS.get(p.status, p.status), p.title, ", ".join(p.feeds))
                for p in packs
            ],
            title=f"本次新增内容包 ({len(packs)})",
        )
    counts = app.store.count_packs_by_status()
    click.echo(
        "库中内容包: "
        + ", ".join(f"{PACK_STATUS_LABELS.get(k, k)} {v}" for k, v in sorted(counts.items()))
    )
    print_delivery_log(result.deliveries)
    if result.track_urls:
        echo_table(
            ["投递", "渠道", "跟踪链接 (扫码或点击计为一次点击)"],
            [
                (d["id"], d["channel"], result.track_urls.get(d["id"], ""))
                for d in result.deliveries
            ],
            title="跟踪链接",
        )
    if result.officers is not None:
        click.echo(f"科普信息员名册: 新增 {result.officers[0]}, 更新 {result.officers[1]}")
    if result.requests is not None:
        click.echo(f"纸质群众点单: 新增 {result.requests[0]}, 已存在 {result.requests[1]}")


def print_delivery_log(deliveries: list[dict]) -> None:
    """The delivery log of this run: one row per delivery, then totals per channel."""
    if not deliveries:
        click.echo("本次没有需要分发的内容 (nothing to send this run)")
        return
    echo_table(
        ["投递", "渠道", "内容包", "标题", "状态", "尝试", "链接/远端编号", "错误"],
        [
            (
                d["id"],
                d["channel"],
                d["pack_id"],
                d["pack_title"],
                DELIVERY_STATUS_LABELS.get(d["status"], d["status"]),
                d["attempts"],
                d["url"] or d["remote_id"] or "",
                error_phrase(d["last_error"]),
            )
            for d in deliveries
        ],
        title="本次分发记录",
    )
    totals: dict[str, dict[str, int]] = {}
    for d in deliveries:
        per = totals.setdefault(d["channel"], {})
        per[d["status"]] = per.get(d["status"], 0) + 1
    for channel, per in sorted(totals.items()):
        parts = ", ".join(f"{DELIVERY_STATUS_LABELS.get(k, k)} {v}" for k, v in sorted(per.items()))
        click.echo(f"  {channel}: {parts}")


def print_ingest_report(report: IngestReport) -> None:
    rows = []
    for f in report.feeds:
        if f.skipped:
            state = "未到时间"
        elif f.failed:
            state = f"失败: {f.error_text}"
        elif f.not_modified:
            state = "未变化 (304)"
        else:
            state = "成功"
        if f.item_errors:
            state += f"; {len(f.item_errors)} 条出错"
        if f.warnings:
            state += f"; {len(f.warnings)} 条已修正"
        rows.append((f.feed, f.kind, f.new, f.updated, f.merged, f.unchanged, shown(state)))
    echo_table(["订阅源", "类型", "新增", "更新", "合并", "未变", "结果"], rows, title="导入结果")
    for title, pairs in (
        ("未能导入的条目 (原文件保留不动)", "item_errors"),
        ("导入时已修正的条目 (丢弃或改正的内容及原因)", "warnings"),
    ):
        rows = [
            (f.feed, shown(s), shown(redact(e))) for f in report.feeds for s, e in getattr(f, pairs)
        ]
        if rows:
            echo_table(["订阅源", "条目", "原因"], rows, title=title)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[FeedReport], None]]:
    if total < PROGRESS_THRESHOLD:
        yield lambda report: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console().__class__(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("", total=total)
        yield lambda report: progress.update(task, advance=1, description=report.feed)


def register(cli: click.Group) -> None:
    for command in (init_command, ingest_command, run_command):
        cli.add_command(command)
