"""What an editor hit (issue 11): filters, local times, --by/--note and a Chinese audit,
feed counts, Chinese errors, Chinese help, packs show/edit/search, -o folders, 【预警】, scores.

Every test drives the real CLI (in process, through ``run_guarded``) over a real SQLite file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from media_matrix.cli import COMMAND_MODULES, cli
from media_matrix.cli.common import VocabType, run_guarded
from media_matrix.models import Item, PackStatus
from media_matrix.store import open_store
from media_matrix.timeutil import now_iso

CHANNELS = [
    {
        "name": "city",
        "title": "市科协公众号",
        "type": "outbox",
        "county": "市级",
        "audience": ["public"],
        "slots": ["0 8 * * *"],
        "path": "var/out/city",
    },
    {
        "name": "qingfeng",
        "type": "outbox",
        "county": "清丰县",
        "audience": ["farmers"],
        "slots": ["0 9 * * *"],
        "path": "var/out/qingfeng",
    },
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    data = {
        "database": "var/db.sqlite",
        "timezone": "Asia/Shanghai",
        "feeds": [{"name": "local", "kind": "packdir", "url": str(tmp_path / "inbox")}],
        "channels": CHANNELS,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.out)


def runner(config: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """The CLI in process on ``config``: invoke(*argv) -> Result."""

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        code = run_guarded(cli, ["--config", str(config), *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def run(config: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    return runner(config, capsys)


def db(config: Path):  # type: ignore[no-untyped-def]
    return open_store(config.parent / "var" / "db.sqlite")


def add_pack(config: Path, title: str, text: str = "", *, topics=(), groups=(), status="new"):  # type: ignore[no-untyped-def]
    store = db(config)
    try:
        item = Item(guid=title, title=title, text=text or title * 5, content_hash=f"h-{title}")
        pack_id = store.insert_pack("local", item, at=now_iso(), status=PackStatus(status))
        for kind, tags in (("topic", topics), ("group", groups)):
            for tag in tags:
                store.execute(
                    "INSERT INTO pack_tags (pack_id, kind, tag, score, reason, origin, updated_at)"
                    " VALUES (?, ?, ?, 5, 'test', 'rule', ?)",
                    (pack_id, kind, tag, now_iso()),
                )
        return pack_id
    finally:
        store.close()


def _commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(cli)

    def walk(path, command):  # type: ignore[no-untyped-def]
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                yield from walk((*path, name), command.get_command(ctx, name))

    for name in sorted(COMMAND_MODULES):
        yield from walk((name,), cli.get_command(ctx, name))


COMMANDS = list(_commands())

# -- filters ------------------------------------------------------------------------------------

VOCAB_NAMES = {
    "status",
    "group",
    "topic",
    "channel",
    "channel_names",
    "feed_names",
    "feed",
    "county",
    "role",
    "add_group",
    "remove_group",
    "add_topic",
    "remove_topic",
}
# options that are a fixed machine vocabulary people type in English anyway
FIXED_CHOICES = {("stats", "export", "fmt"), ("stats", "pull", "endpoint")}


def test_every_id_option_takes_the_shared_vocabulary_type():
    """The class: an option naming a group, topic, status, channel, feed, county, role or
    statistics dimension uses VocabType; no other click.Choice slips in."""
    bad, seen = [], 0
    for path, command in COMMANDS:
        for param in command.params:
            name = param.name or ""
            label = " ".join(path) + " " + name
            if name in VOCAB_NAMES or (path[0] == "stats" and name == "by"):
                seen += 1
                if not isinstance(param.type, VocabType):
                    bad.append(f"{label}: {param.type!r} is not a VocabType")
            elif isinstance(param.type, click.Choice) and (*path, name) not in FIXED_CHOICES:
                bad.append(f"{label}: a click.Choice outside the shared vocabulary type")
    assert bad == []
    assert seen >= 14


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["packs", "list", "--topic", "nosuch"], "weather (气象)"),
        (["packs", "list", "--group", "nosuch"], "farmers (农民)"),
        (["packs", "list", "--status", "nosuch"], "approved (已通过)"),
        (["deliveries", "--channel", "nosuch"], "city (市科协公众号)"),
        (["deliveries", "--status", "nosuch"], "delivered (已送达)"),
        (["plan", "--channel", "nosuch"], "qingfeng"),
        (["queue", "1", "--channel", "nosuch"], "qingfeng"),
        (["dispatch", "--once", "--channel", "nosuch"], "city"),
        (["ingest", "--feed", "nosuch"], "local"),
        (["stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--by", "x"], "county"),
        (["officers", "list", "--county", "nosuch"], "清丰县"),
        (["packs", "retag", "1", "--add-topic", "nosuch"], "weather (气象)"),
    ],
)
def test_unknown_ids_exit_2_listing_the_valid_ones(run, argv, needle):
    result = run(*argv)
    assert result.code == 2, result.err
    assert "nosuch" in result.err or "'x'" in result.err
    assert needle in result.err


def test_chinese_labels_are_aliases_of_the_ids(run, config):
    weather = add_pack(config, "寒潮预警", topics=["weather"], groups=["farmers"])
    add_pack(config, "别的内容", topics=["health"])
    by_label = run(
        "packs", "list", "--topic", "气象", "--group", "农民", "--status", "待审", "--json"
    )
    assert by_label.code == 0, by_label.err
    assert [p["id"] for p in by_label.json()] == [weather]
    by_id = run("packs", "list", "--topic", "weather", "--json")
    assert [p["id"] for p in by_id.json()] == [weather]
    assert run("deliveries", "--channel", "市科协公众号", "--status", "已送达").code == 0
    assert run("deliveries", "--status", "失败").code == 0  # 失败(将重试) without its note
    assert run("plan", "--channel", "市科协公众号", "--days", "1").code == 0
    assert (
        run(
            "stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--by", "区县,主题"
        ).code
        == 0
    )


# -- times --------------------------------------------------------------------------------------

ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
LOCAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?!:)")


def test_people_see_local_time_and_json_keeps_iso_with_offset(run, config, tmp_path):
    pack_id = add_pack(config, "寒潮来了", status="approved")
    store = db(config)
    store.execute(
        "UPDATE packs SET published_at = '2026-11-29T12:47:00.000000+00:00' WHERE id = ?",
        (pack_id,),
    )
    store.close()
    assert run("ingest").code == 0
    queued = run("queue", str(pack_id), "--channel", "city", "--at", "2099-03-01T08:30")
    assert queued.code == 0, queued.err
    screens = {
        "packs list": run("packs", "list").out,
        "packs show": run("packs", "show", str(pack_id)).out,
        "feeds list": run("feeds", "list").out,
        "deliveries": run("deliveries").out,
        "deliveries show": run("deliveries", "show", "1").out,
        "status": run("status").out,
        "plan": run("plan", "--days", "1").out,
        "audit": run("audit").out,
    }
    for name, text in screens.items():
        assert not ISO_UTC.search(text), (name, text)
        assert LOCAL.search(text), (name, text)
    assert "2026-11-29 20:47" in screens["packs list"]  # UTC+8
    assert "2026-11-29 20:47" in screens["packs show"]
    assert "2099-03-01 08:30" in screens["deliveries"]
    assert "2099-03-01 08:30" in screens["audit"]  # the note written by queue
    listed = run("packs", "list", "--json").json()[0]
    assert listed["published_at"] == "2026-11-29T12:47:00.000000+00:00"
    delivery = run("deliveries", "--json").json()[0]
    assert delivery["scheduled_at"] == "2099-03-01T00:30:00.000000+00:00"
    assert run("audit", "--json").json()[0]["at"].endswith("+00:00")


def test_reports_say_when_they_were_made_in_local_time(run, tmp_path):
    target = tmp_path / "r.html"
    result = run(
        "stats",
        "export",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        "--format",
        "html",
        "-o",
        str(target),
    )
    assert result.code == 0, result.err
    html = target.read_text(encoding="utf-8")
    line = next(x for x in html.splitlines() if "生成时间" in x)
    assert "UTC" not in line and LOCAL.search(line), line


# -- --by, --note and the audit in Chinese --------------------------------------------------------

NOTE_COMMANDS = {
    "packs approve",
    "packs reject",
    "packs urgent",
    "packs retag",
    "packs edit",
    "queue",
    "unqueue",
    "deliveries retry",
    "deliveries cancel",
    "users add",
    "users disable",
    "users passwd",
    "officers import",
    "officers disable",
}


def test_every_editor_action_takes_by_and_note():
    names = {" ".join(path): command for path, command in COMMANDS}
    missing = [
        f"{name}: {opt}"
        for name in sorted(NOTE_COMMANDS)
        for opt in ("by", "note")
        if opt not in {p.name for p in names[name].params}
    ]
    assert missing == []
    # and never one without the other: whoever acts can always say why
    for path, command in COMMANDS:
        names = {p.name for p in command.params}
        if path[0] != "stats":  # stats export --by is a dimension list, not a person
            assert ("by" in names) == ("note" in names), path


def test_delivery_cancel_retry_and_retag_record_who_and_why_in_chinese(run, config):
    pack_id = add_pack(config, "防汛知识", status="approved")
    assert (
        run("queue", str(pack_id), "--channel", "city", "--by", "王编辑", "--note", "配合汛期").code
        == 0
    )
    cancel = run("deliveries", "cancel", "1", "--by", "李运维", "--note", "标题有误")
    assert cancel.code == 0, cancel.err
    retry = run("deliveries", "retry", "1", "--by", "李运维", "--note", "已改好")
    assert retry.code == 0, retry.err
    retag = run(
        "packs",
        "retag",
        str(pack_id),
        "--add-topic",
        "防灾减灾",
        "--by",
        "王编辑",
        "--note",
        "汛期专题",
    )
    assert retag.code == 0, retag.err
    rows = run("audit", "--json").json()
    by_action = {r["action"]: r for r in rows}
    # stable English ids in the database and --json
    assert {"queue", "delivery.cancel", "delivery.retry", "add_topic"} <= set(by_action)
    assert by_action["delivery.cancel"]["who"] == "李运维"
    assert "标题有误" in by_action["delivery.cancel"]["note"]
    assert "已改好" in by_action["delivery.retry"]["note"]
    assert "配合汛期" in by_action["queue"]["note"]
    assert by_action["add_topic"]["note"] == "disaster; 汛期专题"
    assert run("packs", "retag", "--all", "--by", "王编辑", "--note", "规则更新").code == 0
    retag_all = run("audit", "--json").json()[0]
    assert (retag_all["action"], retag_all["who"]) == ("retag_all", "王编辑")
    assert "规则更新" in retag_all["note"]
    shown = run("audit").out
    for label in (
        "取消投递",
        "重新投递",
        "排期",
        "加主题标签",
        "原状态 排队中",
        "原状态 已取消",
        "按规则重新打标签",
    ):
        assert label in shown, (label, shown)
    for english in ("delivery.cancel", "delivery.retry", "from queued", "add_topic"):
        assert english not in shown, (english, shown)


def test_every_action_the_code_audits_has_a_chinese_label():
    """A new audit action without a label in models.AUDIT_ACTION_LABELS fails here."""
    from media_matrix.models import AUDIT_ACTION_LABELS

    root = Path(__file__).resolve().parent.parent / "media_matrix"
    pattern = re.compile(r"""\.audit\(\s*[^,]+,\s*(?:"([a-z_.]+)"|"([a-z_.]+)" if)""", re.S)
    found = set()
    for path in root.rglob("*.py"):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            found.add(m.group(1) or m.group(2))
    assert len(found) > 15
    assert sorted(found - set(AUDIT_ACTION_LABELS)) == []


# -- packs show / edit / list -q, and the score beside its reason ------------------------------


def write_pack(inbox: Path, name: str, title: str, body: str, **extra) -> None:  # type: ignore[no-untyped-def]
    folder = inbox / name
    folder.mkdir()
    meta = {"title": title, "summary": body[:30], "published": "2026-11-10T08:30:00+08:00"}
    meta.update(extra)
    (folder / "pack.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    (folder / "body.md").write_text(body, encoding="utf-8")


def test_packs_list_q_finds_chinese_words_in_the_console_index(run, config):
    inbox = config.parent / "inbox"
    write_pack(inbox, "a", "寒潮大风预警", "明天有寒潮和大风, 注意防寒保暖, 农作物要覆盖保温。")
    write_pack(inbox, "b", "夏季防溺水", "暑假到了, 孩子们不要私自下河游泳。")
    assert run("ingest").code == 0
    packs = {p["title"]: p["id"] for p in run("packs", "list", "--json").json()}
    hits = run("packs", "list", "-q", "防寒保暖", "--json").json()
    assert [p["id"] for p in hits] == [packs["寒潮大风预警"]]
    assert [p["id"] for p in run("packs", "list", "-q", "游泳", "--json").json()] == [
        packs["夏季防溺水"]
    ]  # a two-character word: below the trigram size, still found
    assert run("packs", "list", "-q", "地震", "--json").json() == []
    table = run("packs", "list", "-q", "寒潮")
    assert "寒潮大风预警" in table.out and "夏季防溺水" not in table.out


def test_packs_show_says_where_it_went_and_edit_keeps_the_original(run, config):
    pack_id = add_pack(config, "原来的标题", status="approved")
    assert run("packs", "show", str(pack_id)).out.count("尚未排期") == 1
    assert run("queue", str(pack_id), "--channel", "city", "--at", "2099-03-01T08:30").code == 0
    edit = run(
        "packs", "edit", str(pack_id), "--title", "改过的标题", "--by", "王编辑", "--note", "更醒目"
    )
    assert edit.code == 0, edit.err
    shown = run("packs", "show", str(pack_id)).out
    assert "投递去向" in shown and "市科协公众号" in shown and "排队中" in shown
    assert "计划 2099-03-01 08:30" in shown
    assert "原标题: 原来的标题" in shown and "改过的标题" in shown
    data = run("packs", "show", str(pack_id), "--json").json()
    assert data["title"] == "改过的标题"
    assert data["deliveries"][0]["channel"] == "city"
    assert data["text_edits"][0]["old_title"] == "原来的标题"
    audit = run("audit", "--json").json()[0]
    assert (audit["action"], audit["who"]) == ("edit_text", "王编辑") and "更醒目" in audit["note"]
    assert run("packs", "edit", str(pack_id)).code == 2  # nothing to change
    assert run("packs", "edit", str(pack_id), "--title", " ").code == 2  # empty title refused
    assert run("packs", "show", str(pack_id), "--json").json()["title"] == "改过的标题"


def test_the_score_beside_a_reason_adds_up(run, config):
    inbox = config.parent / "inbox"
    body = "寒潮来袭, 气温骤降, 大风降温, 注意天气预报和气象预警。" * 3
    write_pack(inbox, "a", "寒潮天气预警", body, topics=["weather"], groups=["farmers"])
    assert run("ingest").code == 0
    pack_id = run("packs", "list", "--json").json()[0]["id"]
    tags = run("packs", "show", str(pack_id), "--json").json()["tags"]
    checked = 0
    for tag in tags:
        numbers = re.findall(r"= (\d+\.\d)$|得分 (\d+\.\d)/", tag["reason"])
        if numbers:
            total, plain = numbers[-1]
            assert float(total or plain) == round(tag["score"], 1), tag
            checked += 1
    assert checked >= 1, tags
    assert any("标注直接通过" in t["reason"] for t in tags), tags


# -- -o never creates folders -------------------------------------------------------------------


def test_every_output_option_uses_the_shared_output_type():
    from media_matrix.cli.common import OutputPathType

    outputs = [
        (" ".join(path), param)
        for path, command in COMMANDS
        for param in command.params
        if "-o" in getattr(param, "opts", ())
    ]
    assert {name for name, _ in outputs} >= {"stats export", "officers kit"}
    assert [n for n, p in outputs if not isinstance(p.type, OutputPathType)] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "xlsx"],
        ["stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "csv"],
        ["stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "html"],
        ["officers", "kit"],
    ],
)
def test_output_into_a_missing_folder_is_refused(run, tmp_path, argv):
    missing = tmp_path / "nonexistent" / "dir"
    result = run(*argv, "-o", str(missing / "r.out"))
    assert result.code == 1, result.err
    assert str(missing) in result.err and "不存在" in result.err
    assert not (tmp_path / "nonexistent").exists()


def test_output_into_an_existing_folder_still_works(run, tmp_path):
    target = tmp_path / "r.xlsx"
    argv = ["stats", "export", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "xlsx"]
    assert run(*argv, "-o", str(target)).code == 0 and target.stat().st_size > 0
    assert run("officers", "kit", "-o", str(tmp_path / "kit")).code == 0  # the folder named
    assert (tmp_path / "kit").is_dir()


# -- feeds list 条目 ------------------------------------------------------------------------------


def test_feeds_list_counts_the_last_fetch_and_distinct_packs_not_every_read(run, config):
    inbox = config.parent / "inbox"
    for n in range(3):
        write_pack(inbox, f"p{n}", f"科普内容 {n}", f"第 {n} 篇科普正文, 讲气象和防灾。")
    for _ in range(3):  # three reads of the same packdir
        assert run("ingest").code == 0
    row = run("feeds", "list", "--json").json()[0]
    assert (row["items_last_fetch"], row["packs"]) == (3, 3)
    write_pack(inbox, "p3", "科普内容 3", "第 3 篇科普正文, 讲节水。")
    assert run("ingest").code == 0
    row = run("feeds", "list", "--json").json()[0]
    assert (row["items_last_fetch"], row["packs"]) == (4, 4)
    table = run("feeds", "list").out
    assert "上次条目" in table and "内容包" in table


# -- errors people read are Chinese -------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_feed_errors_read_in_chinese_and_ingest_exits_1_when_any_feed_failed(
    tmp_path, capsys, feed_server
):
    feed_server.add("/gone.xml", status=404, body=b"no")
    feed_server.add("/slow.xml", delay=2.0, body=b"<rss/>")
    (tmp_path / "inbox").mkdir()
    data = {
        "database": "db.sqlite",
        "network": {"allow": ["127.0.0.1"]},
        "ingest": {"read_timeout": 0.5, "connect_timeout": 0.5},
        "feeds": [
            {"name": "local", "kind": "packdir", "url": str(tmp_path / "inbox")},
            {"name": "down", "kind": "rss", "url": f"http://127.0.0.1:{_free_port()}/f.xml"},
            {"name": "gone", "kind": "rss", "url": feed_server.url("/gone.xml")},
            {"name": "slow", "kind": "rss", "url": feed_server.url("/slow.xml")},
            {"name": "private", "kind": "rss", "url": "http://10.255.255.1/f.xml"},
        ],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    invoke = runner(config, capsys)

    ingest = invoke("ingest")
    assert ingest.code == 1, ingest.err  # four of five failed; the packdir did not
    expected = {
        "down": "连接被拒绝",
        "gone": "HTTP 404 未找到",
        "slow": "超时",
        "private": "地址被拒绝",
    }
    for phrase in expected.values():
        assert phrase in ingest.out + ingest.err
    feeds = {r["name"]: r for r in invoke("feeds", "list", "--json").json()}
    for name, phrase in expected.items():
        assert feeds[name]["error_text"] == phrase, feeds[name]
        assert feeds[name]["last_error"] and feeds[name]["last_error"] != phrase  # raw kept
    assert "Connection refused" in feeds["down"]["last_error"]
    table = invoke("feeds", "list").out + invoke("status").out
    assert "Connection refused" not in table and "NewConnectionError" not in table
    one_ok = invoke("ingest", "--feed", "local")
    assert one_ok.code == 0, one_ok.err
    one_bad = invoke("ingest", "--feed", "local", "--feed", "gone", "--json")
    assert one_bad.code == 1
    assert {r["feed"]: r["error_text"] for r in one_bad.json()}["gone"] == "HTTP 404 未找到"
    unknown = invoke("ingest", "--feed", "nosuch")
    assert unknown.code == 2 and "配置错误" not in unknown.err
    assert "local" in unknown.err and "gone" in unknown.err


def test_error_phrase_maps_exceptions_statuses_and_stored_text():
    import socket
    import ssl

    from media_matrix.errortext import error_phrase

    assert error_phrase(ConnectionRefusedError(111, "Connection refused")) == "连接被拒绝"
    assert error_phrase(ssl.SSLCertVerificationError("certificate verify failed")) == "证书错误"
    assert error_phrase(socket.gaierror(-2, "Name or service not known")) == "域名无法解析"
    assert error_phrase(503) == "HTTP 503 服务暂不可用"
    assert error_phrase(418) == "HTTP 418 请求被拒绝"
    wrapped = RuntimeError("send failed")
    wrapped.__cause__ = TimeoutError("timed out")
    assert error_phrase(wrapped) == "超时"
    assert error_phrase("webhook: HTTP 500 from http://x") == "HTTP 500 服务器内部错误"
    assert error_phrase("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed") == "证书错误"
    assert error_phrase("") == "" and error_phrase(None) == ""
    assert error_phrase("something odd") == "其他错误"


def test_delivery_errors_read_in_chinese_with_the_raw_detail_in_json(tmp_path, capsys):
    data = {
        "database": "db.sqlite",
        "timezone": "Asia/Shanghai",
        "templates": str(Path(__file__).resolve().parent.parent / "channels"),
        "channels": [
            {
                "name": "hook",
                "type": "webhook",
                "url": f"http://127.0.0.1:{_free_port()}/hook",
                "secret": "s3cret-s3cret-s3cret",
            }
        ],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    invoke = runner(config, capsys)

    assert invoke("init").code == 0
    store = open_store(tmp_path / "db.sqlite")
    item = Item(guid="g", title="防溺水", text="防溺水" * 5, content_hash="h")
    pack_id = store.insert_pack("local", item, at=now_iso(), status=PackStatus.APPROVED)
    store.close()
    assert invoke("queue", str(pack_id), "--channel", "hook", "--at", "now").code == 0
    invoke("dispatch", "--once")
    listed = invoke("deliveries").out
    assert "连接被拒绝" in listed and "Connection refused" not in listed
    shown = invoke("deliveries", "show", "1").out
    assert "最近错误: 连接被拒绝" in shown
    row = invoke("deliveries", "--json").json()[0]
    assert row["error_text"] == "连接被拒绝"
    assert "refused" in row["last_error"].lower()


# -- help in Chinese ----------------------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_command_and_option_helps_in_chinese_without_rest_markup():
    """Commands and options stay English; what --help says about them is Chinese, and no reST
    double backticks show."""
    bad = []
    for path, command in [(("media-matrix",), cli), *COMMANDS]:
        name = " ".join(path)
        ctx = click.Context(command, info_name=name)
        text = command.get_help(ctx)
        if not CJK.search(command.help or ""):
            bad.append(f"{name}: command help not Chinese: {command.help!r}")
        if "``" in text:
            bad.append(f"{name}: double backticks in help")
        for param in command.params:
            if isinstance(param, click.Option) and param.help and not CJK.search(param.help):
                if param.name in ("help",):
                    continue
                bad.append(f"{name} {param.opts[0]}: {param.help!r}")
    assert bad == [], "\n".join(bad)


def test_stats_export_help_describes_the_json_it_writes():
    command = dict((" ".join(p), c) for p, c in COMMANDS)["stats export"]
    text = command.get_help(click.Context(command, info_name="export"))
    assert "total" not in text
    assert "JSON" in text and CJK.search(text)
