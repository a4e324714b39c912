"""``media-matrix officers import|list|disable|kit``: the 科普信息员 roster and share kits."""

from __future__ import annotations

import os
from pathlib import Path

import click

from media_matrix.cli.common import (
    COUNTY,
    ID,
    OUTPUT_DIR,
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
from media_matrix.models import GROUPS
from media_matrix.officers import (
    RosterError,
    disable_officer,
    import_roster,
    roster_counties,
    safe_file_stem,
)
from media_matrix.tracking import officer_page_url, officer_week, week_bounds


def register(cli: click.Group) -> None:
    @cli.group("officers")
    def officers() -> None:
        """科普信息员: roster, personal pages and share kits."""

    @officers.command("import")
    @click.argument("csv_path", metavar="OFFICERS.CSV", type=click.Path(dir_okay=False))
    @by_option
    @note_option
    @pass_app
    def import_command(app: AppContext, csv_path: str, by: str | None, note: str | None) -> None:
        """从 CSV (姓名, 区县, 乡镇, 人群) 导入或更新信息员; 有错则一个也不导入。"""
        try:
            added, updated = import_roster(
                app.store,
                Path(csv_path),
                roster_counties(app.settings),
                by=by or default_user(),
                note=note,
            )
        except RosterError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            raise UsageFailure(
                f"{csv_path}: {len(exc.problems)} 处错误，未导入任何信息员 (nothing imported)"
            ) from None
        click.echo(f"已导入信息员: 新增 {added}, 更新 {updated}")

    @officers.command("list")
    @click.option("--county", type=COUNTY, default=None, help="只列此区县")
    @json_option
    @pass_app
    def list_command(app: AppContext, county: str | None, as_json: bool) -> None:
        """列出信息员及其个人页面链接。"""
        rows = app.store.list_officers(county=county)
        for row in rows:
            row["page_url"] = officer_page_url(app.settings, row)
            row.pop("token")
        if as_json:
            echo_json(rows)
            return
        echo_table(
            ["ID", "姓名", "区县", "乡镇", "人群", "状态", "个人页面"],
            [
                (
                    r["id"],
                    r["name"],
                    r["county"],
                    r["township"],
                    "、".join(GROUPS.get(g, g) for g in r["groups"]),
                    "已停用" if r["disabled"] else "有效",
                    "" if r["disabled"] else r["page_url"],
                )
                for r in rows
            ],
            title=f"科普信息员 ({len(rows)})",
        )

    @officers.command("disable")
    @click.argument("officer_id", type=ID)
    @by_option
    @note_option
    @pass_app
    def disable_command(app: AppContext, officer_id: int, by: str | None, note: str | None) -> None:
        """停用信息员: 其个人页面和所有个人链接此后一律 404。"""
        disable_officer(app.store, officer_id, by=by or default_user(), note=note)
        click.echo(f"信息员 {officer_id} 已停用 (page and links revoked)")

    @officers.command("kit")
    @click.option(
        "--week", default=None, metavar="YYYY-Www", help="ISO 周, 如 2026-W48 (默认: 近 7 天)"
    )
    @click.option("--county", type=COUNTY, default=None, help="只给此区县的信息员")
    @click.option(
        "-o",
        "--output",
        "out_dir",
        required=True,
        type=OUTPUT_DIR,
        help="分享单所在文件夹 (每位信息员一个 HTML 文件; 其上级文件夹须已存在)",
    )
    @pass_app
    def kit_command(app: AppContext, week: str | None, county: str | None, out_dir: str) -> None:
        """为每位信息员写一份分享单: 内容、可复制的文字、个人链接和二维码。"""
        from media_matrix.public.pages import officer_page

        try:
            since, until = week_bounds(app.settings, week)
        except ValueError:
            raise UsageFailure(f"bad --week {week!r}: expected YYYY-Www, e.g. 2026-W48") from None
        folder = Path(out_dir)
        folder.mkdir(exist_ok=True)  # only the folder named: its parent exists (OUTPUT_DIR)
        period = f"{week} " if week else "近 7 天"
        written = []
        for officer in app.store.list_officers(county=county, include_disabled=False):
            entries = officer_week(app.settings, app.store, officer, since, until)
            stem = safe_file_stem(f"{officer['id']:04d}", officer["county"], officer["name"])
            path = folder / f"{stem}.html"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(officer_page(officer, entries, period=period), encoding="utf-8")
            os.replace(tmp, path)
            written.append((officer["id"], officer["name"], len(entries), str(path)))
        echo_table(
            ["ID", "姓名", "内容数", "文件"], written, title=f"信息员分享单 ({len(written)})"
        )
