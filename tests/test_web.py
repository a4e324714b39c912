"""The console on the server side (Flask test client, real CSRF, real SQLite): the role x action
matrix, CSRF refusal, login throttling, county scoping, sessions, headers, search, exports."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from console_fixtures import PASSWORD, REPO, csrf_of, login, make_console, make_project
from openpyxl import load_workbook

from media_matrix import users
from media_matrix.models import Item, PackStatus
from media_matrix.timeutil import now_iso
from media_matrix.web import create_app

ROLES = ("admin", "editor", "operator", "viewer")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = make_console(tmp_path_factory.mktemp("console"))
    yield c
    c.store.close()


@pytest.fixture
def app(console):
    return create_app(console.settings, console.store, testing=True)


def new_pack(store, title: str, *, status=PackStatus.NEW, body: str = "", county="市级") -> int:
    item = Item(
        guid=f"{title}-{now_iso()}",
        title=title,
        text=body or title,
        content_html=body or f"<p>{title}</p>",
        content_hash=f"h-{title}-{now_iso()}",
        county=county,
    )
    return store.insert_pack("test", item, at=now_iso(), status=status)


def delivery(store, channel: str, *, cancelled: bool = False) -> int:
    pack = new_pack(store, f"投递测试 {channel}", status=PackStatus.APPROVED)
    did = store.queue_delivery(pack, channel, scheduled_at="2030-01-01T00:00:00+00:00")
    if cancelled:
        store.cancel_delivery(did, who="test")
    return did


def snapshot(store) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    return {
        "packs": [
            (p.id, p.status, p.urgent, tuple(p.groups), tuple(p.topics), p.title, p.summary)
            for p in store.list_packs()
        ],
        "deliveries": [(d["id"], d["status"]) for d in store.list_deliveries()],
        "users": [(u["name"], u["disabled"], u["session_epoch"]) for u in store.list_users()],
        "audit": len(store.audit_log(limit=100000)),
        "feeds": [(f["name"], f["last_fetch_at"]) for f in store.list_feed_states()],
        "officers": [(o["id"], o["disabled"], tuple(o["groups"])) for o in store.list_officers()],
    }


def actions(store) -> list[tuple[str, str, dict[str, Any], str]]:
    """(name, url, form, permission) for every state-changing route, with fresh targets."""
    fresh = new_pack(store, "矩阵测试待审")
    bulk = new_pack(store, "矩阵测试批量")
    approved = new_pack(store, "矩阵测试已通过", status=PackStatus.APPROVED)
    new_pack(store, "矩阵测试待排", status=PackStatus.APPROVED)  # for "fill" to find
    queued = delivery(store, "qingfeng-media-centre")
    to_cancel = delivery(store, "qingfeng-media-centre")
    to_retry = delivery(store, "qingfeng-media-centre", cancelled=True)
    victim = f"victim{fresh}"
    users.add_user(_SETTINGS[0], store, victim, "viewer", PASSWORD, by="test")
    roster = f"name,county,township,groups\n信息员{fresh},清丰县,韩村镇,farmers\n".encode()
    store.import_officers(
        [{"name": f"停用{fresh}", "county": "范县", "township": "濮城镇", "groups": []}],
        lambda: f"tok{fresh}",
    )
    to_disable = max(o["id"] for o in store.list_officers())
    return [
        ("bulk approve", "/packs/bulk", {"ids": [bulk], "action": "approve"}, "review"),
        ("approve", f"/packs/{fresh}/review", {"action": "approve", "note": "好"}, "review"),
        ("urgent", f"/packs/{approved}/review", {"action": "urgent_on"}, "review"),
        ("tags", f"/packs/{approved}/tags", {"add_group": "farmers"}, "review"),
        (
            "text",
            f"/packs/{fresh}/text",
            {"title": f"新标题 {fresh}", "summary": "新摘要"},
            "review",
        ),
        (
            "queue",
            "/calendar/queue",
            {"pack_id": approved, "channel": "puyang-kexie-wecom", "at": "2030-02-01T09:00"},
            "queue",
        ),
        ("unqueue", "/calendar/unqueue", {"delivery_id": queued}, "queue"),
        ("fill", "/calendar/fill", {"days": "7", "channel": "hualong-square-screen"}, "queue"),
        ("retry", f"/deliveries/{to_retry}/retry", {"confirm": "yes"}, "deliver"),
        ("cancel", f"/deliveries/{to_cancel}/cancel", {"confirm": "yes"}, "deliver"),
        ("dispatch", "/deliveries/dispatch", {}, "deliver"),
        ("fetch", "/feeds/inbox/fetch", {}, "fetch"),
        (
            "user add",
            "/users/add",
            {"name": f"new{fresh}", "role": "viewer", "password": PASSWORD},
            "users",
        ),
        ("user disable", f"/users/{victim}/disable", {}, "users"),
        ("user passwd", f"/users/{victim}/passwd", {"password": "another-pass"}, "users"),
        (
            "officers import",
            "/officers/import",
            {"roster": (io.BytesIO(roster), "roster.csv")},
            "review",
        ),
        ("officer disable", f"/officers/{to_disable}/disable", {"confirm": "yes"}, "review"),
    ]


# POST routes outside the matrix above, and why
MATRIX_ELSEWHERE = {
    "auth.login": "before any role: test_csrf_refused_..., test_login_throttling_over_http",
    "auth.logout": "any signed-in role; it ends the session the matrix posts with",
    "orders.act": "per county and order status: test_web_orders.py::test_order_action_matrix",
}


def test_every_state_changing_route_is_in_the_matrix(console, app):
    _SETTINGS[:] = [console.settings]
    adapter = app.url_map.bind("localhost")
    covered = {adapter.match(url, method="POST")[0] for _, url, _, _ in actions(console.store)}
    posting = {r.endpoint for r in app.url_map.iter_rules() if "POST" in (r.methods or ())}
    assert posting - covered - set(MATRIX_ELSEWHERE) == set()


_SETTINGS: list[Any] = []


@pytest.mark.parametrize("role", ROLES)
def test_role_action_matrix(console, app, role):
    _SETTINGS[:] = [console.settings]
    client = app.test_client()
    token = login(client, role)
    for name, url, form, permission in actions(console.store):
        before = snapshot(console.store)
        response = client.post(url, data={**form, "csrf_token": token})
        if users.allowed(role, permission):
            assert response.status_code == 302, (role, name, response.status_code)
            assert snapshot(console.store) != before, (role, name, "allowed but nothing changed")
        else:
            assert response.status_code == 403, (role, name, response.status_code)
            assert snapshot(console.store) == before, (role, name, "refused but changed")
    pages = {"/users": "users", "/calendar/fill-preview?days=1": "queue"}
    for url, permission in pages.items():
        expected = 200 if users.allowed(role, permission) else 403
        assert client.get(url).status_code == expected, (role, url)
    for url in (
        "/",
        "/packs",
        "/calendar",
        "/deliveries",
        "/stats",
        "/feeds",
        "/status",
        "/audit",
        "/officers",
    ):
        assert client.get(url).status_code == 200, (role, url)


def test_csrf_refused_and_nothing_changes(console, app):
    client = app.test_client()
    login(client, "editor")
    pack = new_pack(console.store, "CSRF 测试")
    other = app.test_client()
    other_token = login(other, "admin")
    before = snapshot(console.store)
    refused = client.post(f"/packs/{pack}/review", data={"action": "approve"})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    forged = client.post(
        f"/packs/{pack}/review", data={"action": "approve", "csrf_token": "forged.token"}
    )
    assert forged.status_code == 400
    assert snapshot(console.store) == before
    # a token from another session is no good either
    assert (
        client.post(
            f"/packs/{pack}/review", data={"action": "approve", "csrf_token": other_token}
        ).status_code
        == 400
    )
    assert snapshot(console.store) == before
    # the login form is protected too (login CSRF)
    assert (
        app.test_client().post("/login", data={"name": "editor", "password": PASSWORD}).status_code
        == 400
    )


def test_login_throttling_over_http(console, app):
    users.add_user(console.settings, console.store, "throttled", "editor", PASSWORD, by="test")
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    for i in range(5):
        response = client.post(
            "/login", data={"name": "throttled", "password": f"wrong{i}", "csrf_token": token}
        )
        assert response.status_code == 401
    assert "锁定" in response.get_data(as_text=True)
    right = client.post(
        "/login", data={"name": "throttled", "password": PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 401 and "锁定" in right.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still not signed in
    log = [r["action"] for r in console.store.audit_log(subject="user:throttled")]
    assert "login_locked" in log and log.count("login_failed") == 4


def test_county_scoping_for_operators(console, app):
    store = console.store
    own = delivery(store, "qingfeng-media-centre", cancelled=True)
    other = delivery(store, "puyang-kexie-wecom", cancelled=True)
    client = app.test_client()
    token = login(client, "op_qingfeng")
    page = client.get("/deliveries").get_data(as_text=True)
    shown = set(re.findall(r'href="/deliveries/(\d+)"', page))
    assert str(own) in shown and str(other) not in shown
    assert client.get(f"/deliveries/{other}").status_code == 403
    before = snapshot(store)
    assert (
        client.post(
            f"/deliveries/{other}/retry", data={"confirm": "yes", "csrf_token": token}
        ).status_code
        == 403
    )
    assert snapshot(store) == before
    assert (
        client.post(
            f"/deliveries/{own}/retry", data={"confirm": "yes", "csrf_token": token}
        ).status_code
        == 302
    )
    assert store.get_delivery(own)["status"] == "queued"
    assert store.audit_log(subject=f"delivery:{own}")[0]["who"] == "op_qingfeng"
    # an operator without a county sees both
    wide = app.test_client()
    login(wide, "operator")
    page = wide.get("/deliveries?status=cancelled").get_data(as_text=True)
    assert str(other) in set(re.findall(r'href="/deliveries/(\d+)"', page))


def test_retry_needs_the_confirmation(console, app):
    did = delivery(console.store, "qingfeng-media-centre", cancelled=True)
    client = app.test_client()
    token = login(client, "operator")
    client.post(f"/deliveries/{did}/retry", data={"csrf_token": token})
    assert console.store.get_delivery(did)["status"] == "cancelled"


def test_anonymous_access_sessions_and_headers(console, app):
    client = app.test_client()
    assert client.get("/packs").status_code == 302
    assert client.post("/deliveries/dispatch").status_code in (400, 401)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["database"] is True
    token = csrf_of(client.get("/login").get_data(as_text=True))
    evil = client.post(
        "/login",
        data={
            "name": "viewer",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/",
        },
    )
    assert evil.headers["Location"] == "/"
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "object-src 'none'" in csp
    cookie = evil.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "<script>" not in page.get_data(as_text=True)  # only <script src=...>
    # disabling the user ends the session at once
    users.add_user(console.settings, console.store, "shortlived", "viewer", PASSWORD, by="t")
    other = app.test_client()
    login(other, "shortlived")
    assert other.get("/packs").status_code == 200
    users.disable_user(console.store, "shortlived", by="admin")
    assert other.get("/packs").status_code == 302


def test_secure_cookie_and_configured_secret(tmp_path):
    c = make_console(tmp_path, extra={"web": {"secure_cookies": True, "secret_key": "k" * 32}})
    app = create_app(c.settings, c.store)
    assert app.secret_key == "k" * 32
    client = app.test_client()
    token = csrf_of(client.get("/login", base_url="https://localhost").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"name": "viewer", "password": PASSWORD, "csrf_token": token},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/login"},
    )
    assert "Secure" in response.headers["Set-Cookie"]
    c.store.close()


def test_search_detail_hostile_body_and_preview_limits(console, app):
    store = console.store
    hostile = (
        '<p>防汛抗旱知识</p><script>alert(1)</script><img src="https://evil.example/x.png" '
        'onerror="alert(2)"><a href="javascript:alert(3)">点我</a>'
    )
    long_title = "关于做好冬季森林草原防火和安全生产工作的通知及相关科普知识问答汇编"
    pid = new_pack(store, long_title, body=hostile)
    client = app.test_client()
    login(client, "viewer")
    found = client.get("/packs?q=森林草原防火").get_data(as_text=True)
    assert f'href="/packs/{pid}"' in found
    assert f'href="/packs/{pid}"' not in client.get("/packs?q=不存在的词语").get_data(as_text=True)
    page = client.get(f"/packs/{pid}").get_data(as_text=True)
    assert f'<iframe class="body" sandbox src="/packs/{pid}/body"' in page
    assert "alert(" not in page  # the markup is only in the frame's own document
    frame = client.get(f"/packs/{pid}/body")
    policy = frame.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy
    assert "script-src" not in policy and "img-src data:" in policy
    preview = client.get(f"/packs/{pid}/preview/puyang-kexie-wechat").get_data(as_text=True)
    assert "超过公众号上限 32 字" in preview and "sandbox src=" in preview
    framed = client.get(f"/packs/{pid}/preview/puyang-kexie-wechat/frame/0")
    assert framed.headers["Content-Security-Policy"].startswith("sandbox;")
    assert client.get(f"/packs/{pid}/preview/puyang-kexie-wechat/frame/9").status_code == 404
    assert client.get(f"/packs/{pid}/preview/no-such-channel").status_code == 404


def test_stats_downloads(console, app):
    client = app.test_client()
    login(client, "viewer")
    page = client.get("/stats?from=2026-01-01&to=2026-12-31&by=county&by=group")
    assert page.status_code == 200 and "覆盖率" in page.get_data(as_text=True)
    xlsx = client.get("/stats/export.xlsx?from=2026-01-01&to=2026-12-31&by=county")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    book = load_workbook(io.BytesIO(xlsx.data))
    assert len(book.sheetnames) >= 2
    csv = client.get("/stats/export.csv?from=2026-01-01&to=2026-12-31&by=county")
    assert csv.get_data(as_text=True).lstrip("\ufeff").startswith("county,")
    frame = client.get("/stats/report?from=2026-01-01&to=2026-12-31&by=county")
    assert frame.headers["Content-Security-Policy"].startswith("sandbox")
    assert client.get("/stats?from=bad").status_code == 200  # a clear message, not a crash


def test_serve_command_answers_on_loopback(tmp_path):
    root = make_project(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "media_matrix", "serve", "--port", str(port)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body = json.loads(r.read())
                    server = r.headers["Server"]
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.3)
        assert body["database"] is True and body["daemon_running"] is False
        assert "waitress" in server or "media-matrix" in server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_edit_title_and_summary_keeps_the_original(console, app):
    store = console.store
    pid = new_pack(store, "原来的标题")
    client = app.test_client()
    token = login(client, "editor")
    response = client.post(
        f"/packs/{pid}/text",
        data={"title": "更好的\x00标题\u202e", "summary": "一句话摘要", "csrf_token": token},
    )
    assert response.status_code == 302
    pack = store.get_pack(pid)
    assert (pack.title, pack.summary) == ("更好的标题", "一句话摘要")
    assert store.find_packs(q="更好的标题")[0] == [pid]  # search follows the edit
    page = client.get(f"/packs/{pid}").get_data(as_text=True)
    assert "原标题: 原来的标题" in page
    assert store.audit_log(subject=f"pack:{pid}")[0]["action"] == "edit_text"
    client.post(f"/packs/{pid}/text", data={"title": "  ", "summary": "", "csrf_token": token})
    assert store.get_pack(pid).title == "更好的标题"  # refused: nothing changed
    client.post(f"/packs/{pid}/text", data={"title": "第三版", "summary": "", "csrf_token": token})
    edits = store.pack_text_edits(pid)
    assert [e["old_title"] for e in edits] == ["原来的标题", "更好的标题"]
    wechat = client.get(f"/packs/{pid}/preview/puyang-kexie-wechat").get_data(as_text=True)
    assert "第三版" in wechat


def test_text_edit_is_sent_and_survives_a_re_poll(console, app):
    from media_matrix.ingest import run_ingest

    store = console.store
    sample = next(p for p in store.list_packs() if "kepu-china" in p.feeds)
    client = app.test_client()
    token = login(client, "editor")
    client.post(
        f"/packs/{sample.id}/text",
        data={"title": "编辑改过的标题", "summary": sample.summary, "csrf_token": token},
    )
    preview = client.get(f"/packs/{sample.id}/preview/puyang-kexie-wecom").get_data(as_text=True)
    assert "编辑改过的标题" in preview  # rendered as dispatch would send it
    run_ingest(console.settings, store, feeds=["kepu-china"])
    assert store.get_pack(sample.id).title == "编辑改过的标题"


def test_audit_page_reads_in_chinese_with_the_shared_label_table(console, app):
    """The console shows audit actions through models.AUDIT_ACTION_LABELS, like the CLI."""
    did = delivery(console.store, "city-wechat", cancelled=True)
    client = app.test_client()
    login(client, "admin")
    page = client.get("/audit").get_data(as_text=True)
    row = next(line for line in page.splitlines() if f"delivery:{did}" in line)
    assert "取消投递" in row and "原状态 排队中" in row, row
    assert "delivery.cancel" not in row and "from queued" not in row, row


def test_delivery_errors_read_in_chinese_in_the_console(console, app):
    did = delivery(console.store, "city-wechat", cancelled=True)
    raw = "wechat: HTTP 503 Service Unavailable from https://api.example/cgi-bin/draft/add"
    console.store.execute("UPDATE deliveries SET last_error = ? WHERE id = ?", (raw, did))
    client = app.test_client()
    login(client, "admin")
    listing = client.get("/deliveries").get_data(as_text=True)
    assert "HTTP 503 服务暂不可用" in listing
    detail = client.get(f"/deliveries/{did}").get_data(as_text=True)
    assert "HTTP 503 服务暂不可用" in detail and "Service Unavailable" in detail  # detail kept
