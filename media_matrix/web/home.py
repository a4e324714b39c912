"""Dashboard, /healthz, /status, /feeds (with "fetch now"), /audit and /users."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from media_matrix import overview, users
from media_matrix.ingest import feed_overview, run_ingest
from media_matrix.instance import LOCK_NAME, describe_lock
from media_matrix.store import NotFound
from media_matrix.timeutil import to_iso, utcnow
from media_matrix.web import common
from media_matrix.web.orders import waiting_count

bp = Blueprint("home", __name__)

ATTENTION = ("unknown", "dead", "failed")


def _today_bounds() -> tuple[str, str]:
    tz = common.settings().tz
    start = datetime.combine(utcnow().astimezone(tz).date(), datetime.min.time(), tz)
    return to_iso(start) or "", to_iso(start + timedelta(days=1)) or ""


def _daemon() -> dict[str, Any]:
    return describe_lock(common.settings(), common.store().get_lock(LOCK_NAME))


@bp.route("/")
def dashboard() -> Any:
    store = common.store()
    channels = common.scoped_channels()
    waiting_ids, waiting = store.find_packs(status="new", limit=10)
    since, until = _today_bounds()
    due, due_total = store.page_deliveries(
        statuses=["queued"], channels=channels, since=since, until=until, limit=20
    )
    attention, attention_total = store.page_deliveries(
        statuses=ATTENTION, channels=channels, limit=20
    )
    return render_template(
        "dashboard.html",
        waiting=store.list_packs(ids=waiting_ids) if waiting_ids else [],
        waiting_total=waiting,
        due=due,
        due_total=due_total,
        attention=attention,
        attention_total=attention_total,
        daemon=_daemon(),
        orders_waiting=waiting_count(),
    )


@bp.route("/healthz")
def healthz() -> Any:
    """For a load balancer: database reachable, daemon heartbeat age. No login, no details."""
    try:
        ok = common.store().ping()
        daemon = _daemon()
    except sqlite3.Error:
        return jsonify({"database": False}), 503
    body = {
        "database": ok,
        "daemon_running": daemon.get("running", False),
        "daemon_heartbeat_age_seconds": daemon.get("heartbeat_age_seconds"),
    }
    return jsonify(body), 200 if ok else 503


@bp.route("/status")
def status() -> Any:
    view = overview.status_view(common.settings(), common.store())
    return render_template("status.html", view=view)


@bp.route("/feeds")
def feeds() -> Any:
    return render_template("feeds.html", feeds=feed_overview(common.settings(), common.store()))


@bp.route("/feeds/<name>/fetch", methods=["POST"])
@common.needs("fetch")
def fetch_now(name: str) -> Any:
    settings = common.settings()
    if name not in {f.name for f in settings.feeds}:
        abort(404)
    report = run_ingest(settings, common.store(), feeds=[name])
    feed = report.feeds[0] if report.feeds else None
    common.store().audit(common.by(), "feed_fetch", f"feed:{name}", None)
    if feed is not None and feed.failed:
        flash(f"抓取 {name} 失败: {feed.error}", "error")
    elif feed is not None:
        flash(f"已抓取 {name}: 新增 {feed.new}, 更新 {feed.updated}", "ok")
    return redirect(url_for("home.feeds"))


@bp.route("/audit")
def audit() -> Any:
    who = request.args.get("who", "").strip()[:64] or None
    subject = request.args.get("subject", "").strip()[:100] or None
    page = common.page_number()
    rows = common.store().search_audit(
        who=who, subject=subject, limit=common.PAGE_SIZE, offset=(page - 1) * common.PAGE_SIZE
    )
    return render_template("audit.html", rows=rows, who=who or "", subject=subject or "", page=page)


@bp.route("/users")
@common.needs("users")
def users_page() -> Any:
    return render_template(
        "users.html",
        rows=common.store().list_users(),
        roles=users.ROLES,
        counties=common.settings().county_names(),
    )


@bp.route("/users/add", methods=["POST"])
@common.needs("users")
def users_add() -> Any:
    form = request.form
    try:
        users.add_user(
            common.settings(),
            common.store(),
            form.get("name", "").strip(),
            form.get("role", ""),
            form.get("password", ""),
            county=form.get("county") or None,
            display_name=form.get("display_name", ""),
            by=common.by(),
        )
    except users.UserError as exc:
        flash(str(exc), "error")
    except Exception as exc:  # noqa: BLE001 - e.g. the name exists: say so, change nothing
        flash(f"无法创建用户: {exc}", "error")
    else:
        flash(f"已创建用户 {form.get('name')}", "ok")
    return redirect(url_for("home.users_page"))


@bp.route("/users/<name>/disable", methods=["POST"])
@common.needs("users")
def users_disable(name: str) -> Any:
    if name == common.by():
        flash("不能停用自己的账户", "error")
        return redirect(url_for("home.users_page"))
    enable = request.form.get("enable") == "1"
    try:
        users.disable_user(common.store(), name, by=common.by(), disabled=not enable)
    except NotFound:
        abort(404)
    flash(f"已{'启用' if enable else '停用'}用户 {name}", "ok")
    return redirect(url_for("home.users_page"))


@bp.route("/users/<name>/passwd", methods=["POST"])
@common.needs("users")
def users_passwd(name: str) -> Any:
    try:
        users.set_password(common.store(), name, request.form.get("password", ""), by=common.by())
    except NotFound:
        abort(404)
    except users.UserError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已修改用户 {name} 的密码", "ok")
    return redirect(url_for("home.users_page"))
