"""Tracked links and the public face: links per delivery and per officer, redirect targets, hits
(bots and HEAD not counted, one visitor a day), no address stored, uniform 404, throttling,
officer pages, and no hit lost on SIGTERM. The server is the real CLI (`media-matrix public`,
waitress) on loopback; deliveries go through the real dispatcher against the sandbox."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from media_matrix.config import Settings, load_settings
from media_matrix.dispatch import dispatch_due, sweep
from media_matrix.links import (
    PublicCopy,
    TokenBuckets,
    best_public_url,
    classify_agent,
    new_code,
    visitor_key,
)
from media_matrix.store import Store, open_store
from media_matrix.tracking import officer_week, week_bounds

sys.path.insert(0, str(Path(__file__).parent))
from test_dispatch import (  # noqa: E402
    SECRET,
    add_packs,
    queue,
    sandbox,  # noqa: F401 - a fixture used by name
    webhook,
    wechat,
    wecom,
)

REPO = Path(__file__).resolve().parents[1]
BROWSER = (
    "Mozilla/5.0 (Linux; Android 13; V2227A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/116.0 Mobile Safari/537.36 MMTestAgent/7.7"
)
WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)


def write_config(folder: Path, channels: list[dict[str, Any]], **public: Any) -> Settings:
    data = {
        "database": str(folder / "db.sqlite"),
        "templates": str(REPO / "channels"),
        "dispatch": {"lease_seconds": 5, "backoff_base": 0.05, "backoff_cap": 0.5},
        "channels": channels,
        "public": {
            "base_url": "https://kp.example.cn",
            "flush_every": 0.05,
            "cache_seconds": 0,  # each request reads the store (targets change mid-test)
            **public,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_settings(path)


class Server:
    """`media-matrix public --port 0` as a subprocess; its URL read from stderr."""

    def __init__(self, settings: Settings, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "media_matrix",
                "--config",
                str(settings.path),
                "public",
                "--port",
                "0",
                *extra,
            ],
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        self.url = match.group(1)

    def get(self, path: str, ua: str | None = BROWSER, method: str = "GET") -> requests.Response:
        headers = {"User-Agent": ua} if ua is not None else {}
        return requests.request(
            method, self.url + path, headers=headers, allow_redirects=False, timeout=10
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@pytest.fixture
def make_server() -> Iterator[Any]:
    servers: list[Server] = []

    def start(settings: Settings, *extra: str) -> Server:
        server = Server(settings, *extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.stop()


def wait_for_hits(store: Store, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = store.query("SELECT * FROM hits ORDER BY id")
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


# -- pure decisions -----------------------------------------------------------------------------


def test_codes_are_short_unguessable_and_distinct():
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", c) for c in codes)


def test_agent_classes():
    assert classify_agent(WECHAT) == "wechat"
    assert classify_agent(BROWSER) == "mobile"
    assert classify_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0") == "desktop"
    for bot in (
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "facebookexternalhit/1.1",
        "TelegramBot (like TwitterBot)",
        "curl/8.5.0",
        "python-requests/2.31",
        "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0",
        "",
        None,
    ):
        assert classify_agent(bot) == "bot", bot
    assert classify_agent(WECHAT, "HEAD") == "bot"


def test_visitor_key_depends_on_the_salt_address_and_agent():
    a = visitor_key(b"s" * 32, "203.0.113.9", BROWSER)
    assert a == visitor_key(b"s" * 32, "203.0.113.9", BROWSER)
    assert a != visitor_key(b"t" * 32, "203.0.113.9", BROWSER)
    assert a != visitor_key(b"s" * 32, "203.0.113.8", BROWSER)
    assert a != visitor_key(b"s" * 32, "203.0.113.9", WECHAT)
    assert "203.0.113.9" not in a


def test_best_public_url_prefers_the_wechat_article_then_the_media_centre():
    source = "https://www.kepuchina.cn/a/1"
    cms = PublicCopy("webhook", "https://cms.example.cn/m/1", "2026-01-01T01:00:00+00:00")
    wx = PublicCopy("wechat_mp", "https://mp.weixin.qq.com/s/abc", "2026-01-02T01:00:00+00:00")
    screen = PublicCopy("outbox", "file:///var/outbox/x", "2026-01-01T00:00:00+00:00")
    assert best_public_url([], source) == source
    assert best_public_url([screen], source) == source
    assert best_public_url([screen, cms], source) == cms.url
    assert best_public_url([cms, wx, screen], source) == wx.url
    assert best_public_url([], "javascript:alert(1)") is None


def test_a_day_salt_is_forgotten_when_the_next_day_begins(tmp_path):
    store = open_store(tmp_path / "db.sqlite")
    first = store.day_salt("2026-01-01", lambda: b"a" * 32)
    assert store.day_salt("2026-01-01", lambda: b"x" * 32) == first  # kept for its day
    assert store.day_salt("2026-01-02", lambda: b"b" * 32) == b"b" * 32
    assert store.query("SELECT day FROM link_salts") == [{"day": "2026-01-02"}]
    store.close()


def test_token_bucket_spends_and_refills():
    now = [0.0]
    buckets = TokenBuckets(burst=3, rate=1.0, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(4)] == [True, True, True, False]
    assert not buckets.allowed("k") and buckets.allowed("other")
    now[0] = 1.0
    assert buckets.allowed("k") and buckets.take("k") and not buckets.take("k")


# -- links per delivery and redirect targets -----------------------------------------------------


def test_each_delivery_gets_one_tracked_link_used_by_every_channel_and_the_redirect_follows_the_best_copy(  # noqa: E501
    tmp_path,
    sandbox,  # noqa: F811
    make_server,
):
    settings = write_config(
        tmp_path,
        [
            webhook("cms", sandbox.mediacentre.url()),
            wecom("robot", sandbox.wecom.url("/cgi-bin/webhook/send?key=k1")),
            wechat("wx", sandbox.wechat.base_url),
        ],
    )
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (source,) = store.list_packs(ids=[pack])
    cms_id, robot_id = queue(store, [pack], "cms") + queue(store, [pack], "robot")
    server = make_server(settings)

    report = dispatch_due(settings, store)
    assert report.delivered == 2
    links = {row["delivery_id"]: row["code"] for row in store.query("SELECT * FROM links")}
    assert set(links) == {cms_id, robot_id} and len(set(links.values())) == 2
    cms_url = f"https://kp.example.cn/s/{links[cms_id]}"
    robot_url = f"https://kp.example.cn/s/{links[robot_id]}"
    (manuscript,) = sandbox.mediacentre.manuscripts.values()
    assert manuscript["body"]["track_url"] == cms_url
    (post,) = sandbox.wecom.messages
    assert post["payload"]["news"]["articles"][0]["url"] == robot_url

    cms_delivery = store.list_deliveries(ids=[cms_id])[0]
    answer = server.get(f"/s/{links[robot_id]}")
    assert answer.status_code == 302 and answer.headers["Location"] == cms_delivery["url"]

    # the WeChat article, once published, is preferred
    (wx_id,) = queue(store, [pack], "wx")
    dispatch_due(settings, store)
    sweep(settings, store, wait=10)
    wx_delivery = store.list_deliveries(ids=[wx_id])[0]
    assert wx_delivery["status"] == "delivered" and wx_delivery["url"].startswith("http")
    assert wx_delivery["url"] != source.url
    for code in links.values():
        assert server.get(f"/s/{code}").headers["Location"] == wx_delivery["url"]
    wx_code = store.links_of(delivery_id=wx_id)[0]["code"]
    # the article's own 阅读原文 does not lead back to the article: the next best copy
    assert server.get(f"/s/{wx_code}").headers["Location"] == cms_delivery["url"]
    assert sandbox.wechat.all_drafts[0]["articles"][0]["content_source_url"] == (
        f"https://kp.example.cn/s/{wx_code}"
    )

    # a retry renders with the same link: one link per delivery, ever
    store.delivery_link(cms_id, lambda: pytest.fail("a second code was made"))
    assert len(store.query("SELECT * FROM links")) == 3
    store.close()


def test_a_pack_with_no_public_copy_redirects_to_its_source(tmp_path, make_server):
    settings = write_config(tmp_path, [webhook("cms", "http://127.0.0.1:9/none")])
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "cms")
    code = store.delivery_link(delivery, new_code)
    server = make_server(settings)
    answer = server.get(f"/s/{code}")
    assert answer.status_code == 302
    assert answer.headers["Location"] == store.list_packs(ids=[pack])[0].url
    assert answer.headers["Cache-Control"] == "no-store"
    store.close()


# -- hits ---------------------------------------------------------------------------------------


def test_bots_and_head_are_logged_not_counted_and_a_visitor_counts_once_a_day(
    tmp_path, make_server
):
    settings = write_config(  # resolved links cached: every hit is still recorded
        tmp_path, [webhook("cms", "http://127.0.0.1:9/none")], cache_seconds=60
    )
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "cms")
    code = store.delivery_link(delivery, new_code)
    server = make_server(settings)
    for ua, method in (
        (BROWSER, "GET"),
        (BROWSER, "GET"),  # same visitor, same day
        (WECHAT, "GET"),  # another agent from the same address: another visitor
        (BROWSER, "HEAD"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "GET"),
        ("WhatsApp/2.23.20 A", "GET"),
        (None, "GET"),
    ):
        assert server.get(f"/s/{code}", ua=ua, method=method).status_code == 302
    hits = wait_for_hits(store, 7)
    assert [(h["ua_class"], h["counted"]) for h in hits] == [
        ("mobile", 1),
        ("mobile", 1),
        ("wechat", 1),
        ("bot", 0),
        ("bot", 0),
        ("bot", 0),
        ("bot", 0),
    ]
    (figures,) = store.link_figures()
    assert (figures["clicks"], figures["visitors"], figures["bots"]) == (3, 2, 4)
    assert hits[0]["visitor"] == hits[1]["visitor"] != hits[2]["visitor"]
    store.close()


def test_no_address_or_agent_is_stored_anywhere(tmp_path, make_server):
    settings = write_config(tmp_path, [webhook("cms", "https://cms.example.cn/api")])
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "cms")
    code = store.delivery_link(delivery, new_code)
    store.close()
    server = make_server(settings)
    for _ in range(3):
        assert server.get(f"/s/{code}").status_code == 302
    assert server.get(f"/s/{code}", ua=WECHAT).status_code == 302
    assert server.get("/s/AAAAAAAAAAAA").status_code == 404
    assert server.stop() == 0
    files = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite")]
    data = b"".join(p.read_bytes() for p in files)
    store = open_store(settings.database)
    assert len(store.query("SELECT * FROM hits")) == 4  # the hits are there ...
    store.close()
    for needle in ("127.0.0.1", "MMTestAgent", "MicroMessenger", "127.0.0.1\n" + BROWSER):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert needle.encode(encoding) not in data, needle  # ... and no address, no agent
    assert b"\x7f\x00\x00\x01" not in data  # nor the address as packed bytes


# -- unknown codes and throttling ---------------------------------------------------------------


def _shape(answer: requests.Response) -> tuple[Any, ...]:
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "date"}
    return answer.status_code, answer.content, tuple(sorted(headers.items()))


def test_unknown_codes_answer_the_same_404_whether_or_not_they_existed(tmp_path, make_server):
    settings = write_config(tmp_path, [webhook("cms", "https://cms.example.cn/api")])
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    store.import_officers(
        [{"name": "王芳", "county": "清丰县", "township": "韩村镇", "groups": ["farmers"]}],
        new_token=lambda: "T" * 24,
    )
    (officer,) = store.list_officers()
    (code,) = store.officer_links(officer["id"], [pack], new_code).values()
    server = make_server(settings)
    assert server.get(f"/s/{code}").status_code == 302
    assert server.get("/o/" + "T" * 24).status_code == 200
    store.disable_officer(officer["id"])
    shapes = {
        _shape(server.get(path))
        for path in (
            f"/s/{code}",  # existed: its officer is disabled
            "/s/" + "A" * 12,  # never existed
            "/s/short",  # malformed
            "/s/" + "A" * 12 + "/x",
            "/o/" + "T" * 24,  # the disabled officer's page
            "/o/" + "U" * 24,
            "/admin",
            "/",
        )
    }
    assert len(shapes) == 1
    (status, body, _headers) = shapes.pop()
    assert status == 404 and "链接不存在".encode() in body
    assert server.get("/healthz").text == "ok\n"
    assert server.get(f"/s/{code}", method="POST").status_code == 405
    store.close()


def test_a_client_hammering_random_codes_is_throttled(tmp_path, make_server):
    settings = write_config(
        tmp_path, [webhook("cms", "https://cms.example.cn/api")], miss_burst=5, miss_rate=0.01
    )
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "cms")
    code = store.delivery_link(delivery, new_code)
    server = make_server(settings)
    statuses = [server.get(f"/s/{new_code()}").status_code for _ in range(8)]
    assert statuses == [404] * 5 + [429] * 3
    assert server.get(f"/s/{code}").status_code == 429  # the client waits, whatever it asks
    changed_agent = server.get(f"/s/{new_code()}", ua="Mozilla/5.0 (other) Chrome/1.0")
    assert changed_agent.status_code == 429  # a new user agent does not reset the bucket
    store.close()


# -- officers -----------------------------------------------------------------------------------


def test_officer_gets_personal_links_per_pack_and_a_page(tmp_path, make_server):
    settings = write_config(tmp_path, [webhook("cms", "https://cms.example.cn/api")])
    store = open_store(settings.database)
    packs = add_packs(store, 3)
    from media_matrix.timeutil import now_iso

    store.execute("UPDATE packs SET fetched_at = ?", (now_iso(),))
    store.import_officers(
        [
            {"name": "王芳", "county": "清丰县", "township": "韩村镇", "groups": ["farmers"]},
            {"name": "李强", "county": "范县", "township": "濮城镇", "groups": ["seniors"]},
        ],
        new_token=lambda: new_code() * 2,
    )
    wang, li = sorted(store.list_officers(), key=lambda o: o["id"])
    since, until = week_bounds(settings, None)
    entries = officer_week(settings, store, wang, since, until)
    assert sorted(e.pack.id for e in entries) == sorted(packs)  # untagged packs fit everyone
    again = officer_week(settings, store, wang, since, until)
    assert [e.link for e in again] == [e.link for e in entries]  # one link per officer x pack
    other = officer_week(settings, store, li, since, until)
    assert not {e.link for e in other} & {e.link for e in entries}
    rows = store.query("SELECT officer_id, pack_id FROM links ORDER BY id")
    assert len(rows) == 6 and {r["officer_id"] for r in rows} == {wang["id"], li["id"]}
    server = make_server(settings)
    page = server.get(f"/o/{wang['token']}")
    assert page.status_code == 200 and "王芳" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for entry in entries:
        assert entry.link in page.text and entry.pack.title in page.text
        code = entry.link.rsplit("/", 1)[1]
        assert server.get(f"/s/{code}").status_code == 302
    wait_for_hits(store, 3)
    ranking = store.officer_ranking(None, None)
    assert ranking[0]["name"] == "王芳" and ranking[0]["measured_clicks"] == 3
    assert ranking[0]["unique_visitors"] == 3  # one visitor on three links
    store.close()


# -- shutdown -----------------------------------------------------------------------------------


def test_no_hit_is_lost_on_sigterm(tmp_path, make_server):
    settings = write_config(
        tmp_path, [webhook("cms", "https://cms.example.cn/api")], flush_every=30
    )
    store = open_store(settings.database)
    (pack,) = add_packs(store, 1)
    (delivery,) = queue(store, [pack], "cms")
    code = store.delivery_link(delivery, new_code)
    server = make_server(settings)
    session = requests.Session()
    answered = 0
    for _ in range(150):
        response = session.get(
            f"{server.url}/s/{code}", headers={"User-Agent": BROWSER}, allow_redirects=False
        )
        answered += response.status_code == 302
    session.close()
    assert store.query("SELECT count(*) AS n FROM hits")[0]["n"] == 0  # still buffered
    assert server.stop() == 0
    assert store.query("SELECT count(*) AS n FROM hits")[0]["n"] == answered == 150
    store.close()


def test_base_url_must_be_http(tmp_path):
    from media_matrix.config import ConfigError

    with pytest.raises(ConfigError, match="public.base_url"):
        write_config(tmp_path, [], base_url="javascript:alert(1)")
    assert SECRET  # the sandbox secret the helpers use


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_address_counts_only_from_the_trusted_proxy(tmp_path, make_server, trusted):
    extra = {"trusted_proxy": "127.0.0.1"} if trusted else {}
    settings = write_config(
        tmp_path,
        [webhook("cms", "https://cms.example.cn/api")],
        miss_burst=3,
        miss_rate=0.01,
        **extra,
    )
    store = open_store(settings.database)
    (delivery,) = queue(store, add_packs(store, 1), "cms")
    code = store.delivery_link(delivery, new_code)
    server = make_server(settings)

    def get(path: str, client: str) -> int:
        return requests.get(
            server.url + path,
            headers={"User-Agent": BROWSER, "X-Forwarded-For": client},
            allow_redirects=False,
            timeout=10,
        ).status_code

    assert [get(f"/s/{new_code()}", "203.0.113.5") for _ in range(4)] == [404] * 3 + [429]
    # another client behind the proxy is its own visitor, unless the proxy is not trusted
    assert get(f"/s/{code}", "203.0.113.6") == (302 if trusted else 429)
    assert server.stop() == 0
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("db.sqlite"))
    assert b"203.0.113" not in data
    store.close()
