"""`users add|list|disable|passwd`: accounts of the editor console."""

from __future__ import annotations

import sys

import click

from media_matrix import users as accounts
from media_matrix.cli.common import (
    COUNTY,
    ROLE,
    AppContext,
    UsageFailure,
    by_option,
    default_user,
    echo_json,
    echo_table,
    json_option,
    note_option,
    pass_app,
)
from media_matrix.timeutil import local_text


@click.group("users")
def users_group() -> None:
    """控制台用户 (console users)."""


def _read_password(flag: bool) -> str:
    """The password from stdin: its first line, without the line break (never an argument,
    which other users of the machine could read from the process list)."""
    if not flag:
        raise UsageFailure(
            "请用 --password-stdin 从标准输入提供密码 (--password-stdin is required)"
        )
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise UsageFailure("标准输入没有密码 (no password on stdin)")
    return password


@users_group.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="角色 (id 或中文名)")
@click.option("--county", type=COUNTY, default=None, help="运维: 只管此区县的渠道")
@click.option("--display-name", default="", help="控制台中显示的名字")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="从标准输入读取密码")
@by_option
@note_option
@pass_app
def add_cmd(
    app: AppContext,
    name: str,
    role: str,
    county: str | None,
    display_name: str,
    password_stdin: bool,
    by: str | None,
    note: str | None,
) -> None:
    """创建控制台用户 (密码从标准输入读取)。"""
    password = _read_password(password_stdin)
    try:
        user = accounts.add_user(
            app.settings,
            app.store,
            name,
            role,
            password,
            county=county,
            display_name=display_name,
            by=by or default_user(),
            note=note,
        )
    except accounts.UserError as exc:
        raise UsageFailure(str(exc)) from None
    click.echo(f"已创建用户 {user['name']} ({accounts.ROLE_LABELS[user['role']]})")


@users_group.command("list")
@json_option
@pass_app
def list_cmd(app: AppContext, as_json: bool) -> None:
    """列出控制台用户 (从不显示密码哈希)。"""
    rows = app.store.list_users()
    if as_json:
        echo_json(rows)
        return
    tz = app.settings.tz
    echo_table(
        ["用户名", "显示名", "角色", "区县", "状态", "上次登录"],
        [
            (
                r["name"],
                r["display_name"],
                accounts.ROLE_LABELS.get(r["role"], r["role"]),
                r["county"] or "全部",
                "已停用" if r["disabled"] else "正常",
                local_text(r["last_login_at"], tz) if r["last_login_at"] else "",
            )
            for r in rows
        ],
        title=f"控制台用户 ({len(rows)})",
    )


@users_group.command("disable")
@click.argument("name")
@by_option
@note_option
@pass_app
def disable_cmd(app: AppContext, name: str, by: str | None, note: str | None) -> None:
    """停用用户: 其会话立即失效, 历史记录保留。"""
    app.store.get_user(name)
    accounts.disable_user(app.store, name, by=by or default_user(), note=note)
    click.echo(f"已停用用户 {name}")


@users_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="从标准输入读取密码")
@by_option
@note_option
@pass_app
def passwd_cmd(
    app: AppContext, name: str, password_stdin: bool, by: str | None, note: str | None
) -> None:
    """设置新密码 (结束该用户的会话并解除锁定)。"""
    password = _read_password(password_stdin)
    try:
        accounts.set_password(app.store, name, password, by=by or default_user(), note=note)
    except accounts.UserError as exc:
        raise UsageFailure(str(exc)) from None
    click.echo(f"已修改用户 {name} 的密码")


def register(cli: click.Group) -> None:
    cli.add_command(users_group)
