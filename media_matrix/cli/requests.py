"""``media-matrix requests list|import|match|accept|decline|escalate|link``: 群众点单."""

from __future__ import annotations

from pathlib import Path

import click

from media_matrix.cli.common import (
    COUNTY,
    ID,
    LIMIT,
    REQUEST_STATUS,
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
from media_matrix.models import GROUPS, TOPICS
from media_matrix.orders import (
    SOURCE_LABELS,
    STATUS_LABELS,
    OrderDenied,
    OrderError,
    act,
    import_sheet,
    match,
)
from media_matrix.timeutil import local_text

_NOTE_HELP = "备注 (记入审计日志)"


def _fail(exc: OrderError | OrderDenied, head: str) -> UsageFailure:
    problems = exc.problems if isinstance(exc, OrderError) else [str(exc)]
    for problem in problems[:-1]:
        click.echo(problem, err=True)
    return UsageFailure(f"{head}{problems[-1]}")


def _labels(ids: list[str], names: dict[str, str]) -> str:
    return "、".join(names.get(i, i) for i in ids)


def _show(app: AppContext, order: dict) -> None:
    click.echo(
        f"点单 {order['id']}: {STATUS_LABELS[order['status']]}"
        + (f"; 关联内容 {order['pack_id']}" if order["pack_id"] else "")
    )


def register(cli: click.Group) -> None:
    @cli.group("requests")
    def requests_group() -> None:
        """群众点单: 群众点单、基层接单、上级支持。"""

    @requests_group.command("list")
    @click.option("--county", type=COUNTY, default=None, help="只看这个区县的点单")
    @click.option("--status", type=REQUEST_STATUS, default=None, help="只看这个状态 (id 或中文名)")
    @click.option("--limit", type=LIMIT, default=500, show_default=True, help="最多显示多少条")
    @json_option
    @pass_app
    def list_command(
        app: AppContext, county: str | None, status: str | None, limit: int, as_json: bool
    ) -> None:
        """列出点单 (新的在前)。联系方式只在本机输出, 属个人信息, 请勿外传。"""
        rows = app.store.list_requests(
            county=county, statuses=[status] if status else [], limit=limit
        )
        if as_json:
            for row in rows:
                row.pop("token")
                row.pop("paper_key")
            echo_json(rows)
            return
        tz = app.settings.tz
        echo_table(
            ["ID", "时间", "区县", "乡镇/社区", "内容", "主题", "人群", "来源", "状态", "关联内容"],
            [
                (
                    r["id"],
                    local_text(r["created_at"], tz),
                    r["county"],
                    r["township"],
                    r["text"][:40],
                    _labels(r["topics"], TOPICS),
                    _labels(r["groups"], GROUPS),
                    SOURCE_LABELS.get(r["source"], r["source"]),
                    STATUS_LABELS[r["status"]],
                    r["pack_id"] or "",
                )
                for r in rows
            ],
            title=f"群众点单 ({len(rows)})",
        )

    @requests_group.command("import")
    @click.argument("csv_path", metavar="FILE.CSV", type=click.Path(dir_okay=False))
    @by_option
    @note_option
    @pass_app
    def import_command(app: AppContext, csv_path: str, by: str | None, note: str | None) -> None:
        """导入纸质点单 CSV。

        表头: county/区县, township/乡镇, text/内容, group/人群, contact/联系方式。
        任何一行有错则整份不导入, 错误按行号列出; 已导入过的行不会重复导入。"""
        try:
            added, seen = import_sheet(
                app.settings, app.store, Path(csv_path), by=by or default_user(), note=note
            )
        except OrderError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            raise UsageFailure(
                f"{csv_path}: {len(exc.problems)} 处错误，未导入任何点单 (nothing imported)"
            ) from None
        click.echo(f"已导入点单: 新增 {added}, 已存在 {seen}")

    @requests_group.command("match")
    @click.argument("request_id", metavar="ID", type=ID)
    @click.option("--limit", type=LIMIT, default=10, show_default=True, help="最多列出几条")
    @json_option
    @pass_app
    def match_command(app: AppContext, request_id: int, limit: int, as_json: bool) -> None:
        """推荐能答复这条点单的已通过内容 (主题、人群相同), 按匹配度排序并给出理由。"""
        found = match(app.settings, app.store, request_id, limit)
        if as_json:
            echo_json([m.to_dict() for m in found])
            return
        echo_table(
            ["内容ID", "标题", "匹配度", "理由"],
            [(m.pack_id, m.title, f"{m.score:g}", "; ".join(m.reasons)) for m in found],
            title=f"点单 {request_id} 的推荐内容 ({len(found)})",
        )

    def _action(name: str, help_text: str, *, reason: bool = False):  # type: ignore[no-untyped-def]
        @requests_group.command(name, help=help_text)
        @click.argument("request_id", metavar="ID", type=ID)
        @click.option(
            "--reason" if reason else "--note",
            "note",
            required=reason,
            default=None,
            help="不采纳的原因 (必填)" if reason else _NOTE_HELP,
        )
        @by_option
        @pass_app
        def command(app: AppContext, request_id: int, note: str | None, by: str | None) -> None:
            try:
                order = act(app.store, request_id, name, by=by or default_user(), note=note)
            except (OrderError, OrderDenied) as exc:
                raise _fail(exc, "") from None
            _show(app, order)

        return command

    _action("accept", "接单: 由本县负责答复这条点单。")
    _action("decline", "不采纳这条点单 (须写明原因, 原因记入审计日志)。", reason=True)
    _action("escalate", "提交市级 (上级支持): 本县没有能答复的内容时由市级编辑处理。")

    @requests_group.command("link")
    @click.argument("request_id", metavar="ID", type=ID)
    @click.argument("pack_id", metavar="PACK_ID", type=ID)
    @click.option("--note", default=None, help=_NOTE_HELP)
    @by_option
    @pass_app
    def link_command(
        app: AppContext, request_id: int, pack_id: int, note: str | None, by: str | None
    ) -> None:
        """为点单关联一条已通过的内容; 该内容在本县发布后点单即为已答复。"""
        try:
            order = act(
                app.store,
                request_id,
                "link",
                by=by or default_user(),
                note=note,
                pack_id=pack_id,
                settings=app.settings,
            )
        except (OrderError, OrderDenied) as exc:
            raise _fail(exc, "") from None
        _show(app, order)
