"""`feeds list`: configured feeds with their fetch health and bad items."""

from __future__ import annotations

import click

from media_matrix.cli.common import (
    AppContext,
    echo_json,
    echo_table,
    json_option,
    local_time,
    pass_app,
)
from media_matrix.cli.packs import shown
from media_matrix.ingest import feed_overview
from media_matrix.redact import redact


@click.group("feeds")
def feeds_group() -> None:
    """订阅源 (feeds)."""


@feeds_group.command("list")
@json_option
@pass_app
def list_feeds(app: AppContext, as_json: bool) -> None:
    """列出订阅源: 上次抓取、连续失败、下次抓取、条目数和有问题的条目。"""
    rows = feed_overview(app.settings, app.store)
    if as_json:
        echo_json(rows)
        return
    echo_table(
        [
            "名称",
            "类型",
            "启用",
            "信任",
            "上次抓取",
            "连续失败",
            "下次抓取",
            "上次条目",
            "内容包",
            "最近错误",
        ],
        [
            (
                r["name"],
                r["kind"],
                "是" if r["enabled"] else "否",
                r["trust"],
                local_time(app, r["last_fetch_at"]),
                r["failures"],
                local_time(app, r["next_fetch_at"]),
                r["items_last_fetch"],
                r["packs"],
                r["error_text"],
            )
            for r in rows
        ],
        title="订阅源",
    )
    bad = [
        (r["name"], shown(e["item"]), shown(redact(e["error"])))
        for r in rows
        for e in r["item_errors"]
    ]
    if bad:
        echo_table(
            ["订阅源", "条目", "原因"],
            bad,
            title="有问题的条目 (未能导入的原文件保留不动; “已修正” 的已导入, 附丢弃或改正的内容)",
        )


def register(cli: click.Group) -> None:
    cli.add_command(feeds_group)
