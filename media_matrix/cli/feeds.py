"""`feeds list`: configured feeds with their fetch health and bad items."""

from __future__ import annotations

import click

from media_matrix.cli.common import AppContext, echo_json, echo_table, json_option, pass_app
from media_matrix.ingest import feed_overview
from media_matrix.redact import redact


@click.group("feeds")
def feeds_group() -> None:
    """订阅源 (feeds)."""


@feeds_group.command("list")
@json_option
@pass_app
def list_feeds(app: AppContext, as_json: bool) -> None:
    """List feeds with their last fetch, failures, next fetch and item errors."""
    rows = feed_overview(app.settings, app.store)
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["名称", "类型", "启用", "上次抓取", "连续失败", "下次抓取", "条目", "最近错误"],
        [
            (
                r["name"],
                r["kind"],
                "是" if r["enabled"] else "否",
                r["last_fetch_at"] or "-",
                r["failures"],
                r["next_fetch_at"] or "-",
                r["items_seen"],
                redact(r["last_error"] or ""),
            )
            for r in rows
        ],
        title="订阅源",
    )
    bad = [(r["name"], e["item"], redact(e["error"])) for r in rows for e in r["item_errors"]]
    if bad:
        echo_table(["订阅源", "条目", "错误"], bad, title="未能导入的条目 (原文件保留不动)")


def register(cli: click.Group) -> None:
    cli.add_command(feeds_group)
