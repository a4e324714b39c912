"""`dispatch [--once]` and `deliveries [show|retry|cancel]`: sending and the delivery log."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import click

from media_matrix import dispatch as engine
from media_matrix.cli.common import (
    CHANNEL,
    DELIVERY_STATUS,
    ID,
    LIMIT,
    AppContext,
    BoundedFloat,
    RuntimeFailure,
    by_option,
    default_user,
    echo_json,
    echo_table,
    json_option,
    local_time,
    note_option,
    pass_app,
    redacted_stderr_logging,
)
from media_matrix.errortext import error_phrase
from media_matrix.flow import run_round
from media_matrix.models import (
    ATTEMPT_KIND_LABELS,
    ATTEMPT_OUTCOME_LABELS,
    DELIVERY_STATUS_LABELS,
)
from media_matrix.redact import redact
from media_matrix.sandbox.embedded import embedded_sandbox

OUTCOME_LABELS = ATTEMPT_OUTCOME_LABELS
KIND_LABELS = ATTEMPT_KIND_LABELS


def _label(status: str) -> str:
    return DELIVERY_STATUS_LABELS.get(status, status)


# -- dispatch -----------------------------------------------------------------------------------


@click.command("dispatch")
@click.option("--once", is_flag=True, help="清理、发送到期的投递、查询发布状态, 然后退出")
@click.option(
    "--channel", "channel_names", type=CHANNEL, multiple=True, help="只投递此渠道 (可重复)"
)
@click.option(
    "--interval",
    type=BoundedFloat(0.1, 3600),
    default=5.0,
    show_default=True,
    help="不带 --once 时每轮间隔秒数",
)
@click.option(
    "--wait",
    "wait_s",
    type=BoundedFloat(0, 86400),
    default=0.0,
    show_default=True,
    help="与 --once 同用: 最多再等这么多秒查询发布中的微信文章",
)
@json_option
@pass_app
def dispatch_command(
    app: AppContext,
    once: bool,
    channel_names: tuple[str, ...],
    interval: float,
    wait_s: float,
    as_json: bool,
) -> None:
    """投递到期的分发任务; 不带 --once 时循环运行, 直到 Ctrl-C。"""
    settings = app.settings
    names = list(channel_names) or None
    if names:
        for name in names:
            settings.channel(name)  # ConfigError (exit 2) for an unknown channel
    redacted_stderr_logging()
    store = app.store
    if once:
        with embedded_sandbox(settings) as (settings, _servers):
            result = run_round(settings, store, channels=names, wait=wait_s)
        if as_json:
            echo_json(result.to_dict())
        else:
            _print_round(result.sweep, result.dispatch, result.poll, verbose=True)
            click.echo(
                "投递状态: "
                + (", ".join(f"{_label(k)} {v}" for k, v in sorted(result.counts.items())) or "无")
            )
            if result.unknown_ids:
                click.echo(
                    "状态不明、需人工核实的投递: "
                    + ", ".join(map(str, result.unknown_ids))
                    + " (用 `deliveries show ID` 查看, `deliveries retry ID` 重发)"
                )
        if result.paused:
            raise RuntimeFailure(
                "渠道已暂停 (channel paused): "
                + "; ".join(f"{name}: {reason}" for name, reason in result.paused.items())
            )
        return
    click.echo(f"开始投递循环, 每 {interval:g} 秒一轮; 按 Ctrl-C 停止。")
    try:
        with embedded_sandbox(settings) as (settings, _servers):
            while True:
                try:
                    result = run_round(settings, store, channels=names, poll=False)
                    swept, report = result.sweep, result.dispatch
                except (sqlite3.Error, OSError) as exc:  # e.g. database locked: next round
                    click.echo(f"本轮出错, 稍后重试 (round failed, will retry): {exc}", err=True)
                    time.sleep(interval)
                    continue
                if as_json:
                    if swept.expired or swept.polled or report.claimed:
                        echo_json({"sweep": swept.to_dict(), "dispatch": report.to_dict()})
                else:
                    _print_round(swept, report, None, verbose=False)
                time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("已停止投递循环 (stopped).")


def _print_round(
    swept: engine.SweepReport,
    report: engine.DispatchReport,
    polled: engine.SweepReport | None,
    *,
    verbose: bool,
) -> None:
    stamp = time.strftime("%H:%M:%S")
    if swept.expired:
        click.echo(
            f"[{stamp}] 恢复过期租约 {swept.expired} 条: 放回队列 {swept.released}, "
            f"重新发送/核对 {swept.recovered}, 状态不明 {len(swept.unknown_ids)}"
        )
    polls = [r for r in (swept, polled) if r is not None and r.polled]
    for r in polls:
        click.echo(
            f"[{stamp}] 查询发布状态 {r.polled} 条: 已送达 {r.delivered}, 发布失败 {r.dead}, "
            f"仍在发布 {r.submitted}"
        )
    if report.claimed or verbose:
        click.echo(
            f"[{stamp}] 投递 {report.claimed} 条 ({report.messages} 条消息): "
            f"送达 {report.delivered}, 已提交 {report.submitted}, 将重试 {report.retrying}, "
            f"配额顺延 {report.quota}, 放弃 {report.dead}, 状态不明 {report.unknown}, "
            f"退回队列 {report.released}"
        )
    for name, reason in {**swept.paused, **report.paused}.items():
        click.echo(f"[{stamp}] ⚠ 渠道 {name} 本轮暂停: {reason}", err=True)
    for line in report.errors[:5]:  # "channel [ids]: raw detail" (the raw detail is logged)
        where, _, detail = line.partition(": ")
        click.echo(f"[{stamp}] 错误: {where}: {error_phrase(detail)}", err=True)


# -- deliveries ---------------------------------------------------------------------------------


def _row(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": d["id"],
        "pack_id": d["pack_id"],
        "pack_title": d.get("pack_title"),
        "channel": d["channel"],
        "status": d["status"],
        "scheduled_at": d["scheduled_at"],
        "next_attempt_at": d.get("next_attempt_at"),
        "attempts": d["attempts"],
        "remote_id": d.get("remote_id"),
        "url": d.get("url"),
        "last_error": d.get("last_error"),
        "error_text": error_phrase(d.get("last_error")),
        "edition": d.get("edition"),
        "uid": d.get("uid"),
        "delivered_at": d.get("delivered_at"),
        "updated_at": d.get("updated_at"),
    }


@click.group("deliveries", invoke_without_command=True)
@click.option("--status", type=DELIVERY_STATUS, default=None, help="只列此状态 (id 或中文名)")
@click.option("--channel", type=CHANNEL, default=None, help="只列此渠道 (名称或标题)")
@click.option("--limit", type=LIMIT, default=None)
@json_option
@click.pass_context
def deliveries_group(
    ctx: click.Context, status: str | None, channel: str | None, limit: int | None, as_json: bool
) -> None:
    """投递记录: 列出, 或查看 (show) / 重新投递 (retry) / 取消 (cancel) 一条。"""
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.find_object(AppContext)
    rows = [_row(d) for d in app.store.list_deliveries(status=status, channel=channel, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["ID", "内容包", "渠道", "状态", "计划时间", "尝试", "远端ID", "链接", "最近错误"],
        [
            (
                r["id"],
                f"{r['pack_id']} {r['pack_title'] or ''}".strip(),
                app.settings.channel_title(r["channel"]),
                _label(r["status"]),
                local_time(app, r["scheduled_at"]),
                r["attempts"],
                r["remote_id"] or "",
                r["url"] or "",
                r["error_text"],
            )
            for r in rows
        ],
        title=f"投递记录 ({len(rows)})",
    )


@deliveries_group.command("show")
@click.argument("delivery_id", type=ID)
@json_option
@pass_app
def show_delivery(app: AppContext, delivery_id: int, as_json: bool) -> None:
    """查看一条投递及其全部尝试记录。"""
    delivery = app.store.get_delivery(delivery_id)
    attempts = app.store.attempts_of(delivery_id)
    if as_json:
        echo_json(
            {
                **_row(delivery),
                "remote_state": delivery.get("remote_state"),
                "lease_owner": delivery.get("lease_owner"),
                "lease_until": delivery.get("lease_until"),
                "slot_at": delivery.get("slot_at"),
                "batch": delivery.get("batch"),
                "attempt_log": attempts,
            }
        )
        return
    r = _row(delivery)
    click.echo(f"投递 {r['id']}  ({r['uid']})")
    click.echo(f"  内容包: {r['pack_id']} {r['pack_title'] or ''}")
    click.echo(f"  渠道:   {app.settings.channel_title(r['channel'])}   版次: {r['edition']}")
    click.echo(f"  状态:   {_label(r['status'])}   计入重试的尝试: {r['attempts']}")
    click.echo(f"  计划:   {local_time(app, r['scheduled_at'])}")
    if r["next_attempt_at"]:
        click.echo(f"  下次尝试: {local_time(app, r['next_attempt_at'])}")
    if delivery.get("lease_owner"):
        click.echo(
            f"  租约:   {delivery['lease_owner']} 至 {local_time(app, delivery['lease_until'])}"
        )
    if r["remote_id"]:
        click.echo(f"  远端ID: {r['remote_id']}")
    if r["url"]:
        click.echo(f"  链接:   {r['url']}")
    if r["delivered_at"]:
        click.echo(f"  送达:   {local_time(app, r['delivered_at'])}")
    if r["last_error"]:
        click.echo(f"  最近错误: {r['error_text']}")
        click.echo(f"  错误详情: {redact(r['last_error'])}")
    echo_table(
        ["#", "类型", "开始", "结束", "结果", "HTTP", "远端ID", "错误", "下次尝试", "响应摘录"],
        [
            (
                a["n"],
                KIND_LABELS.get(a.get("kind") or "", a.get("kind")),
                local_time(app, a["started_at"]),
                local_time(app, a["finished_at"]) if a["finished_at"] else "(未结束)",
                OUTCOME_LABELS.get(a["outcome"] or "", a["outcome"] or ""),
                a["http_status"] or "",
                a["remote_id"] or "",
                error_phrase(a["error"] or a["http_status"]),
                local_time(app, a["retry_at"]) if a.get("retry_at") else "",
                redact(a["excerpt"] or "")[:120],
            )
            for a in attempts
        ],
        title=f"尝试记录 ({len(attempts)})",
    )


@deliveries_group.command("retry")
@click.argument("delivery_id", type=ID)
@by_option
@note_option
@json_option
@pass_app
def retry_delivery(
    app: AppContext, delivery_id: int, by: str | None, note: str | None, as_json: bool
) -> None:
    """重新投递: 已放弃、状态不明、失败或已取消的投递重新排队, 立即到期。"""
    delivery = app.store.retry_delivery(delivery_id, who=by or default_user(), note=note)
    if as_json:
        echo_json(_row(delivery))
        return
    click.echo(f"投递 {delivery_id} 已重新排队 (queued), 下一轮投递时发送。")


@deliveries_group.command("cancel")
@click.argument("delivery_id", type=ID)
@by_option
@note_option
@json_option
@pass_app
def cancel_delivery(
    app: AppContext, delivery_id: int, by: str | None, note: str | None, as_json: bool
) -> None:
    """取消尚未发出的投递 (不可取消已送达、发送中或发布中的投递)。"""
    delivery = app.store.cancel_delivery(delivery_id, who=by or default_user(), note=note)
    if as_json:
        echo_json(_row(delivery))
        return
    click.echo(f"投递 {delivery_id} 已取消 (cancelled)。")


def register(cli: click.Group) -> None:
    cli.add_command(dispatch_command)
    cli.add_command(deliveries_group)
