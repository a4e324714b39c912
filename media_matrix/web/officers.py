"""/officers: the 科普信息员 roster in the console. Everyone signed in reads it (a county-bound
user only their county's officers); editors and admins import a roster CSV (the CLI's parser and
audit: one bad row and nothing is stored) and disable an officer (confirmed, audited). A share
kit is the officer's live public page (shown to editors); a county's batch of kit files stays
with the CLI (``officers kit``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from media_matrix import officers
from media_matrix.models import CITY
from media_matrix.store import NotFound
from media_matrix.tracking import officer_page_url
from media_matrix.web import common

bp = Blueprint("officers", __name__)

NOTE_MAX = 500
SHOWN_PROBLEMS = 100  # a bad 20,000-row file lists the first ones and how many more


def _counties() -> list[str]:
    return list(dict.fromkeys([CITY, *officers.roster_counties(common.settings())]))


def _note() -> str | None:
    return request.form.get("note", "").strip()[:NOTE_MAX] or None


def _officer_or_404(officer_id: int) -> dict[str, Any]:
    try:
        officer = common.store().get_officer(officer_id)
    except NotFound:
        abort(404)
    scope = common.county_scope()
    if scope is not None and officer["county"] != scope:
        abort(404)  # another county's officer: as if it did not exist
    return officer


def _page_url(officer: dict[str, Any]) -> str:
    """The officer's live share page, for those who may edit the roster: its token lets the
    holder order topics in the officer's name (as /requests shows an order's answer page only
    to editors). None for a disabled officer: the page answers 404."""
    if officer["disabled"] or not common.can("review"):
        return ""
    return officer_page_url(common.settings(), officer)


def _roster(problems: list[str] | None = None) -> Any:
    scope = common.county_scope()
    county = scope or (request.args.get("county", "").strip()[:40] or None)
    page = common.page_number()
    rows, total = common.store().page_officers(
        county=county, limit=common.PAGE_SIZE, offset=(page - 1) * common.PAGE_SIZE
    )
    for row in rows:
        row["page_url"] = _page_url(row)
    return render_template(
        "officers.html",
        rows=rows,
        total=total,
        page=page,
        pages=common.page_count(total),
        county=county,
        scope=scope,
        counties=_counties(),
        problems=(problems or [])[:SHOWN_PROBLEMS],
        more_problems=max(0, len(problems or []) - SHOWN_PROBLEMS),
    )


@bp.route("/officers")
def index() -> Any:
    return _roster()


@bp.route("/officers/import", methods=["POST"])
@common.needs("review")
def import_roster() -> Any:
    upload = request.files.get("roster")
    if upload is None or not upload.filename:
        return _roster(["请选择要导入的名册 CSV 文件 (no file chosen)"]), 400
    data = upload.read(officers.MAX_BYTES + 1)
    try:
        added, updated = officers.import_roster_data(
            common.store(),
            data,
            upload.filename,
            officers.roster_counties(common.settings()),
            by=common.by(),
            note=_note(),
            scope=common.county_scope(),
        )
    except officers.RosterError as exc:
        return _roster(exc.problems), 400
    flash(f"已导入信息员名册: 新增 {added}, 更新 {updated}", "ok")
    return redirect(url_for("officers.index"))


@bp.route("/officers/<int:officer_id>")
def detail(officer_id: int) -> Any:
    officer = _officer_or_404(officer_id)
    return render_template(
        "officer.html",
        officer=officer,
        page_url=_page_url(officer),
        history=common.store().audit_log(subject=f"officer:{officer_id}", limit=50),
    )


@bp.route("/officers/<int:officer_id>/disable", methods=["POST"])
@common.needs("review")
def disable(officer_id: int) -> Any:
    officer = _officer_or_404(officer_id)
    back = redirect(url_for("officers.detail", officer_id=officer_id))
    if request.form.get("confirm") != "yes":
        flash("请先勾选确认框; 未做任何更改", "error")
    elif officer["disabled"]:
        flash(f"信息员 {officer['name']} 已是停用状态", "error")
    else:
        officers.disable_officer(common.store(), officer_id, by=common.by(), note=_note())
        flash(f"已停用信息员 {officer['name']}: 其个人页面和个人链接此后一律失效", "ok")
    return back
