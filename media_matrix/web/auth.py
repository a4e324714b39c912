"""/login and /logout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for

from media_matrix import users
from media_matrix.web import common

bp = Blueprint("auth", __name__)

REASONS = {
    "bad": "用户名或密码错误",
    "locked": "连续登录失败次数过多, 账户已锁定 15 分钟, 请稍后再试或联系管理员",
    "disabled": "账户已停用, 请联系管理员",
}


def safe_next(target: str | None) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("home.dashboard")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()[:64]
        password = request.form.get("password", "")
        result = users.authenticate(common.settings(), common.store(), name, password)
        if result.user is not None:
            session.clear()  # a fresh session: nothing from before the login survives
            session.permanent = True
            session["uid"] = result.user["id"]
            session["epoch"] = result.user["session_epoch"]
            return redirect(safe_next(request.form.get("next")))
        error = REASONS[result.reason]
    status = 200 if error is None else 401
    return render_template("login.html", error=error, next=request.args.get("next", "")), status


@bp.route("/logout", methods=["POST"])
@common.needs("read")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))
