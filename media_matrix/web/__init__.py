"""The editor console: a Flask app over the same service functions as the CLI.

Security model (issue 9):
* every view but ``/login``, ``/healthz`` and static files needs a signed-in user; each view
  carries the permission it needs (``common.needs``), checked here before it runs, and a
  state-changing view without one is refused;
* CSRF tokens on every POST (Flask-WTF), session cookie HttpOnly + SameSite=Lax (+ Secure),
  the session ends when the user is disabled or their password changes (``session_epoch``);
* a strict Content-Security-Policy: only the server's own scripts and styles (htmx is vendored,
  no inline script or style); pack bodies only inside ``<iframe sandbox>`` frames.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from media_matrix import users
from media_matrix.config import Settings
from media_matrix.errortext import error_phrase
from media_matrix.heap import settle_heap as settle_heap  # what `serve` calls
from media_matrix.models import (
    ATTEMPT_KIND_LABELS,
    ATTEMPT_OUTCOME_LABELS,
    DELIVERY_STATUS_LABELS,
    GROUPS,
    PACK_STATUS_LABELS,
    audit_action_label,
    audit_note_text,
)
from media_matrix.store import Store
from media_matrix.store.search import check_sqlite_version
from media_matrix.timeutil import utcnow
from media_matrix.web import common

CSP = (
    "default-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)
PUBLIC_ENDPOINTS = {"auth.login", "home.healthz", "static"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def create_app(settings: Settings, store: Store, *, testing: bool = False) -> Flask:
    """The console app for one config and one open store (shared by waitress' threads: the
    store serializes its calls)."""
    check_sqlite_version()
    app = Flask(__name__)
    app.config.update(
        MM_SETTINGS=settings,
        MM_STORE=store,
        SECRET_KEY=settings.web.secret_key or store.console_secret("session"),
        SESSION_COOKIE_NAME="mm_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.web.session_lifetime),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=settings.web.secure_cookies,
        MAX_CONTENT_LENGTH=1_000_000,
        TESTING=testing,
    )
    CSRFProtect(app)
    _register_blueprints(app)
    app.before_request(_load_user)
    app.before_request(_check_access)
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    for code in (400, 403, 404, 405, 413):
        app.register_error_handler(code, _error_page)
    app.jinja_env.globals.update(
        can=common.can,
        local=common.local,
        action_label=audit_action_label,
        audit_note=audit_note_text,
        error_phrase=error_phrase,
        slot_label=common.slot_label,
        channel_title=common.channel_title,
        PACK_STATUS=PACK_STATUS_LABELS,
        OUTCOMES=ATTEMPT_OUTCOME_LABELS,
        KINDS=ATTEMPT_KIND_LABELS,
        DELIVERY_STATUS=DELIVERY_STATUS_LABELS,
        GROUPS=GROUPS,
        ROLE_LABELS=users.ROLE_LABELS,
        locked=lambda u: users.is_locked(u, utcnow()),
    )
    app.jinja_env.filters["safe_url"] = common.safe_url
    app.jinja_env.filters["channel_label"] = common.channel_title
    # a filter, not DELIVERY_STATUS.get(...): Jinja calls filters directly, without the
    # context call each item of a thousand-item calendar would pay
    app.jinja_env.filters["delivery_status"] = common.delivery_status
    return app


def _register_blueprints(app: Flask) -> None:
    from media_matrix.web import auth, deliveries, home, packs, plan, reports

    for module in (auth, home, packs, plan, deliveries, reports):
        app.register_blueprint(module.bp)
    from media_matrix.web import orders  # 群众点单 (issue 13)

    app.register_blueprint(orders.bp)
    from media_matrix.web import officers  # 科普信息员 roster

    app.register_blueprint(officers.bp)


def _load_user() -> None:
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    user = common.store().get_user_by_id(int(uid))
    if user is None or user["disabled"] or user["session_epoch"] != session.get("epoch"):
        session.clear()
        return
    g.user = user


def _check_access() -> Any:
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.url_rule is None:  # 404/405: let Flask answer, but never to a stranger
        return None if g.user else redirect(url_for("auth.login"))
    if g.user is None:
        if request.method in SAFE_METHODS:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return _error_page(401)
    view = app_view(endpoint)
    action = getattr(view, "_needs", None)
    if action is None and request.method not in SAFE_METHODS:
        action = "__unmarked__"  # deny by default
    if not users.allowed(g.user["role"], action or "read"):
        return _error_page(403)
    return None


def app_view(endpoint: str) -> Any:
    from flask import current_app

    return current_app.view_functions.get(endpoint)


def _headers(response: Any) -> Any:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    if g.get("user") is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


ERROR_TEXT = {
    400: "请求无效",
    401: "请先登录",
    403: "没有权限执行此操作",
    404: "页面不存在",
    405: "不支持的请求方法",
    413: "提交的内容过大",
}


def _error_page(error: Any) -> Any:
    code = error if isinstance(error, int) else getattr(error, "code", 500) or 500
    return render_template("error.html", code=code, message=ERROR_TEXT.get(code, "出错了")), code


def _csrf_error(error: CSRFError) -> Any:
    message = "表单已过期或缺少安全令牌 (CSRF), 请刷新页面后重试; 未做任何更改"
    return render_template("error.html", code=400, message=message), 400
