"""/requests: 群众点单 in the console. County editors see and take their county's orders
(accept, decline with a reason, escalate to the city); city-level editors see the escalations
and may act on any order. Every step goes through :func:`media_matrix.orders.act` (status table,
county check, audit); a refused step is a 403 and changes nothing. Contacts are shown only to
those who may act on the order."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from media_matrix import orders
from media_matrix.models import TOPICS
from media_matrix.store import NotFound
from media_matrix.web import common

bp = Blueprint("orders", __name__)


def _order_or_404(order_id: int) -> dict[str, Any]:
    try:
        order = common.store().get_request(order_id)
    except NotFound:
        abort(404)
    if not orders.may_see(common.user(), order):
        abort(404)  # another county's order: as if it did not exist
    return order


def _may_act(order: dict[str, Any], action: str) -> bool:
    try:
        orders.check_action(common.user(), order, action)
    except orders.OrderDenied:
        return False
    return True


def waiting_status(scope: str | None) -> str:
    """The orders that wait on this user: a county's new ones, or the city's escalations."""
    return "escalated" if scope is None else "open"


def waiting_count() -> int:
    """How many orders wait on the signed-in user (the dashboard's card)."""
    scope = common.county_scope()
    return common.store().count_requests(county=scope, statuses=[waiting_status(scope)])


@bp.route("/requests")
def index() -> Any:
    scope = common.county_scope()
    default = waiting_status(scope)
    status = request.args.get("status", default)
    statuses = list(orders.STATUS_LABELS) if status == "all" else [status]
    if status != "all" and status not in orders.STATUS_LABELS:
        statuses, status = [default], default
    county = scope or (request.args.get("county", "").strip() or None)
    rows = common.store().list_requests(county=county, statuses=statuses, limit=common.PAGE_SIZE)
    return render_template(
        "requests.html",
        rows=rows,
        status=status,
        county=county,
        scope=scope,
        counties=orders.counties_of(common.settings()),
        STATUS=orders.STATUS_LABELS,
        SOURCES=orders.SOURCE_LABELS,
        TOPICS=TOPICS,
        show_contact=common.can("review"),
    )


@bp.route("/requests/<int:order_id>")
def detail(order_id: int) -> Any:
    order = _order_or_404(order_id)
    live = order["status"] in ("open", "accepted", "escalated")
    found = orders.match(common.settings(), common.store(), order_id) if live else []
    linked = common.store().packs_with_tags([order["pack_id"]]) if order["pack_id"] else []
    return render_template(
        "request.html",
        order=order,
        matches=found,
        linked=linked[0] if linked else None,
        history=common.store().audit_log(subject=f"request:{order_id}", limit=50),
        AUDIT=orders.AUDIT_LABELS,
        may={a: _may_act(order, a) for a in orders.TRANSITIONS},
        STATUS=orders.STATUS_LABELS,
        SOURCES=orders.SOURCE_LABELS,
        TOPICS=TOPICS,
        show_contact=common.can("review"),
        answer_url=f"{common.settings().public.base_url}/request/{order['token']}",
    )


@bp.route(
    "/requests/<int:order_id>/<any(accept, decline, escalate, link):action>", methods=["POST"]
)
@common.needs("review")
def act(order_id: int, action: str) -> Any:
    order = _order_or_404(order_id)
    pack_id = None
    if action == "link":
        raw = request.form.get("pack_id", "").strip()
        if not raw.isdigit() or len(raw) > 18:
            abort(400)
        pack_id = int(raw)
    try:
        orders.act(
            common.store(),
            order["id"],
            action,
            by=common.by(),
            user=common.user(),
            note=request.form.get("note", "")[: orders.MAX_TEXT * 2],
            pack_id=pack_id,
            settings=common.settings(),
        )
    except orders.OrderDenied:
        abort(403)
    except orders.OrderError as exc:
        flash("；".join(exc.problems), "error")
    else:
        flash(f"点单 {order_id}: {orders.ACTION_LABELS[action]}完成", "ok")
    return redirect(url_for("orders.detail", order_id=order_id))
