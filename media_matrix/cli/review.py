"""`packs approve|reject|urgent` and `audit`: the editor's review, and the log of who did what."""

from __future__ import annotations

import click

from media_matrix import review, scheduling
from media_matrix.cli.common import (
    ID,
    LIMIT,
    AppContext,
    RuntimeFailure,
    by_option,
    default_user,
    echo_json,
    echo_table,
    json_option,
    note_option,
    pass_app,
)
from media_matrix.cli.packs import packs_group
from media_matrix.models import PACK_STATUS_LABELS, audit_action_label, audit_note_text
from media_matrix.timeutil import local_text


def _local(at: str | None, app: AppContext) -> str:
    return local_text(at, app.settings.tz)


def _print_result(result: review.ReviewResult, verb: str) -> None:
    rows = []
    for item in result.to_dict()["packs"]:
        before = PACK_STATUS_LABELS.get(item["before"], item["before"])
        after = PACK_STATUS_LABELS.get(item["after"], item["after"])
        notes = []
        if item["cancelled_deliveries"]:
            notes.append("已撤回投递 " + ", ".join(map(str, item["cancelled_deliveries"])))
        if item["started_deliveries"]:
            notes.append("已开始的投递未动 " + ", ".join(map(str, item["started_deliveries"])))
        rows.append((item["id"], before, after, "; ".join(notes)))
    echo_table(["ID", "原状态", "新状态", "说明"], rows, title=f"已{verb} {len(rows)} 个内容包")


@packs_group.command("approve")
@click.argument("pack_ids", nargs=-1, type=ID, required=True)
@by_option
@note_option
@json_option
@pass_app
def approve_command(
    app: AppContext, pack_ids: tuple[int, ...], by: str | None, note: str | None, as_json: bool
) -> None:
    """审核通过内容包 (待审或已驳回的); 全部成功或全部不变。"""
    try:
        result = review.approve(app.store, pack_ids, by or default_user(), note)
    except review.ReviewError as exc:
        raise RuntimeFailure(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
    else:
        _print_result(result, "通过")


@packs_group.command("reject")
@click.argument("pack_ids", nargs=-1, type=ID, required=True)
@by_option
@note_option
@json_option
@pass_app
def reject_command(
    app: AppContext, pack_ids: tuple[int, ...], by: str | None, note: str | None, as_json: bool
) -> None:
    """驳回内容包 (待审或已通过的; 已通过的, 尚未开始的投递一并撤回)。"""
    try:
        result = review.reject(app.store, pack_ids, by or default_user(), note)
    except review.ReviewError as exc:
        raise RuntimeFailure(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
    else:
        _print_result(result, "驳回")


@packs_group.command("urgent")
@click.argument("pack_id", type=ID)
@click.option("--off", is_flag=True, help="取消紧急标记")
@by_option
@note_option
@json_option
@pass_app
def urgent_command(
    app: AppContext, pack_id: int, off: bool, by: str | None, note: str | None, as_json: bool
) -> None:
    """标记紧急 (灾害、气象、安全预警): 审核通过后立即发往所有匹配渠道,
    不等时段、不受免打扰时段限制, 但仍受每日配额约束。"""
    try:
        result = scheduling.flag_urgent(
            app.settings, app.store, pack_id, not off, by=by or default_user(), note=note
        )
    except review.ReviewError as exc:
        raise RuntimeFailure(str(exc)) from None
    changed, queued = result.changed, result.queued
    if as_json:
        echo_json(
            {
                "pack_id": pack_id,
                "urgent": not off,
                "changed": changed,
                "status": result.status,
                "queued": [q.to_dict() for q in queued.queued] if queued else [],
                "skipped": queued.skipped if queued else [],
            }
        )
        return
    state = "紧急" if not off else "非紧急"
    click.echo(f"内容包 {pack_id} 已标记为{state}" + ("" if changed else " (原本如此)"))
    if not off and result.status != "approved":
        click.echo("该内容包尚未通过审核; 通过后将立即发往所有匹配渠道")
    if queued is not None:
        if queued.queued:
            echo_table(
                ["投递", "渠道", "时间"],
                [(q.delivery_id, q.channel, _local(q.scheduled_at, app)) for q in queued.queued],
                title="已立即排入",
            )
        for skip in queued.skipped:
            click.echo(f"未排入 {skip['channel']}: {skip['reason']}")
        if not queued.queued and not queued.skipped:
            click.echo("没有尚未排入的匹配渠道")


@click.command("audit")
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@click.option("--subject", default=None, help="只看此对象, 例如 pack:12")
@json_option
@pass_app
def audit_command(app: AppContext, limit: int, subject: str | None, as_json: bool) -> None:
    """操作日志: 编辑和运维的操作, 最新的在前。"""
    rows = app.store.audit_log(limit=limit, subject=subject)
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["时间", "操作人", "操作", "对象", "备注"],
        [
            (
                _local(r["at"], app),
                r["who"],
                audit_action_label(r["action"]),
                r["subject"],
                audit_note_text(r["note"]),
            )
            for r in rows
        ],
        title=f"操作日志 ({len(rows)})",
    )


def register(cli: click.Group) -> None:
    # approve/reject/urgent are on the packs group (added by the decorators above)
    cli.add_command(audit_command)
