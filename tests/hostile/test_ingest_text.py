"""Text and ids a stranger writes: control characters and terminal escapes stripped at ingest,
rich markup printed as written, unknown or malformed ids refused (issue 14, items 13 and 15)."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner
from hostile_helpers import BODY, ingest, rss, write_config, write_pack

from media_matrix.cli import cli

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
EVIL_TITLE = "冬季\x1b]0;pwned\x07防火\x1b[31m须知\u202etxt.exe\x85\x00"
MARKUP_TITLE = "[link=https://evil.example]点我领奖[/link] [bold red]紧急[/]"


def test_control_characters_are_stripped_at_ingest(tmp_path):
    feed = tmp_path / "feed.xml"
    body = f"<p>{BODY}\x1b[2J清屏\u202e</p>"
    feed.write_bytes(rss([("a1", EVIL_TITLE.replace("\x00", ""), body)]))
    packs = tmp_path / "packs"
    write_pack(
        packs,
        "p",
        body=f"<p>{BODY}乙</p>",
        title="资源包\x1b]8;;https://x\x07标题",
        author="a\x9bb",
    )
    config = write_config(
        tmp_path,
        [
            {"name": "kp", "kind": "rss", "url": str(feed)},
            {"name": "local", "kind": "packdir", "url": str(packs)},
        ],
    )
    _, store, _ = ingest(config, now=NOW)
    stored = {p.title: p for p in store.list_packs(full=True)}
    assert set(stored) == {"冬季防火须知txt.exe", "资源包标题"}
    for pack in stored.values():
        for value in (pack.title, pack.summary, pack.text, pack.content_html, pack.author):
            assert not any(ch in value for ch in "\x1b\x07\x9b\u202e\x85"), repr(value)
    assert "清屏" in stored["冬季防火须知txt.exe"].text


def test_titles_print_literally_in_packs_list_and_show(tmp_path):
    packs = tmp_path / "packs"
    write_pack(packs, "p", title=MARKUP_TITLE, summary="摘要 [link=file:///etc/passwd]x[/link]")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    _, store, _ = ingest(config, now=NOW)
    pack_id = store.list_packs()[0].id
    runner = CliRunner()
    listed = runner.invoke(cli, ["--config", str(config), "packs", "list"], terminal_width=400)
    assert listed.exit_code == 0, listed.output
    assert "[link=https://evil.example]点我领奖[/link]" in listed.output
    shown = runner.invoke(
        cli, ["--config", str(config), "packs", "show", str(pack_id)], terminal_width=400
    )
    assert shown.exit_code == 0, shown.output
    assert "[bold red]紧急[/]" in shown.output
    assert "[link=file:///etc/passwd]x[/link]" in shown.output


def test_stored_escape_sequences_never_reach_the_terminal(tmp_path):
    """A pack stored before ingest stripped controls still prints clean."""
    packs = tmp_path / "packs"
    write_pack(packs, "p")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    _, store, _ = ingest(config, now=NOW)
    pack_id = store.list_packs()[0].id
    store.execute("UPDATE packs SET title = ? WHERE id = ?", ("旧\x1b]0;pwned\x07标题", pack_id))
    runner = CliRunner()
    for args in (["packs", "list"], ["packs", "show", str(pack_id)]):
        done = runner.invoke(cli, ["--config", str(config), *args], terminal_width=400)
        assert done.exit_code == 0 and "\x1b]0;" not in done.output and "旧标题" in done.output


def test_topic_and_group_ids_are_validated_at_ingest(tmp_path):
    packs = tmp_path / "packs"
    write_pack(packs, "comma", topics=["health,fire"])
    write_pack(packs, "formula", body=f"<p>{BODY}甲</p>", topics=['=HYPERLINK("x")'])
    write_pack(packs, "group", body=f"<p>{BODY}乙</p>", groups=["seniors,youth"])
    write_pack(packs, "unknown", body=f"<p>{BODY}丁</p>", topics=["health", "astrology"])
    write_pack(packs, "ok", body=f"<p>{BODY}丙</p>", topics=["health"], groups=["seniors"])
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    report, store, _ = ingest(config, now=NOW)
    errors = dict(report.feeds[0].item_errors)
    assert "topics" in errors["comma"] and "'health,fire'" in errors["comma"]
    assert "topics" in errors["formula"]
    assert "groups" in errors["group"]
    assert "'astrology' dropped" in dict(report.feeds[0].warnings)["unknown"]  # stored without
    stored = store.list_packs()
    assert len(stored) == 2
    for pack in stored:
        tags = {(t.kind, t.tag) for t in store.tags_of(pack.id)}
        assert all("," not in tag for _, tag in tags) and ("topic", "health") in tags
        assert ("topic", "astrology") not in tags
