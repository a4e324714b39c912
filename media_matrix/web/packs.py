"""/packs (review queue, search, bulk review), /packs/<id> (detail and editor actions) and
/packs/<id>/preview/<channel>."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from markupsafe import escape

from media_matrix import pack_text, preview, review, scheduling
from media_matrix.models import PACK_STATUS_LABELS, TOPICS
from media_matrix.retag import edit_tags
from media_matrix.store import NotFound, StoreError
from media_matrix.web import common

bp = Blueprint("packs", __name__)

FILTERS = ("status", "group", "topic", "source", "county", "q")
NOTE_MAX = 500


def _filters() -> dict[str, str]:
    return {k: request.args.get(k, "").strip()[:200] for k in FILTERS}


def _note() -> str | None:
    return request.form.get("note", "").strip()[:NOTE_MAX] or None


def _pack_or_404(pack_id: int) -> Any:
    try:
        return common.store().get_pack(pack_id)
    except NotFound:
        abort(404)


@bp.route("/packs")
def index() -> Any:
    store = common.store()
    filters = _filters()
    page = common.page_number()
    ids, total = store.find_packs(
        **{k: (v or None) for k, v in filters.items()},
        limit=common.PAGE_SIZE,
        offset=(page - 1) * common.PAGE_SIZE,
    )
    packs = store.list_packs(ids=ids) if ids else []
    order = {pid: i for i, pid in enumerate(ids)}
    packs.sort(key=lambda p: order[p.id])
    settings = common.settings()
    return render_template(
        "packs.html",
        packs=packs,
        total=total,
        page=page,
        pages=common.page_count(total),
        filters=filters,
        statuses=PACK_STATUS_LABELS,
        topics=TOPICS,
        feeds=[f.name for f in settings.feeds],
        counties=settings.county_names(),
    )


@bp.route("/packs/bulk", methods=["POST"])
@common.needs("review")
def bulk() -> Any:
    ids = common.form_ids()
    action = request.form.get("action")
    back = request.form.get("back", "")
    target = back if back.startswith("/packs") and not back.startswith("//") else "/packs"
    if not ids:
        flash("请先勾选内容包", "error")
        return redirect(target)
    try:
        if action == "approve":
            review.approve(common.store(), ids, common.by(), _note())
            flash(f"已通过 {len(ids)} 个内容包", "ok")
        elif action == "reject":
            review.reject(common.store(), ids, common.by(), _note())
            flash(f"已驳回 {len(ids)} 个内容包", "ok")
        else:
            abort(400)
    except (StoreError, ValueError) as exc:
        flash(str(exc), "error")
    return redirect(target)


@bp.route("/packs/<int:pack_id>")
def detail(pack_id: int) -> Any:
    store = common.store()
    pack = _pack_or_404(pack_id)
    settings = common.settings()
    return render_template(
        "pack.html",
        pack=pack,
        sources=store.pack_sources_of(pack_id),
        history=store.search_audit(subject=review.subject(pack_id), limit=200),
        deliveries=store.deliveries_of_pack(pack_id),
        edits=store.pack_text_edits(pack_id),
        channels=settings.channels,
        topics={k: (v.label or TOPICS.get(k, k)) for k, v in settings.topics.items()} or TOPICS,
    )


@bp.route("/packs/<int:pack_id>/review", methods=["POST"])
@common.needs("review")
def review_one(pack_id: int) -> Any:
    action = request.form.get("action")
    _pack_or_404(pack_id)
    try:
        if action == "approve":
            review.approve(common.store(), [pack_id], common.by(), _note())
            flash("已通过", "ok")
        elif action == "reject":
            review.reject(common.store(), [pack_id], common.by(), _note())
            flash("已驳回", "ok")
        elif action in ("urgent_on", "urgent_off"):
            result = scheduling.flag_urgent(
                common.settings(),
                common.store(),
                pack_id,
                action == "urgent_on",
                by=common.by(),
                note=_note(),
            )
            queued = len(result.queued.queued) if result.queued else 0
            flash(f"已{'标记' if result.urgent else '取消'}紧急; 立即排入 {queued} 个渠道", "ok")
        else:
            abort(400)
    except StoreError as exc:
        flash(str(exc), "error")
    return redirect(url_for("packs.detail", pack_id=pack_id))


@bp.route("/packs/<int:pack_id>/text", methods=["POST"])
@common.needs("review")
def text(pack_id: int) -> Any:
    """The title and summary used for sending (the original is kept in the edit history)."""
    _pack_or_404(pack_id)
    try:
        changed = pack_text.edit_text(
            common.store(),
            pack_id,
            request.form.get("title", ""),
            request.form.get("summary", ""),
            by=common.by(),
        )
        flash("已修改标题和摘要" if changed else "标题和摘要未变化", "ok")
    except StoreError as exc:
        flash(str(exc), "error")
    return redirect(url_for("packs.detail", pack_id=pack_id))


@bp.route("/packs/<int:pack_id>/tags", methods=["POST"])
@common.needs("review")
def tags(pack_id: int) -> Any:
    _pack_or_404(pack_id)
    form = request.form

    def chosen(name: str) -> list[str]:
        return [v for v in form.getlist(name) if v]

    try:
        done = edit_tags(
            common.settings(),
            common.store(),
            pack_id,
            add_groups=chosen("add_group"),
            remove_groups=chosen("remove_group"),
            add_topics=chosen("add_topic"),
            remove_topics=chosen("remove_topic"),
            by=common.by(),
        )
        flash(f"已修改标签 {len(done)} 处" if done else "标签未变化", "ok")
    except ValueError as exc:
        flash(str(exc), "error")
    return redirect(url_for("packs.detail", pack_id=pack_id))


# Pack markup is shown only in frames served with this policy: an opaque origin, no scripts,
# no request anywhere (images only inline). The header reaches the browser before the markup,
# so not even a speculative fetch of a remote image leaves (srcdoc frames inherit the page's
# policy too late for the preload scanner).
FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
FRAME_DOC = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"></head><body>{}</body></html>'
)


def framed(markup: str) -> Response:
    response = Response(FRAME_DOC.format(markup), mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/packs/<int:pack_id>/body")
def body(pack_id: int) -> Any:
    """The pack's body for its sandboxed frame (the sanitized markup as stored)."""
    pack = _pack_or_404(pack_id)
    return framed(pack.content_html or str(escape(pack.text)))


@bp.route("/packs/<int:pack_id>/preview/<channel>/frame/<int:index>")
def preview_frame(pack_id: int, channel: str, index: int) -> Any:
    """One rendered HTML part of a preview (as the channel would receive it), framed."""
    pack = _pack_or_404(pack_id)
    if channel not in {c.name for c in common.settings().channels}:
        abort(404)
    result = preview.render_preview(common.settings(), pack, channel)
    if not 0 <= index < len(result.html_parts):
        abort(404)
    return framed(result.parts[result.html_parts[index]])


@bp.route("/packs/<int:pack_id>/preview/<channel>")
def preview_page(pack_id: int, channel: str) -> Any:
    pack = _pack_or_404(pack_id)
    settings = common.settings()
    if channel not in {c.name for c in settings.channels}:
        abort(404)
    result = preview.render_preview(settings, pack, channel)
    return render_template("preview.html", pack=pack, preview=result, channels=settings.channels)
