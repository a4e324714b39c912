"""Ingest over a real SQLite file and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from feedserver import LOOPBACK_NETWORK

from media_matrix.config import load_settings
from media_matrix.ingest import next_fetch_delay, run_ingest
from media_matrix.store import open_store

BODY = "<p>科学施肥能够提高小麦产量，减少面源污染。</p>" * 5


def rss(items: list[tuple[str, str, str]], *, channel: str = "科普中国") -> bytes:
    """items: (guid, title, html body)."""
    entries = "".join(
        f"""<item><title>{title}</title><link>https://www.kepuchina.cn/a/{guid}</link>
        <guid isPermaLink="false">{guid}</guid><pubDate>Mon, 02 Nov 2026 08:00:00 +0800</pubDate>
        <category>农技</category><description><![CDATA[{body}]]></description></item>"""
        for guid, title, body in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{channel}</title><link>https://www.kepuchina.cn/</link>{entries}</channel></rss>"
    ).encode()


def make_config(tmp_path: Path, feeds: list[dict], **extra: object) -> Path:
    # the loopback FeedServer is a private address: allow-listed like a deployment's intranet
    data = {"database": "var/test.db", "feeds": feeds, "network": LOOPBACK_NETWORK}
    data.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def ingest(config: Path, **kwargs):
    settings = load_settings(config)
    store = open_store(settings.database)
    try:
        return run_ingest(settings, store, **kwargs), store
    except Exception:
        store.close()
        raise


def test_conditional_get_second_poll_stores_nothing(tmp_path, feed_server):
    feed_server.add(
        "/feed.xml",
        body=rss([("a1", "小麦测土配方施肥", BODY), ("a2", "冬季大棚管理", BODY + "大棚")]),
        etag='"v1"',
        last_modified="Mon, 02 Nov 2026 00:00:00 GMT",
        headers={"Content-Type": "application/rss+xml; charset=utf-8"},
    )
    config = make_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/feed.xml")}]
    )
    first, store = ingest(config)
    assert first.feeds[0].new == 2
    store.close()
    second, store = ingest(config)
    assert second.feeds[0].not_modified
    assert (second.feeds[0].new, second.feeds[0].updated) == (0, 0)
    assert len(store.list_packs()) == 2
    last = feed_server.hits("/feed.xml")[-1]
    assert last.headers["if-none-match"] == '"v1"'
    assert last.headers["if-modified-since"] == "Mon, 02 Nov 2026 00:00:00 GMT"
    assert last.headers["user-agent"].startswith("media-matrix/")
    store.close()


def test_redirect_and_gzip(tmp_path, feed_server):
    feed_server.add("/old.xml", status=301, redirect_to=feed_server.url("/new.xml"))
    feed_server.add("/new.xml", body=rss([("g1", "心脑血管疾病预防", BODY)]), gzip=True)
    config = make_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/old.xml")}]
    )
    report, store = ingest(config)
    assert report.feeds[0].error is None
    assert report.feeds[0].new == 1
    assert "gzip" in feed_server.hits("/new.xml")[0].headers["accept-encoding"]
    store.close()


def test_timeout_and_oversize_fail_only_their_feed(tmp_path, feed_server):
    feed_server.add("/slow.xml", body=rss([("s1", "慢", BODY)]), delay=2.0)
    feed_server.add("/big.xml", body=b"<rss>" + b"x" * 300_000 + b"</rss>")
    feed_server.add("/ok.xml", body=rss([("o1", "老年人防跌倒", BODY)]))
    config = make_config(
        tmp_path,
        [
            {"name": "slow", "kind": "rss", "url": feed_server.url("/slow.xml")},
            {"name": "big", "kind": "rss", "url": feed_server.url("/big.xml")},
            {"name": "ok", "kind": "rss", "url": feed_server.url("/ok.xml")},
        ],
        ingest={"read_timeout": 0.5, "max_bytes": 100_000},
    )
    report, store = ingest(config)
    by_name = {f.feed: f for f in report.feeds}
    assert "timed out" in by_name["slow"].error
    assert "cap" in by_name["big"].error
    assert by_name["ok"].new == 1 and by_name["ok"].error is None
    state = store.get_feed_state("big")
    assert state["failures"] == 1 and "cap" in state["last_error"]
    store.close()


def test_failing_feed_backs_off_and_recovers(tmp_path, feed_server):
    feed_server.add("/down.xml", status=503, headers={"Retry-After": "7200"})
    feed_server.add("/ok.xml", body=rss([("o1", "安全生产月", BODY)]))
    config = make_config(
        tmp_path,
        [
            {"name": "down", "kind": "rss", "url": feed_server.url("/down.xml"), "every": "10m"},
            {"name": "ok", "kind": "rss", "url": feed_server.url("/ok.xml")},
        ],
    )
    report, store = ingest(config)
    assert "HTTP 503" in report.feeds[0].error and report.feeds[1].new == 1
    state = store.get_feed_state("down")
    assert state["failures"] == 1
    # Retry-After of two hours wins over the 10-minute interval.
    assert state["next_fetch_at"] > state["last_fetch_at"]
    store.close()
    again, store = ingest(config, due_only=True)
    assert again.feeds[0].skipped  # still backing off
    store.close()
    feed_server.add("/down.xml", body=rss([("d1", "恢复", BODY)]))
    recovered, store = ingest(config)
    assert recovered.feeds[0].new == 1
    assert store.get_feed_state("down")["failures"] == 0
    store.close()


def test_backoff_is_exponential_and_capped():
    assert next_fetch_delay(600, 0) == 600
    assert next_fetch_delay(600, 1) == 600
    assert next_fetch_delay(600, 3) == 2400
    assert next_fetch_delay(600, 30, cap=86400) == 86400
    assert next_fetch_delay(600, 1, retry_after=3600) == 3600


def test_malformed_feed_error_is_stored(tmp_path, feed_server):
    feed_server.add("/html", body=b"<html><body>not a feed</body></html>")
    config = make_config(
        tmp_path, [{"name": "bad", "kind": "rss", "url": feed_server.url("/html")}]
    )
    report, store = ingest(config)
    assert report.feeds[0].error.startswith("not a valid feed")
    assert store.get_feed_state("bad")["last_error"].startswith("not a valid feed")
    store.close()


def test_dedupe_across_two_feeds_makes_one_pack_with_two_sources(tmp_path, feed_server):
    shared_body = (
        "<p>寒潮来袭，老人要注意防寒保暖，预防心脑血管疾病。外出戴帽子围巾，室内保持适宜温度。</p>"
    )
    feed_server.add("/a.xml", body=rss([("kc-1", "寒潮防护指南", shared_body)]))
    feed_server.add(
        "/b.xml",
        body=rss(
            [("zy-9", "寒潮防护指南", "<div>  " + shared_body + "\n</div>")], channel="科普中原"
        ),
    )
    config = make_config(
        tmp_path,
        [
            {"name": "kepu-china", "kind": "rss", "url": feed_server.url("/a.xml")},
            {"name": "kepu-zhongyuan", "kind": "rss", "url": feed_server.url("/b.xml")},
        ],
    )
    report, store = ingest(config)
    assert [f.new for f in report.feeds] == [1, 0]
    assert report.feeds[1].merged == 1
    packs = store.list_packs()
    assert len(packs) == 1 and packs[0].feeds == ["kepu-china", "kepu-zhongyuan"]
    store.close()


def test_changed_item_updates_pack_and_records_change(tmp_path, feed_server):
    feed_server.add("/f.xml", body=rss([("u1", "节水小常识", "<p>一水多用。</p>")]))
    config = make_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/f.xml")}]
    )
    _, store = ingest(config)
    pack = store.list_packs()[0]
    store.close()
    feed_server.add(
        "/f.xml", body=rss([("u1", "节水小常识（修订）", "<p>一水多用，随手关水。</p>")])
    )
    report, store = ingest(config)
    assert report.feeds[0].updated == 1 and report.feeds[0].new == 0
    updated = store.get_pack(pack.id)
    assert updated.title == "节水小常识（修订）" and "随手关水" in updated.text
    changes = store.query("SELECT fields FROM pack_changes WHERE pack_id = ?", (pack.id,))
    assert "title" in json.loads(changes[0]["fields"])
    store.close()
    unchanged, store = ingest(config)
    assert unchanged.feeds[0].unchanged == 1
    store.close()


GBK_LIST = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk">
<title>科普中原</title></head><body><div class="nav">首页 | 科普动态</div>
<ul class="news">
<li><a href="articles/1.html">豫北小麦冬季田间管理要点</a>
<span class="date">2026-11-05</span></li>
<li><a href="/articles/2.html">农村老人谨防保健品骗局</a>
<span class="date">2026年11月6日</span></li></ul>
</body></html>"""
GBK_ARTICLE = """<html><head><meta charset="gbk"></head><body><div class="nav">导航</div>
<h1 class="title">{title}</h1><div class="article"><p>{text}</p><img src="img/x.png">
<script>alert(1)</script></div><div class="footer">版权所有</div></body></html>"""


def test_gbk_html_source_with_selectors(tmp_path, feed_server):
    feed_server.add("/kp/index.html", body=GBK_LIST.encode("gbk"))
    for n, (title, text) in enumerate(
        [
            ("豫北小麦冬季田间管理要点", "镇压保墒，防冻防旱。"),
            ("农村老人谨防保健品骗局", "不轻信、不转账。"),
        ],
        start=1,
    ):
        path = f"/kp/articles/{n}.html" if n == 1 else f"/articles/{n}.html"
        feed_server.add(path, body=GBK_ARTICLE.format(title=title, text=text).encode("gbk"))
    selectors = {"item": "ul.news li", "link": "a", "date": "span.date", "body": "div.article"}
    config = make_config(
        tmp_path,
        [
            {
                "name": "zy",
                "kind": "html",
                "url": feed_server.url("/kp/index.html"),
                "selectors": selectors,
            }
        ],
    )
    report, store = ingest(config)
    assert report.feeds[0].error is None and report.feeds[0].new == 2
    packs = {p.title: p for p in store.list_packs(full=True)}
    wheat = packs["豫北小麦冬季田间管理要点"]
    assert "镇压保墒" in wheat.text and "版权所有" not in wheat.text and "导航" not in wheat.text
    assert "<script" not in wheat.content_html
    assert wheat.images == [feed_server.url("/kp/articles/img/x.png")]
    assert wheat.published_at == "2026-11-04T16:00:00.000000+00:00"  # local midnight in Shanghai
    assert packs["农村老人谨防保健品骗局"].url == feed_server.url("/articles/2.html")
    store.close()
    # Second poll: list page unchanged content, known articles are not fetched again.
    before = len(feed_server.hits("/kp/articles/1.html"))
    again, store = ingest(config)
    assert again.feeds[0].new == 0 and again.feeds[0].unchanged == 2
    assert len(feed_server.hits("/kp/articles/1.html")) == before
    store.close()


def write_pack(
    folder: Path, manifest: dict, body: str = "# 标题\n\n正文内容，讲解防火知识。"
) -> None:
    folder.mkdir(parents=True)
    (folder / "pack.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), "utf-8")
    (folder / "body.md").write_text(body, "utf-8")


def test_local_packs_good_bad_and_zip(tmp_path):
    inbox = tmp_path / "inbox"
    write_pack(
        inbox / "good",
        {
            "title": "冬季消防安全提示",
            "summary": "用火用电要当心",
            "source": "清丰县消防救援大队",
            "published": "2026-11-20T09:00:00+08:00",
            "groups": ["seniors"],
            "topics": ["fire"],
            "body": "body.md",
            "county": "清丰县",
        },
    )
    write_pack(inbox / "local-time", {"title": "本地时间", "published": "2026-11-20 09:00:00"})
    write_pack(inbox / "bad", {"summary": "缺少标题"})
    write_pack(inbox / "badgroup", {"title": "人群写错", "groups": ["aliens"]})
    with zipfile.ZipFile(inbox / "zipped.zip", "w") as zf:
        zf.writestr("p/pack.yaml", "title: 压缩包里的资源包\nsummary: 来自压缩包\n")
        zf.writestr("p/body.html", '<p>农业技术推广<img src="a.png"></p>')
        zf.writestr("p/a.png", b"\x89PNG\r\n\x1a\n")
    with zipfile.ZipFile(inbox / "evil.zip", "w") as zf:
        zf.writestr("../escape/pack.yaml", "title: x\n")
    config = make_config(tmp_path, [{"name": "inbox", "kind": "packdir", "url": "inbox"}])
    report, store = ingest(config)
    feed = report.feeds[0]
    assert feed.new == 3
    errors = dict(feed.item_errors)
    assert "title: required key is missing" in errors["bad"]
    assert "aliens" in errors["badgroup"]
    assert "outside the pack" in errors["evil.zip"]
    # nothing is deleted or moved
    assert (inbox / "bad" / "pack.yaml").exists() and (inbox / "evil.zip").exists()
    assert not (tmp_path / "escape").exists()
    packs = {p.title: p for p in store.list_packs(full=True)}
    good = packs["冬季消防安全提示"]
    assert good.county == "清丰县" and good.source == "清丰县消防救援大队"
    assert good.published_at == "2026-11-20T01:00:00.000000+00:00"
    # a time without offset is the config's local time (Asia/Shanghai), not UTC
    assert packs["本地时间"].published_at == "2026-11-20T01:00:00.000000+00:00"
    zipped = packs["压缩包里的资源包"]
    assert zipped.images and Path(zipped.images[0].removeprefix("file://")).is_file()
    assert {e["subject"] for e in store.item_errors()} == {"bad", "badgroup", "evil.zip"}
    store.close()
    # fixing the bad pack clears its error on the next ingest
    write_pack(inbox / "bad2", {"title": "补上标题"})
    (inbox / "bad" / "pack.yaml").write_text("title: 已修复\n", "utf-8")
    _, store = ingest(config)
    assert "bad" not in {e["subject"] for e in store.item_errors()}
    store.close()


def test_hostile_html_is_sanitized(tmp_path, feed_server):
    hostile = (
        '<p onclick="steal()">正文<a href="javascript:alert(1)">点我</a>'
        '<a href="/rel/page">相对链接</a><img src="data:image/png;base64,AAAA">'
        '<img src="pic.png" onerror="x()"><script>alert(1)</script><iframe src="https://x"></iframe>'
        "<style>p{color:red}</style></p>"
    )
    feed_server.add(
        "/f/feed.xml", body=rss([("h1", "<b>标题</b>&lt;script&gt;x&lt;/script&gt;", hostile)])
    )
    config = make_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/f/feed.xml")}]
    )
    _, store = ingest(config)
    pack = store.list_packs(full=True)[0]
    html = pack.content_html
    for bad in ("<script", "onclick", "onerror", "javascript:", "data:", "<iframe", "<style"):
        assert bad not in html and bad not in pack.title
    assert f'href="{feed_server.url("/rel/page")}"' in html
    assert pack.images == [feed_server.url("/f/pic.png")]
    store.close()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_invalid_config_exits_2_naming_the_key(tmp_path):
    config = make_config(tmp_path, [{"name": "kp", "kind": "rss", "url": "x.xml", "every": "soon"}])
    result = run_cli("--config", str(config), "ingest")
    assert result.returncode == 2
    assert "feeds[0] (kp).every" in result.stderr and "duration" in result.stderr
    assert not (tmp_path / "var").exists()  # the database was never touched
    bad_kind = make_config(tmp_path, [{"name": "kp", "kind": "atom", "url": "x.xml"}])
    result = run_cli("--config", str(bad_kind), "feeds", "list")
    assert result.returncode == 2 and "feeds[0] (kp).kind" in result.stderr
    result = run_cli("--config", str(tmp_path / "missing.yaml"), "feeds", "list")
    assert result.returncode == 2 and "not found" in result.stderr


def test_env_secret_expansion_and_missing_variable(tmp_path, monkeypatch):
    config = make_config(tmp_path, [{"name": "kp", "kind": "rss", "url": "${FEED_HOST}/f.xml"}])
    monkeypatch.setenv("FEED_HOST", "http://127.0.0.1:9")
    assert load_settings(config).feeds[0].url == "http://127.0.0.1:9/f.xml"
    monkeypatch.delenv("FEED_HOST")
    with pytest.raises(Exception, match=r"feeds\[0\].url: environment variable FEED_HOST"):
        load_settings(config)


def test_cli_lists_json(tmp_path, feed_server):
    feed_server.add("/feed.xml", body=rss([("j1", "青少年近视防控", BODY)]))
    config = make_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/feed.xml")}]
    )
    assert run_cli("--config", str(config), "ingest").returncode == 0
    packs = json.loads(run_cli("--config", str(config), "packs", "list", "--json").stdout)
    assert packs[0]["title"] == "青少年近视防控"
    for key in (
        "id",
        "title",
        "url",
        "summary",
        "status",
        "feeds",
        "published_at",
        "fetched_at",
        "content_hash",
    ):
        assert key in packs[0]
    assert "content_html" not in packs[0]
    full = json.loads(run_cli("--config", str(config), "packs", "list", "--full", "--json").stdout)
    assert "科学施肥" in full[0]["text"]
    shown = json.loads(
        run_cli("--config", str(config), "packs", "show", str(packs[0]["id"]), "--json").stdout
    )
    assert shown["feeds"] == ["kp"]
    feeds = json.loads(run_cli("--config", str(config), "feeds", "list", "--json").stdout)
    assert feeds[0]["name"] == "kp" and feeds[0]["failures"] == 0
    missing = run_cli("--config", str(config), "packs", "show", "999")
    assert missing.returncode == 1 and "999" in missing.stderr


def test_an_error_while_storing_one_feed_does_not_stop_the_others(tmp_path, feed_server):
    feed_server.add("/a.xml", body=rss([("a1", "会出错的条目", BODY)]))
    feed_server.add("/b.xml", body=rss([("b1", "正常条目", BODY + "正常")]))
    config = make_config(
        tmp_path,
        [
            {"name": "a", "kind": "rss", "url": feed_server.url("/a.xml")},
            {"name": "b", "kind": "rss", "url": feed_server.url("/b.xml")},
        ],
    )

    def tagger(item):
        if item.title == "会出错的条目":
            raise RuntimeError("rule engine broke")
        return []

    report, store = ingest(config, tagger=tagger)
    by_name = {f.feed: f for f in report.feeds}
    assert "rule engine broke" in by_name["a"].error
    assert by_name["b"].new == 1 and by_name["b"].error is None
    assert [p.title for p in store.list_packs()] == ["正常条目"]  # a's write was rolled back
    assert "rule engine broke" in store.get_feed_state("a")["last_error"]
    store.close()


def test_unusable_database_path_is_a_clear_runtime_error(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    config = make_config(tmp_path, [], database="blocker/sub/test.db")
    result = run_cli("--config", str(config), "feeds", "list")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "blocker" in result.stderr


def test_html_article_shown_differently_on_the_list_is_re_read(tmp_path, feed_server):
    listing = (
        '<html><head><meta charset="utf-8"></head><body><ul class="news">'
        '<li><a href="/a/1.html">{title}</a><span class="date">{date}</span></li>'
        "</ul></body></html>"
    )
    article = (
        '<html><head><meta charset="utf-8"></head><body><div class="article">'
        "<p>{text}</p></div></body></html>"
    )
    feed_server.add("/list", body=listing.format(title="秸秆禁烧", date="2026-11-01").encode())
    feed_server.add("/a/1.html", body=article.format(text="秋收后严禁焚烧秸秆。").encode())
    selectors = {"item": "ul.news li", "link": "a", "date": "span.date", "body": "div.article"}
    config = make_config(
        tmp_path,
        [{"name": "zy", "kind": "html", "url": feed_server.url("/list"), "selectors": selectors}],
    )
    first, store = ingest(config)
    assert first.feeds[0].new == 1
    store.close()
    # the list page now shows the entry with a new title and date; the article changed too
    feed_server.add(
        "/list", body=listing.format(title="秸秆禁烧（更新）", date="2026-11-03").encode()
    )
    feed_server.add(
        "/a/1.html", body=article.format(text="秋收后严禁焚烧秸秆，违者处罚。").encode()
    )
    hits = len(feed_server.hits("/a/1.html"))
    second, store = ingest(config)
    assert second.feeds[0].updated == 1
    assert len(feed_server.hits("/a/1.html")) == hits + 1
    pack = store.list_packs(full=True)[0]
    assert pack.title == "秸秆禁烧（更新）" and "违者处罚" in pack.text
    store.close()
    # shown the same way again: not re-read
    third, store = ingest(config)
    assert third.feeds[0].unchanged == 1 and len(feed_server.hits("/a/1.html")) == hits + 1
    store.close()


def _list_page(entries: list[int], next_href: str | None) -> bytes:
    items = "".join(f'<li><a href="/a/{n}.html">第{n}篇 科普</a></li>' for n in entries)
    nav = f'<div class="pager"><a href="{next_href}">下一页</a></div>' if next_href else ""
    return f'<html><body><ul class="news">{items}</ul>{nav}</body></html>'.encode()


def test_html_list_pages_follow_next_page_on_the_same_site_with_a_cap(tmp_path, feed_server):
    """Older entries come from the next pages: same site only, at most max_pages pages, never a
    page twice, and a re-poll stops at the first page with nothing new."""
    feed_server.add("/list/1.html", body=_list_page([1, 2], "/list/2.html"))
    feed_server.add("/list/2.html", body=_list_page([3, 4], "2.html#again"))  # itself: a loop
    feed_server.add("/loop/1.html", body=_list_page([7], "/loop/2.html"))
    feed_server.add("/loop/2.html", body=_list_page([8], "/loop/1.html"))
    feed_server.add("/far/1.html", body=_list_page([9], "http://localhost:1/list/3.html"))
    feed_server.add("/deep/1.html", body=_list_page([10], "/deep/2.html"))
    feed_server.add("/deep/2.html", body=_list_page([11], "/deep/3.html"))
    feed_server.add("/deep/3.html", body=_list_page([12], None))
    for n in range(1, 13):
        body = f"<html><body><div class='article'><p>第{n}篇正文 节水</p></div></body></html>"
        feed_server.add(f"/a/{n}.html", body=body.encode())
    selectors = {"item": "ul.news li", "body": "div.article", "next_page": "div.pager a"}

    def feed(name: str, path: str, **extra: object) -> dict:
        return {
            "name": name,
            "kind": "html",
            "url": feed_server.url(path),
            "selectors": {**selectors, **extra},
        }

    config = make_config(
        tmp_path,
        [
            feed("paged", "/list/1.html"),
            feed("loop", "/loop/1.html"),
            feed("far", "/far/1.html"),
            feed("deep", "/deep/1.html", max_pages=2),
        ],
    )
    report, store = ingest(config)
    new = {f.feed: f.new for f in report.feeds}
    assert new == {"paged": 4, "loop": 2, "far": 1, "deep": 2}, report.feeds
    assert len(feed_server.hits("/list/2.html")) == 1  # "2.html#again" is the same page
    assert len(feed_server.hits("/loop/1.html")) == 1  # the loop back is not followed
    assert feed_server.hits("/deep/3.html") == []  # beyond max_pages
    titles = {p.title for p in store.list_packs()}
    assert {"第3篇 科普", "第4篇 科普", "第11篇 科普"} <= titles
    store.close()
    # unchanged list: its first page holds nothing new, so the older pages are not fetched
    again, store = ingest(config, feeds=["paged"])
    assert again.feeds[0].new == 0
    assert len(feed_server.hits("/list/2.html")) == 1
    store.close()
