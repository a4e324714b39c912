"""/calendar: a week of slots per channel with bookings and the planner's proposals (拟排);
queue a pack into a slot, unqueue, and fill the coming slots after a preview."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from media_matrix import scheduling
from media_matrix.calendar import slot_text, week_view
from media_matrix.store import StoreError
from media_matrix.timeutil import utcnow
from media_matrix.web import common

bp = Blueprint("plan", __name__)

FILL_DAYS = (1, 3, 7)


def _week_start(text: str | None) -> date:
    """The first day of the seven shown: the day asked for, else today."""
    today = utcnow().astimezone(common.settings().tz).date()
    try:
        return date.fromisoformat(text) if text else today
    except ValueError:
        return today


def _channel_names(channel: str | None, county: str | None) -> list[str]:
    names = [
        c.name
        for c in common.settings().channels
        if (not channel or c.name == channel) and (not county or c.county == county)
    ]
    return names


def _window(monday: date) -> tuple[datetime, datetime] | None:
    """[start, end) of the seven days shown, from now when they have begun; None when past."""
    tz = common.settings().tz
    start = datetime.combine(monday, datetime.min.time(), tz)
    end = start + timedelta(days=7)
    now = utcnow()
    return None if end <= now else (max(start, now), end)


def _calendar(monday: date, channel: str | None, county: str | None) -> dict[str, Any]:
    """The week's slots and bookings for the chosen channels (proposals load separately)."""
    window = _window(monday)
    if window is None:
        return {"channels": [], "past": True}
    names = set(_channel_names(channel, county))
    chans = [c for c in common.settings().channels if c.name in names]
    return {"channels": week_view(common.settings(), common.store(), *window, chans), "past": False}


@bp.route("/calendar/proposals")
def proposals() -> Any:
    """The planner's proposals (拟排) for the window: an htmx fragment, computed apart from the
    calendar (the planner reads candidates as far as the free slots take them)."""
    channel = request.args.get("channel", "").strip() or None
    county = request.args.get("county", "").strip() or None
    if channel and channel not in {c.name for c in common.settings().channels}:
        abort(404)
    window = _window(_week_start(request.args.get("week")))
    rows: list[dict[str, Any]] = []
    if window is not None:
        begin, end = window
        rows = scheduling.plan_proposals(
            common.settings(),
            common.store(),
            days=(end - begin).total_seconds() / 86400,
            channels=_channel_names(channel, county),
            now=begin,
        )
    return render_template("proposals.html", proposals=_labelled(rows))


def _labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each proposal with its slot label and channel title, computed once per distinct value
    (a week may propose a thousand rows over a few dozen slots and channels)."""
    settings = common.settings()
    labels: dict[str, str] = {}
    titles: dict[str, str] = {}
    for row in rows:
        at, name = row["at"], row["channel"]
        if at not in labels:
            labels[at] = slot_text(datetime.fromisoformat(at).astimezone(settings.tz))
        if name not in titles:
            titles[name] = settings.channel_title(name)
        row["label"], row["channel_title"] = labels[at], titles[name]
    return rows


@bp.route("/calendar")
def calendar() -> Any:
    settings = common.settings()
    channel = request.args.get("channel", "").strip() or None
    county = request.args.get("county", "").strip() or None
    if channel and channel not in {c.name for c in settings.channels}:
        abort(404)
    monday = _week_start(request.args.get("week"))
    pack = request.args.get("pack", "").strip()
    return render_template(
        "calendar.html",
        view=_calendar(monday, channel, county),
        monday=monday,
        days=[monday + timedelta(days=i) for i in range(7)],
        prev_week=(monday - timedelta(days=7)).isoformat(),
        next_week=(monday + timedelta(days=7)).isoformat(),
        channel=channel or "",
        county=county or "",
        pack=pack if pack.isdigit() else "",
        channels=settings.channels,
        counties=settings.county_names(),
        fill_days=FILL_DAYS,
    )


def _back() -> Any:
    args = {k: request.form.get(k) for k in ("week", "channel", "county") if request.form.get(k)}
    return redirect(url_for("plan.calendar", **args))


@bp.route("/calendar/queue", methods=["POST"])
@common.needs("queue")
def queue() -> Any:
    settings = common.settings()
    pack_id = request.form.get("pack_id", "").strip()
    channel = request.form.get("channel", "")
    if not pack_id.isdigit():
        flash("请填写内容包编号", "error")
        return _back()
    try:
        at = request.form.get("at", "").strip()
        when = scheduling.parse_when(at, settings.tz) if at else None
        done = scheduling.queue_pack(
            settings, common.store(), int(pack_id), channel, when, by=common.by()
        )
    except (StoreError, ValueError) as exc:
        flash(str(exc), "error")
    else:
        text = f"已排期: 内容包 {done.pack_id} → {common.channel_title(done.channel)}"
        text += f", {common.local(done.scheduled_at)} (投递 {done.delivery_id})"
        flash(text + ("; 提示: " + "; ".join(done.warnings) if done.warnings else ""), "ok")
    return _back()


@bp.route("/calendar/unqueue", methods=["POST"])
@common.needs("queue")
def unqueue() -> Any:
    raw = request.form.get("delivery_id", "")
    if not raw.isdigit():
        abort(400)
    try:
        scheduling.unqueue(
            common.store(),
            int(raw),
            common.by(),
            request.form.get("note") or None,
            tz=common.settings().tz,
        )
    except StoreError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已撤回投递 {raw}", "ok")
    return _back()


def _fill_args() -> tuple[list[str] | None, float]:
    source = request.form if request.method == "POST" else request.args
    channel = source.get("channel", "").strip() or None
    county = source.get("county", "").strip() or None
    try:
        days = float(source.get("days", "3"))
    except ValueError:
        abort(400)
    if days not in FILL_DAYS:
        abort(400)
    names = _channel_names(channel, county) if (channel or county) else None
    return names, days


@bp.route("/calendar/fill-preview")
@common.needs("queue")
def fill_preview() -> Any:
    """What "fill the coming slots" would add, before it is confirmed (htmx fragment)."""
    names, days = _fill_args()
    proposals = scheduling.plan_proposals(
        common.settings(), common.store(), days=days, channels=names
    )
    return render_template(
        "fill_preview.html",
        proposals=proposals,
        days=days,
        channel=request.args.get("channel", ""),
        county=request.args.get("county", ""),
        week=request.args.get("week", ""),
    )


@bp.route("/calendar/fill", methods=["POST"])
@common.needs("queue")
def fill() -> Any:
    names, days = _fill_args()
    if names == []:
        flash("没有符合条件的渠道", "error")
        return _back()
    report = scheduling.queue_auto(
        common.settings(), common.store(), days=days, channels=names, by=common.by()
    )
    flash(f"已自动排期 {len(report.queued)} 条", "ok")
    return _back()
