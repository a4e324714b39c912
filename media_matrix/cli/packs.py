"""`packs list|show`: what arrived, with its sources, status and tags."""

from __future__ import annotations

import click
from rich.markup import escape

from media_matrix.cli.common import (
    GROUP,
    ID,
    LIMIT,
    MAX_LIMIT,
    PACK_STATUS,
    TOPIC,
    AppContext,
    UsageFailure,
    by_option,
    default_user,
    echo_json,
    echo_table,
    json_option,
    local_time,
    note_option,
    pass_app,
)
from media_matrix.ingest.clean import strip_controls
from media_matrix.models import GROUPS, PACK_STATUS_LABELS, TOPICS, Pack
from media_matrix.retag import edit_tags, retag_all

TABLE_ROWS = 50  # rows `packs list` prints without --limit


def shown(value: object) -> str:
    """A stored value as the table prints it: no control characters, rich markup escaped (a
    title like ``[link=…]`` prints as written, not as a link)."""
    return escape(strip_controls("" if value is None else str(value)))


@click.group("packs")
def packs_group() -> None:
    """内容包 (content packs)."""


@packs_group.command("list")
@click.option("--status", type=PACK_STATUS, default=None, help="只列此状态 (id 或中文名)")
@click.option("--group", type=GROUP, default=None, help="只列此人群 (id 或中文名)")
@click.option("--topic", type=TOPIC, default=None, help="只列此主题 (id 或中文名)")
@click.option(
    "-q",
    "--query",
    "query",
    default=None,
    metavar="关键词",
    help="全文检索标题、摘要和正文 (中文可用)",
)
@click.option(
    "--limit",
    type=LIMIT,
    default=None,
    help=f"最多列出几个 (表格默认最新 {TABLE_ROWS} 个; --json 默认全部)",
)
@click.option("--full", is_flag=True, help="JSON 中包含正文 (content_html 和 text)")
@json_option
@pass_app
def list_packs(
    app: AppContext,
    status: str | None,
    group: str | None,
    topic: str | None,
    query: str | None,
    limit: int | None,
    full: bool,
    as_json: bool,
) -> None:
    """列出内容包, 最新的在前。"""
    # a table is for people: the newest TABLE_ROWS unless --limit says otherwise (one more
    # is read to tell whether there are more)
    rows = limit or (None if as_json else TABLE_ROWS + 1)
    if query is not None and query.strip():
        # the console's full-text index (FTS5 trigram; short words by LIKE), same order
        ids, _total = app.store.find_packs(
            status=status, group=group, topic=topic, q=query, limit=rows or MAX_LIMIT
        )
        found = {p.id: p for p in app.store.list_packs(ids=ids, full=full)} if ids else {}
        packs = [found[i] for i in ids if i in found]
    else:
        packs = app.store.list_packs(status=status, group=group, topic=topic, full=full, limit=rows)
    if as_json:
        echo_json([p.to_dict(full=full) for p in packs])
        return
    more = limit is None and len(packs) > TABLE_ROWS
    packs = packs[:TABLE_ROWS] if more else packs
    echo_table(
        ["ID", "状态", "标题", "来源", "人群", "主题", "发布时间"],
        [
            tuple(
                shown(v)
                for v in (
                    p.id,
                    PACK_STATUS_LABELS.get(p.status, p.status) + (" ⚡紧急" if p.urgent else ""),
                    p.title,
                    ", ".join(p.feeds),
                    "、".join(GROUPS.get(g, g) for g in p.groups),
                    "、".join(TOPICS.get(t, t) for t in p.topics),
                    local_time(app, p.published_at),
                )
            )
            for p in packs
        ],
        title=f"内容包 ({len(packs)})",
    )
    if more:
        click.echo(f"仅列出最新 {TABLE_ROWS} 条; 用 --limit N 列出更多, 或 --json 取全部。")


@packs_group.command("show")
@click.argument("pack_id", type=ID)
@json_option
@pass_app
def show_pack(app: AppContext, pack_id: int, as_json: bool) -> None:
    """查看一个内容包: 正文、来源、标签 (附理由)、投递去向和内容变更。"""
    pack = app.store.get_pack(pack_id)
    changes = app.store.pack_changes(pack_id)
    deliveries = app.store.deliveries_of_pack(pack_id)
    edits = app.store.pack_text_edits(pack_id)
    if as_json:
        data = pack.to_dict(full=True)
        data["tags"] = [tag.__dict__ for tag in pack.tags]
        data["changes"] = changes
        data["deliveries"] = [
            {
                k: d[k]
                for k in (
                    "id",
                    "channel",
                    "edition",
                    "status",
                    "scheduled_at",
                    "delivered_at",
                    "url",
                )
            }
            for d in deliveries
        ]
        data["text_edits"] = edits
        echo_json(data)
        return
    _print_pack(app, pack)
    if edits:
        first = edits[0]
        click.echo(
            f"\n发送用标题和摘要已由编辑修改 {len(edits)} 次 (最近: {edits[-1]['who']}, "
            f"{local_time(app, edits[-1]['at'])}); 原标题: {shown(first['old_title'])}"
        )
    _print_deliveries(app, deliveries)
    for change in changes:
        if change["diff"]:
            click.echo(f"\n内容变更 {local_time(app, change['at'])} (来源 {change['feed']}):")
            click.echo(strip_controls(change["diff"]))


def _print_deliveries(app: AppContext, deliveries: list[dict]) -> None:
    """Where the pack went: channel, status, time (delivered, else scheduled), link."""
    from media_matrix.models import DELIVERY_STATUS_LABELS

    if not deliveries:
        click.echo("\n投递: 尚未排期到任何渠道")
        return
    echo_table(
        ["投递", "渠道", "状态", "时间", "链接"],
        [
            (
                d["id"],
                shown(app.settings.channel_title(d["channel"]))
                + (f" (第 {d['edition']} 版)" if (d["edition"] or 1) > 1 else ""),
                DELIVERY_STATUS_LABELS.get(d["status"], d["status"]),
                ("送达 " + local_time(app, d["delivered_at"]))
                if d["delivered_at"]
                else ("计划 " + local_time(app, d["scheduled_at"])),
                shown(d["url"] or ""),
            )
            for d in deliveries
        ],
        title=f"投递去向 ({len(deliveries)})",
    )


def _print_pack(app: AppContext, pack: Pack) -> None:
    fields = [
        ("ID", pack.id),
        ("标题", pack.title),
        (
            "状态",
            PACK_STATUS_LABELS.get(pack.status, pack.status) + (" (紧急)" if pack.urgent else ""),
        ),
        ("链接", pack.url or "-"),
        ("来源订阅", ", ".join(pack.feeds)),
        ("发布单位", pack.source or "-"),
        ("区县", pack.county),
        ("作者", pack.author or "-"),
        ("栏目", "、".join(pack.categories) or "-"),
        ("发布时间", local_time(app, pack.published_at)),
        ("抓取时间", local_time(app, pack.fetched_at)),
        ("更新时间", local_time(app, pack.updated_at)),
        ("内容哈希", pack.content_hash[:16]),
        ("图片", len(pack.images)),
        ("音视频", ", ".join(e.get("url", "") for e in pack.enclosures) or "-"),
        ("摘要", pack.summary),
    ]
    echo_table(["字段", "值"], [(k, shown(v)) for k, v in fields], title=f"内容包 {pack.id}")
    if pack.tags:
        echo_table(
            ["类型", "标签", "得分", "来源", "理由"],
            [
                (
                    "人群" if t.kind == "group" else "主题",
                    shown(
                        (GROUPS if t.kind == "group" else TOPICS).get(t.tag, t.tag)
                        + (" (已移除)" if t.removed else "")
                    ),
                    f"{t.score:.1f}",
                    "编辑" if t.origin == "editor" else "规则",
                    shown(t.reason),
                )
                for t in pack.tags
            ],
            title="标签及理由",
        )
    text = strip_controls(pack.text)
    click.echo("\n正文:\n" + (text[:2000] + ("…" if len(text) > 2000 else "")))


@packs_group.command("edit")
@click.argument("pack_id", type=ID)
@click.option("--title", default=None, help="发送用的新标题 (不给则保持不变)")
@click.option("--summary", default=None, help="发送用的新摘要 (不给则保持不变)")
@by_option
@note_option
@json_option
@pass_app
def edit_pack(
    app: AppContext,
    pack_id: int,
    title: str | None,
    summary: str | None,
    by: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """修改内容包发送用的标题和摘要 (原文保留, 每次修改记入操作日志)。"""
    from media_matrix.pack_text import TextEditError, edit_text

    if title is None and summary is None:
        raise UsageFailure("没有要改的内容: 请给出 --title 或 --summary (nothing to change)")
    pack = app.store.get_pack(pack_id)
    try:
        changed = edit_text(
            app.store,
            pack_id,
            pack.title if title is None else title,
            pack.summary if summary is None else summary,
            by=by or default_user(),
            note=note,
        )
    except TextEditError as exc:
        raise UsageFailure(str(exc)) from None
    pack = app.store.get_pack(pack_id)
    if as_json:
        echo_json({"id": pack_id, "changed": changed, "title": pack.title, "summary": pack.summary})
        return
    click.echo(f"内容包 {pack_id}: " + ("已修改 (原文已保留)" if changed else "未变化"))
    click.echo(f"标题: {shown(pack.title)}")
    click.echo(f"摘要: {shown(pack.summary)}")


def register(cli: click.Group) -> None:
    cli.add_command(packs_group)


@packs_group.command("retag")
@click.argument("pack_id", type=ID, required=False)
@click.option("--all", "retag_every", is_flag=True, help="对所有内容包重新应用规则")
@click.option("--add-group", type=GROUP, multiple=True, help="加上人群 (id 或中文名, 可重复)")
@click.option("--remove-group", type=GROUP, multiple=True, help="去掉人群 (id 或中文名, 可重复)")
@click.option("--add-topic", type=TOPIC, multiple=True, help="加上主题 (id 或中文名, 可重复)")
@click.option("--remove-topic", type=TOPIC, multiple=True, help="去掉主题 (id 或中文名, 可重复)")
@by_option
@note_option
@json_option
@pass_app
def retag_pack(
    app: AppContext,
    pack_id: int | None,
    retag_every: bool,
    add_group: tuple[str, ...],
    remove_group: tuple[str, ...],
    add_topic: tuple[str, ...],
    remove_topic: tuple[str, ...],
    by: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """编辑修改内容包的标签, 或用 --all 按修改后的规则重新打标签。

    编辑的决定在重新导入和 retag --all 之后保持不变。
    """
    edits = add_group or remove_group or add_topic or remove_topic
    if retag_every == (pack_id is not None):
        raise UsageFailure("give either a pack ID or --all")
    if retag_every:
        if edits:
            raise UsageFailure("--all re-applies rules; editor changes need a pack ID")
        report = retag_all(app.settings, app.store, by=by or default_user(), note=note)
        if as_json:
            echo_json(report.__dict__)
        else:
            click.echo(
                f"已重新打标 {report.packs} 个内容包: {report.changed_tags} 个标签变化,"
                f" 涉及 {report.changed_packs} 个内容包 (编辑的标签保持不变)"
            )
        return
    assert pack_id is not None
    if not edits:
        raise UsageFailure("nothing to change: use --add-group/--remove-group/--add-topic/...")
    try:
        done = edit_tags(
            app.settings,
            app.store,
            pack_id,
            add_groups=add_group,
            remove_groups=remove_group,
            add_topics=add_topic,
            remove_topics=remove_topic,
            by=by or default_user(),
            note=note,
        )
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    pack = app.store.get_pack(pack_id)
    if as_json:
        echo_json({"id": pack.id, "changes": done, "groups": pack.groups, "topics": pack.topics})
        return
    click.echo(f"内容包 {pack.id}: " + "; ".join(done))
    click.echo("人群: " + "、".join(GROUPS.get(g, g) for g in pack.groups))
    click.echo("主题: " + "、".join(TOPICS.get(t, t) for t in pack.topics))
