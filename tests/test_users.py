"""Console users and full-text search over a real SQLite file; the `users` CLI in a process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from media_matrix import users
from media_matrix.config import load_settings
from media_matrix.models import Item, PackStatus
from media_matrix.store import open_store
from media_matrix.store.base import StoreError
from media_matrix.store.search import check_sqlite_version
from media_matrix.timeutil import now_iso, utcnow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"database": "t.db", "counties": {"清丰县": 1, "范县": 1}}), encoding="utf-8"
    )
    settings = load_settings(config)
    store = open_store(settings.database)
    yield settings, store, config
    store.close()


def run_cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=60,
    )


def test_password_is_argon2_and_login_checks_it(env):
    settings, store, _ = env
    users.add_user(settings, store, "wang", "editor", "correct horse", by="test")
    digest = store.password_hash_of("wang")
    assert digest.startswith("$argon2id$") and "correct horse" not in digest
    assert users.authenticate(settings, store, "wang", "correct horse").user["name"] == "wang"
    assert users.authenticate(settings, store, "wang", "wrong").reason == "bad"
    assert users.authenticate(settings, store, "nobody", "x" * 9).reason == "bad"


def test_five_failures_lock_for_fifteen_minutes_and_are_audited(env):
    settings, store, _ = env
    users.add_user(settings, store, "li", "operator", "right password", by="test")
    now = utcnow()
    for _ in range(4):
        assert users.authenticate(settings, store, "li", "nope", now).reason == "bad"
    assert users.authenticate(settings, store, "li", "nope", now).reason == "locked"
    # locked: even the right password is refused until the 15 minutes are over
    later = now + timedelta(minutes=14)
    assert users.authenticate(settings, store, "li", "right password", later).reason == "locked"
    after = now + timedelta(minutes=15, seconds=1)
    assert users.authenticate(settings, store, "li", "right password", after).user is not None
    actions = [r["action"] for r in store.audit_log(subject="user:li")]
    assert actions.count("login_failed") == 4
    assert "login_locked" in actions and "login_refused" in actions and actions[0] == "login"


def test_disabled_user_and_bad_input(env):
    settings, store, _ = env
    users.add_user(settings, store, "zhao", "viewer", "12345678", by="test")
    users.disable_user(store, "zhao", by="admin")
    assert users.authenticate(settings, store, "zhao", "12345678").reason == "disabled"
    with pytest.raises(users.UserError, match="角色"):
        users.add_user(settings, store, "a", "boss", "12345678", by="t")
    with pytest.raises(users.UserError, match="用户名"):
        users.add_user(settings, store, "<script>", "viewer", "12345678", by="t")
    with pytest.raises(users.UserError, match="区县"):
        users.add_user(settings, store, "b", "operator", "12345678", county="火星", by="t")
    with pytest.raises(users.UserError, match="密码"):
        users.add_user(settings, store, "c", "viewer", "short", by="t")
    with pytest.raises(StoreError):
        users.add_user(settings, store, "zhao", "viewer", "12345678", by="t")


def test_roles_and_county_scope_decisions():
    assert users.allowed("editor", "review") and not users.allowed("viewer", "review")
    assert users.allowed("operator", "deliver") and not users.allowed("editor", "deliver")
    assert users.allowed("admin", "users") and not users.allowed("editor", "users")
    assert not users.allowed("admin", "no-such-action")
    op = {"role": "operator", "county": "清丰县"}
    assert users.channel_in_scope(op, "清丰县") and not users.channel_in_scope(op, "范县")
    assert users.channel_in_scope({"role": "editor", "county": "清丰县"}, "范县")


def test_console_secret_is_made_once(env):
    _, store, _ = env
    first = store.console_secret("session")
    assert len(first) >= 32 and store.console_secret("session") == first


def _pack(store, title: str, text: str) -> int:
    item = Item(guid=title, title=title, text=text, content_hash=f"h-{title}")
    return store.insert_pack("t", item, at=now_iso(), status=PackStatus.NEW)


def test_fts_trigram_finds_chinese_and_follows_updates(env):
    check_sqlite_version()
    with pytest.raises(StoreError, match="3.34"):
        check_sqlite_version("3.31.1")
    _, store, _ = env
    flood = _pack(store, "汛期防溺水安全提示", "暴雨来临前, 远离河道。")
    fire = _pack(store, "冬季消防安全常识", "电暖器不要覆盖衣物。")
    assert store.find_packs(q="防溺水") == ([flood], 1)
    assert store.find_packs(q="安全")[1] == 2  # two characters: substring match
    assert store.find_packs(q="电暖器 覆盖")[0] == [fire]  # every word must match
    assert store.find_packs(q='"; DROP TABLE packs; --') == ([], 0)
    assert store.find_packs(q="100%")[1] == 0
    item = Item(guid="x", title="冬季防一氧化碳中毒", text="燃气热水器", content_hash="h2")
    store.update_pack_content(fire, "t", item, at=now_iso())
    assert store.find_packs(q="电暖器")[1] == 0
    assert store.find_packs(q="一氧化碳")[0] == [fire]
    assert store.find_packs(q="一氧化碳", status="approved")[1] == 0


def test_search_index_catches_up_off_the_write_path(env):
    _, store, _ = env

    def index_ok() -> None:  # FTS5 compares the index with the packs table it points at
        store.execute("INSERT INTO packs_fts (packs_fts, rank) VALUES ('integrity-check', 1)")

    first = _pack(store, "秋冬季节流感预防", "勤洗手, 接种疫苗。")
    assert store.catch_up_search() == 1 and store.catch_up_search() == 0
    index_ok()
    second = _pack(store, "冬季用电安全知识", "不要私拉乱接电线。")
    queued = store.query("SELECT pack_id FROM packs_fts_pending")
    assert queued == [{"pack_id": second}]  # storing did not index it
    # changed while queued, and changed once indexed: neither leaves a stale entry behind
    store.update_pack_content(
        second,
        "t",
        Item(guid="s", title="冬季取暖安全", text="燃气热水器通风。", content_hash="s2"),
        at=now_iso(),
    )
    store.update_pack_content(
        first,
        "t",
        Item(guid="f", title="春季花粉过敏", text="外出戴口罩。", content_hash="f2"),
        at=now_iso(),
    )
    assert store.find_packs(q="热水器") == ([second], 1)  # a search catches up first
    assert store.find_packs(q="花粉过敏") == ([first], 1)
    assert store.find_packs(q="私拉乱接")[1] == 0 and store.find_packs(q="流感预防")[1] == 0
    index_ok()
    store.conn.execute("PRAGMA foreign_keys=OFF")  # packs are never deleted; the trigger is
    store.execute("DELETE FROM packs WHERE id = ?", (first,))  # indexed, then removed
    third = _pack(store, "防范电信诈骗", "不点陌生链接。")
    store.execute("DELETE FROM packs WHERE id = ?", (third,))  # removed while still queued
    assert store.catch_up_search() == 0 and store.find_packs(q="花粉过敏")[1] == 0
    index_ok()


def test_users_cli(env):
    _, store, config = env
    store.close()
    add = run_cli(
        config,
        "users",
        "add",
        "admin",
        "--role",
        "admin",
        "--display-name",
        "管理员",
        "--password-stdin",
        stdin="s3cret-pass\n",
    )
    assert add.returncode == 0, add.stderr
    dup = run_cli(
        config,
        "users",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin="another-pass\n",
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = run_cli(config, "users", "add", "x", "--role", "editor", "--password-stdin", stdin="1\n")
    assert bad.returncode == 2 and "密码" in bad.stderr
    missing = run_cli(config, "users", "add", "y", "--role", "editor")
    assert missing.returncode == 2
    listed = json.loads(run_cli(config, "users", "list", "--json").stdout)
    assert [u["name"] for u in listed] == ["admin"] and "password_hash" not in listed[0]
    assert (
        run_cli(
            config, "users", "passwd", "admin", "--password-stdin", stdin="new-pass-123\n"
        ).returncode
        == 0
    )
    assert run_cli(config, "users", "disable", "admin").returncode == 0
    assert run_cli(config, "users", "disable", "ghost").returncode == 1
    listed = json.loads(run_cli(config, "users", "list", "--json").stdout)
    assert listed[0]["disabled"] is True and listed[0]["session_epoch"] == 3


def test_web_config_and_channel_titles(tmp_path):
    from media_matrix.config import ConfigError

    def settings_with(extra):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(extra, allow_unicode=True), encoding="utf-8")
        return load_settings(path)

    chan = {"name": "kx", "type": "webhook", "url": "http://127.0.0.1:9/", "secret": "s",
            "title": "濮阳科协融媒体"}  # fmt: skip
    s = settings_with({"channels": [chan], "web": {"session_lifetime": "2h"}})
    assert s.channel_title("kx") == "濮阳科协融媒体" and s.channel_title("other") == "other"
    assert s.web.session_lifetime == 7200 and s.web.secure_cookies is False
    with pytest.raises(ConfigError, match=r"web\.secret_key.*16"):
        settings_with({"web": {"secret_key": "short"}})
    with pytest.raises(ConfigError, match=r"web\.color: unknown key"):
        settings_with({"web": {"color": "red"}})


def test_cli_shows_channel_titles(tmp_path):
    import shutil

    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["channels"][0]["title"] = "濮阳科协微信公众号"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    for folder in ("content_packs", "channels"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    store = open_store(load_settings(config).database)
    pack = _pack(store, "标题测试", "正文")
    store.queue_delivery(pack, raw["channels"][0]["name"], scheduled_at=now_iso())
    store.close()
    status = run_cli(config, "status")
    assert status.returncode == 0 and "濮阳科协微信公众号" in status.stdout
    listed = run_cli(config, "deliveries")
    assert listed.returncode == 0 and "濮阳科协微信公众号" in listed.stdout
    as_json = json.loads(run_cli(config, "deliveries", "--json").stdout)
    assert as_json[0]["channel"] == raw["channels"][0]["name"]  # the slug stays the id
