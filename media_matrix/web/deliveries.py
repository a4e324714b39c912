"""/deliveries (the delivery log) and /deliveries/<id> with every attempt; retry and cancel after
a confirmation; a dispatch round for operators. Operators bound to a county see and act on
their county's channels only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from media_matrix.flow import run_round
from media_matrix.models import DELIVERY_STATUS_LABELS
from media_matrix.sandbox.embedded import embedded_sandbox
from media_matrix.store import NotFound, StoreError
from media_matrix.timeutil import to_iso
from media_matrix.web import common

bp = Blueprint("deliveries", __name__)

# What an operator can do about an `unknown` delivery, per channel type.
UNKNOWN_HELP = {
    "wechat_mp": (
        "发送过程中断, 系统无法确认公众号是否已群发或发布。请登录公众号后台的「发表记录」"
        "查看这篇文章是否已发出: 已发出则无需处理; 没有发出再点「重新发送」。"
    ),
    "wecom_robot": (
        "消息可能已经发到企业微信群, 但没有收到确认。请到群里查看是否已有这条消息: "
        "没有再点「重新发送」, 以免群里重复出现。"
    ),
    "webhook": (
        "稿件可能已进入融媒体中心系统。重发会带同一个幂等键 (Idempotency-Key), "
        "对方系统会识别为同一稿件; 仍建议先在对方后台核对。"
    ),
    "outbox": "文件投放是否完成无法确认。请检查投放目录中是否有这条内容的完成标记, 再决定重发。",
}
UNKNOWN_DEFAULT = "发送结果无法确认。请到对方平台核对是否已发出, 未发出再重新发送。"


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _bounds(start: date | None, end: date | None) -> tuple[str | None, str | None]:
    tz = common.settings().tz
    lo = to_iso(datetime.combine(start, datetime.min.time(), tz)) if start else None
    hi = to_iso(datetime.combine(end + timedelta(days=1), datetime.min.time(), tz)) if end else None
    return lo, hi


def _visible_channels(channel: str | None, county: str | None) -> list[str] | None:
    names = common.scoped_channels()
    if channel or county:
        wanted = [
            c.name
            for c in common.settings().channels
            if (not channel or c.name == channel) and (not county or c.county == county)
        ]
        names = wanted if names is None else [n for n in wanted if n in names]
    return names


@bp.route("/deliveries")
def index() -> Any:
    args = request.args
    status = args.get("status", "").strip()
    channel = args.get("channel", "").strip() or None
    county = args.get("county", "").strip() or None
    start, end = _day(args.get("from")), _day(args.get("to"))
    since, until = _bounds(start, end)
    page = common.page_number()
    rows, total = common.store().page_deliveries(
        statuses=[status] if status in DELIVERY_STATUS_LABELS else [],
        channels=_visible_channels(channel, county),
        since=since,
        until=until,
        limit=common.PAGE_SIZE,
        offset=(page - 1) * common.PAGE_SIZE,
    )
    scope = common.scoped_channels()
    settings = common.settings()
    return render_template(
        "deliveries.html",
        rows=rows,
        total=total,
        page=page,
        pages=common.page_count(total),
        filters={
            "status": status,
            "channel": channel or "",
            "county": county or "",
            "from": start.isoformat() if start else "",
            "to": end.isoformat() if end else "",
        },
        channels=[c for c in settings.channels if scope is None or c.name in scope],
        counties=settings.county_names(),
    )


def _delivery_or_404(delivery_id: int) -> dict[str, Any]:
    try:
        delivery = common.store().get_delivery(delivery_id)
    except NotFound:
        abort(404)
    common.require_channel(delivery["channel"])
    return delivery


@bp.route("/deliveries/<int:delivery_id>")
def detail(delivery_id: int) -> Any:
    delivery = _delivery_or_404(delivery_id)
    settings = common.settings()
    try:
        kind = settings.channel(delivery["channel"]).type
    except Exception:  # noqa: BLE001 - a channel removed from config: still show the record
        kind = ""
    return render_template(
        "delivery.html",
        d=delivery,
        attempts=common.store().attempts_of(delivery_id),
        unknown_help=UNKNOWN_HELP.get(kind, UNKNOWN_DEFAULT),
        history=common.store().search_audit(subject=f"delivery:{delivery_id}", limit=50),
    )


def _confirmed() -> bool:
    if request.form.get("confirm") != "yes":
        flash("请先勾选确认框", "error")
        return False
    return True


@bp.route("/deliveries/<int:delivery_id>/retry", methods=["POST"])
@common.needs("deliver")
def retry(delivery_id: int) -> Any:
    return _operator_action(
        delivery_id, common.store().retry_delivery, "已重新排队, 将尽快发送", "无法重发"
    )


@bp.route("/deliveries/<int:delivery_id>/cancel", methods=["POST"])
@common.needs("deliver")
def cancel(delivery_id: int) -> Any:
    return _operator_action(delivery_id, common.store().cancel_delivery, "已取消", "无法取消")


def _operator_action(delivery_id: int, act: Callable[..., Any], done: str, refused: str) -> Any:
    """A confirmed retry or cancel by the signed-in operator, then back to the delivery."""
    _delivery_or_404(delivery_id)
    if _confirmed():
        try:
            act(delivery_id, who=common.by())
            flash(f"投递 {delivery_id} {done}", "ok")
        except StoreError as exc:
            flash(f"{refused}: {exc}", "error")
    return redirect(url_for("deliveries.detail", delivery_id=delivery_id))


@bp.route("/deliveries/dispatch", methods=["POST"])
@common.needs("deliver")
def dispatch_round() -> Any:
    """One dispatch round (sweep, send what is due, poll), like `dispatch --once`; an operator
    bound to a county runs it for their county's channels only."""
    settings = common.settings()
    names = common.scoped_channels()
    with embedded_sandbox(settings) as (live, _servers):
        result = run_round(live, common.store(), channels=names)
    d = result.dispatch
    common.store().audit(
        common.by(), "dispatch_round", "dispatch", f"送达 {d.delivered}, 失败 {d.retrying + d.dead}"
    )
    flash(
        f"投递一轮: 领取 {d.claimed}, 送达 {d.delivered}, 已提交 {d.submitted}, "
        f"将重试 {d.retrying}, 放弃 {d.dead}, 状态不明 {d.unknown}",
        "ok",
    )
    return redirect(url_for("deliveries.index"))
