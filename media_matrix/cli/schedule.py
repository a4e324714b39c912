"""`queue`, `unqueue`, `plan`, `status` and `daemon`: when and where packs go out."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import click

from media_matrix import overview, scheduling
from media_matrix.cli.common import (
    CHANNEL,
    DAYS,
    ID,
    MOMENT,
    MOMENT_OR_NOW,
    AppContext,
    RuntimeFailure,
    UsageFailure,
    by_option,
    default_user,
    echo_json,
    echo_table,
    json_option,
    note_option,
    pass_app,
)
from media_matrix.errortext import error_phrase
from media_matrix.models import DELIVERY_STATUS_LABELS, PACK_STATUS_LABELS
from media_matrix.redact import redact
from media_matrix.store import NotFound, StoreError
from media_matrix.store.deliveries import AlreadyQueued
from media_matrix.timeutil import local_text, utcnow

WEEKDAYS = "一二三四五六日"
STATE_LABELS = {**DELIVERY_STATUS_LABELS, "proposal": "拟排 (建议)"}
HEALTH_LABELS = {"ok": "正常", "failing": "失败", "never": "未抓取", "disabled": "已停用"}


def _when(app: AppContext, text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return scheduling.parse_when(text, app.settings.tz)
    except ValueError as exc:
        raise UsageFailure(f"{option}: {exc}") from None


def _local(app: AppContext, at: str | None) -> str:
    return local_text(at, app.settings.tz)


def _check_channel(app: AppContext, name: str | None) -> None:
    if name is not None:
        try:
            scheduling.config_channel(app.settings, name)
        except scheduling.UnknownChannel as exc:
            raise UsageFailure(str(exc)) from None


# -- queue / unqueue ----------------------------------------------------------------------------


@click.command("queue")
@click.argument("pack_id", type=ID, required=False)
@click.option("--channel", "channel", type=CHANNEL, default=None, help="渠道 (名称或标题)")
@click.option(
    "--at",
    "at_text",
    type=MOMENT_OR_NOW,
    default=None,
    metavar="ISO",
    help="在此时间发送 (或 now 立即), 不占时段",
)
@click.option("--resend", is_flag=True, help="重发到已发过的渠道 (新版次)")
@click.option("--force", is_flag=True, help="区县不符或渠道停用时仍然排期")
@click.option("--auto", is_flag=True, help="由规划器自动填满未来的时段")
@click.option("--days", type=DAYS, default=7.0, show_default=True, help="向前看几天, 最多 366")
@click.option(
    "--now",
    "now_text",
    type=MOMENT,
    default=None,
    metavar="ISO",
    help="按此时刻规划 (仅与 --dry-run 同用)",
)
@click.option("--dry-run", is_flag=True, help="与 --auto 同用: 只显示将排入的内容, 不写入")
@by_option
@note_option
@json_option
@pass_app
def queue_command(
    app: AppContext,
    pack_id: int | None,
    channel: str | None,
    at_text: str | None,
    resend: bool,
    force: bool,
    auto: bool,
    days: float,
    now_text: str | None,
    dry_run: bool,
    by: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """把内容包排到渠道 (下一个有空位的时段, 或 --at 指定时间), 或用 --auto 自动排满时段。

    \b
    media-matrix queue 12 --channel qingfeng-media-centre [--at 2024-09-10T08:00 | --at now]
    media-matrix queue --auto [--days 7] [--dry-run [--now 2024-09-10T06:00]]
    不带时区的时间按配置时区理解; 过去的 --at 会被拒绝。
    --now 只用于演练 (--dry-run): 真正写入的排期总以当前时间为准。
    """
    who = by or default_user()
    if now_text is not None and not (auto and dry_run):
        raise UsageFailure(
            "--now 只能用于只读的 plan 或 queue --auto --dry-run; 写入的排期总以当前时间为准 "
            "(--now only moves the clock for read-only planning)"
        )
    if auto:
        if pack_id is not None or channel or at_text or resend or force:
            raise UsageFailure("queue --auto 不接受内容包 ID、--channel、--at、--resend 或 --force")
        now = _when(app, now_text, "--now")
        report = scheduling.queue_auto(
            app.settings, app.store, days, now, by=who, dry_run=dry_run, note=note
        )
        if as_json:
            echo_json(report.to_dict())
            return
        _print_auto(app, report)
        return
    if dry_run:
        raise UsageFailure("--dry-run 只用于 queue --auto")
    if pack_id is None or not channel:
        raise UsageFailure("用法: queue ID --channel NAME [--at ISO] [--resend], 或 queue --auto")
    _check_channel(app, channel)
    now = utcnow()
    at = now if (at_text or "").strip().lower() == "now" else _when(app, at_text, "--at")
    try:
        queued = scheduling.queue_pack(
            app.settings,
            app.store,
            pack_id,
            channel,
            at,
            by=who,
            resend=resend,
            force=force,
            now=now,
            note=note,
        )
    except NotFound as exc:
        raise RuntimeFailure(f"未找到 (not found): {exc}") from None
    except (scheduling.SchedulingError, AlreadyQueued) as exc:
        raise RuntimeFailure(str(exc)) from None
    except scheduling.PastTime as exc:
        raise UsageFailure(f"--at: {exc}") from None
    if as_json:
        echo_json(queued.to_dict())
        return
    kind = "时段" if queued.slot_at else "指定时间"
    click.echo(
        f"已排期: 内容包 {queued.pack_id} -> {queued.channel}, {kind} "
        f"{_local(app, queued.scheduled_at)} (投递 {queued.delivery_id})"
    )
    for warning in queued.warnings:
        click.echo(f"提示: {warning}", err=True)


def _print_auto(app: AppContext, report: scheduling.AutoReport) -> None:
    if report.queued:
        echo_table(
            ["投递", "内容包", "渠道", "时间", "理由"],
            [
                (
                    q.delivery_id,
                    q.pack_id,
                    q.channel,
                    _local(app, q.scheduled_at) + (" ⚡紧急" if q.urgent else ""),
                    q.reason,
                )
                for q in report.queued
            ],
            title=("演练 (未写入): " if report.dry_run else "")
            + f"自动排期 {len(report.queued)} 条 (自 {_local(app, report.now)} 起 "
            f"{report.days:g} 天)",
        )
    else:
        click.echo("没有可排的内容: 时段已满, 或没有匹配的已通过内容包")
    for skip in report.skipped:
        click.echo(f"未排入: 内容包 {skip['pack_id']} -> {skip['channel']}: {skip['reason']}")


@click.command("unqueue")
@click.argument("delivery_id", type=ID)
@by_option
@note_option
@json_option
@pass_app
def unqueue_command(
    app: AppContext, delivery_id: int, by: str | None, note: str | None, as_json: bool
) -> None:
    """撤回尚未开始的排队投递。"""
    try:
        delivery = scheduling.unqueue(
            app.store, delivery_id, by or default_user(), note, tz=app.settings.tz
        )
    except NotFound as exc:
        raise RuntimeFailure(f"未找到 (not found): {exc}") from None
    except StoreError as exc:
        raise RuntimeFailure(str(exc)) from None
    if as_json:
        echo_json({"delivery_id": delivery["id"], "status": "cancelled", "was": delivery})
        return
    click.echo(
        f"已撤回投递 {delivery['id']}: 内容包 {delivery['pack_id']} ({delivery['pack_title']}) "
        f"-> {delivery['channel']}, 原定 {_local(app, delivery['scheduled_at'])}"
    )


# -- plan ---------------------------------------------------------------------------------------


@click.command("plan")
@click.option("--days", type=DAYS, default=3.0, show_default=True, help="向前看几天, 最多 366")
@click.option("--channel", type=CHANNEL, default=None, help="只看此渠道 (名称或标题)")
@click.option(
    "--now", "now_text", type=MOMENT, default=None, metavar="ISO", help="按此时刻规划 (只读)"
)
@json_option
@pass_app
def plan_command(
    app: AppContext, days: float, channel: str | None, now_text: str | None, as_json: bool
) -> None:
    """排期日历: 未来的时段, 已排的投递和规划器的建议 (拟排)。"""
    _check_channel(app, channel)
    now = _when(app, now_text, "--now")
    view = scheduling.plan_view(app.settings, app.store, days, channel, now)
    if as_json:
        echo_json(view)
        return
    _print_plan(app, view)


def _print_plan(app: AppContext, view: dict[str, Any]) -> None:
    days: dict[str, list[tuple[str, str, str, str, str, str]]] = defaultdict(list)

    def add(at: str, channel: dict[str, Any], content: str, state: str, note: str) -> None:
        day, clock = _local(app, at).split(" ")
        title = app.settings.channel_title(channel["name"])
        days[day].append((clock, title, content, state, note, at))

    for channel in view["channels"]:
        off = "" if channel["enabled"] else " (已停用)"
        for slot in channel["slots"]:
            for item in slot["items"]:
                add(slot["at"], channel, _content(item), _state(item) + off, _note(item))
            if slot["free"]:
                add(slot["at"], channel, f"(空位 ×{slot['free']})", "空闲" + off, "")
        for item in channel["other"]:
            add(item["at"], channel, _content(item), _state(item) + off, "非时段; " + _note(item))
    if not days:
        click.echo(
            f"未来 {view['days']:g} 天没有时段 "
            f"(自 {_local(app, view['now'])} 起, {view['timezone']})"
        )
        return
    for day in sorted(days):
        rows = sorted(days[day], key=lambda r: (r[5], r[1]))
        weekday = WEEKDAYS[datetime.fromisoformat(day).weekday()]
        echo_table(
            ["时间", "渠道", "内容", "状态", "说明"],
            [row[:5] for row in rows],
            title=f"{day} 星期{weekday}",
        )
    click.echo(
        f"时区 {view['timezone']}; 自 {_local(app, view['now'])} 起 {view['days']:g} 天; 拟排为建议"
    )


def _content(item: dict[str, Any]) -> str:
    return f"#{item['pack_id']} {item['title']}" + (" ⚡" if item["urgent"] else "")


def _state(item: dict[str, Any]) -> str:
    label = STATE_LABELS.get(item["status"], item["status"])
    if item["delivery_id"]:
        label += f" (投递 {item['delivery_id']})"
    return label


def _note(item: dict[str, Any]) -> str:
    return item.get("reason") or ""


# -- status -------------------------------------------------------------------------------------


@click.command("status")
@json_option
@pass_app
def status_command(app: AppContext, as_json: bool) -> None:
    """运行状况: 订阅源健康、各渠道队列、下一时段、最近错误。"""
    view = overview.status_view(app.settings, app.store)
    if as_json:
        echo_json(view)
        return
    daemon = view["daemon"]
    if daemon.get("running"):
        click.echo(
            f"守护进程: 运行中 (pid {daemon['pid']} @ {daemon['host']}, "
            f"心跳 {daemon['heartbeat_age_seconds']:.0f} 秒前)"
        )
    elif "pid" in daemon:
        click.echo(f"守护进程: 未运行 (残留锁 pid {daemon['pid']} @ {daemon['host']})")
    else:
        click.echo("守护进程: 未运行")
    packs = view["packs"]
    click.echo(
        "内容包: "
        + (
            ", ".join(f"{PACK_STATUS_LABELS.get(k, k)} {v}" for k, v in sorted(packs.items()))
            or "无"
        )
    )
    echo_table(
        ["订阅源", "类型", "状态", "上次抓取", "连续失败", "下次抓取", "错误"],
        [
            (
                f["name"],
                f["kind"],
                HEALTH_LABELS.get(f["health"], f["health"]),
                _local(app, f["last_fetch_at"]),
                f["failures"],
                _local(app, f["next_fetch_at"]),
                error_phrase(f["last_error"]),
            )
            for f in view["feeds"]
        ],
        title="订阅源",
    )
    echo_table(
        ["渠道", "类型", "区县", "待发送", "发送中", "失败", "放弃", "未知", "已送达", "下一时段"],
        [
            (
                app.settings.channel_title(c["name"]) + ("" if c["enabled"] else " (停用)"),
                c["type"],
                c["county"],
                c["queued"],
                c["in_flight"],
                c["failed"],
                c["dead"],
                c["unknown"],
                c["delivered"],
                ", ".join(_local(app, s) for s in c["next_slots"]) or "-",
            )
            for c in view["channels"]
        ],
        title="渠道与队列",
    )
    if view["errors"]:
        echo_table(
            ["时间", "类别", "对象", "错误"],
            [
                (
                    _local(app, e["at"]),
                    ERROR_KINDS.get(e["kind"], e["kind"]),
                    e["subject"],
                    redact(e["error"] or "")[:100]
                    if e["kind"] == "feed_item"  # a content problem, already in words
                    else error_phrase(e["error"]),
                )
                for e in view["errors"]
            ],
            title="最近错误",
        )
    else:
        click.echo("最近没有错误")


ERROR_KINDS = {"feed": "订阅源", "feed_item": "条目", "delivery": "投递"}


# -- daemon -------------------------------------------------------------------------------------


def start_daemon(app: AppContext) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT (`daemon`, `run` without --once)."""
    from media_matrix.daemon import DaemonRefused, run_daemon
    from media_matrix.sandbox.embedded import embedded_sandbox

    app.store.migrate()  # create or upgrade before the daemon opens its own connections
    app.close()
    try:
        with embedded_sandbox(app.settings) as (settings, _servers):
            code = run_daemon(settings)
    except DaemonRefused as exc:
        raise RuntimeFailure(str(exc)) from None
    if code:
        raise click.exceptions.Exit(code)


@click.command("daemon")
@pass_app
def daemon_command(app: AppContext) -> None:
    """运行调度守护进程: 按间隔抓取订阅源, 按时段投递各渠道, 定时清理。

    每个事件在 stderr 输出一行 JSON 日志; SIGTERM/SIGINT 平稳停止。
    """
    start_daemon(app)


def register(cli: click.Group) -> None:
    for command in (queue_command, unqueue_command, plan_command, status_command, daemon_command):
        cli.add_command(command)
