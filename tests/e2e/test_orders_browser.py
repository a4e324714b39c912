"""群众点单 end to end in a real browser: a resident orders from a phone-sized viewport on the
public face, a county editor accepts the order and links a pack in the console, the planner
books that pack first on the county's channel, a dispatch round delivers it to the sandbox, and
the order shows as answered on its public page, which never shows the contact. Both faces are
served by waitress on loopback over one real SQLite file."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from console_fixtures import PASSWORD, Console, make_console
from playwright.sync_api import expect
from test_console_browser import sign_in

from media_matrix import users
from media_matrix.public import make_app
from media_matrix.scheduling import fill_now
from media_matrix.store import open_store
from media_matrix.timeutil import utcnow
from media_matrix.web import create_app

CONTACT = "13912340000 王大姐"
PHONE_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; V2227A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/116.0 Mobile Safari/537.36"
)


def serve(app: Any) -> tuple[str, Any]:
    import waitress

    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=srv.run, daemon=True).start()
    return f"http://127.0.0.1:{srv.effective_port}", srv


@pytest.fixture
def faces(tmp_path) -> Iterator[tuple[Console, str, str]]:
    con = make_console(tmp_path)
    users.add_user(
        con.settings, con.store, "ed_qingfeng", "editor", PASSWORD, county="清丰县", by="test"
    )
    public_app = make_app(con.settings, open_store(con.settings.database))
    public_url, public_srv = serve(public_app)
    console_url, console_srv = serve(create_app(con.settings, con.store))
    try:
        yield con, public_url, console_url
    finally:
        public_srv.close()
        console_srv.close()
        public_app.close()
        con.store.close()


def test_a_resident_order_is_taken_answered_and_shown(faces, browser, shots):
    con, public_url, console_url = faces
    store, settings = con.store, con.settings
    seen: list[str] = []  # every public response body, to check for the contact

    # a resident, on a phone
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=PHONE_AGENT,
        locale="zh-CN",
    )
    resident = phone.new_page()
    resident.on(
        "response",
        lambda r: seen.append(r.text()) if r.url.startswith(public_url) and r.ok else None,
    )
    resident.goto(f"{public_url}/request")
    expect(resident.locator("h1")).to_contain_text("群众点单")
    resident.select_option("select[name=county]", "清丰县")
    resident.fill("input[name=township]", "马庄桥镇")
    resident.fill("textarea[name=text]", "今年小麦播得晚，冬天怎么防冻？农药怎么用才安全？")
    resident.select_option("select[name=group]", "farmers")
    resident.fill("input[name=contact]", CONTACT)
    resident.screenshot(path=str(shots / "20-order-form-phone.png"), full_page=True)
    resident.click("button[type=submit]")
    expect(resident.locator("#status")).to_have_text("待接单")
    resident.screenshot(path=str(shots / "21-order-open-phone.png"), full_page=True)
    token = re.search(r"/request/([A-Za-z0-9_-]{24})$", resident.url).group(1)  # type: ignore[union-attr]
    order = store.request_by_token(token)
    assert order is not None and order["contact"] == CONTACT and order["source"] == "web"
    assert "agriculture" in order["topics"]

    # the county editor takes the order and links the best matching pack
    desk = browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    sign_in(desk, console_url, "ed_qingfeng")
    desk.click("header.top >> text=群众点单")
    row = desk.locator("#requests tr", has_text="小麦播得晚")
    expect(row).to_contain_text(CONTACT)  # the county's editors see the contact
    desk.screenshot(path=str(shots / "22-console-requests.png"), full_page=True)
    row.locator("a").first.click()
    expect(desk.locator("#order-status")).to_have_text("待接单")
    desk.click("#accept")
    expect(desk.locator(".flash.ok")).to_contain_text("接单完成")
    expect(desk.locator("#order-status")).to_have_text("已接单")
    best = desk.locator("#matches tr").nth(1)
    expect(best).to_contain_text("主题相同")
    pack_id = int(re.search(r"#(\d+)", best.locator("a").first.inner_text()).group(1))  # type: ignore[union-attr]
    best.locator("button.link-pack").click()
    expect(desk.locator(".flash.ok")).to_contain_text("关联内容完成")
    desk.screenshot(path=str(shots / "23-console-request-linked.png"), full_page=True)
    order = store.get_request(order["id"])
    assert order["pack_id"] == pack_id and order["status"] == "accepted"
    actions = [a["action"] for a in store.audit_log(subject=f"request:{order['id']}")]
    assert actions[:2] == ["request_link", "request_accept"]

    # the planner books the linked pack first on the county's channel; a round delivers it
    queued = fill_now(settings, store, "qingfeng-media-centre", utcnow(), by="e2e").queued
    assert queued and queued[0].pack_id == pack_id
    assert "群众点单" in queued[0].reason
    operator = browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    sign_in(operator, console_url, "admin")
    operator.goto(f"{console_url}/deliveries")
    operator.click("text=立即投递一轮")
    expect(operator.locator(".flash.ok")).to_contain_text("投递一轮")
    order = store.get_request(order["id"])
    assert order["status"] == "fulfilled", order
    assert store.get_delivery(order["delivery_id"])["pack_id"] == pack_id

    # the resident's page shows the answer, and no personal data
    resident.reload()
    expect(resident.locator("#status")).to_have_text("已答复")
    answer = resident.locator(".answer a")
    expect(answer).to_have_text(store.get_pack(pack_id).title)
    assert answer.get_attribute("href").startswith(settings.public.base_url + "/s/")  # type: ignore[union-attr]
    resident.screenshot(path=str(shots / "24-order-answered-phone.png"), full_page=True)
    assert seen and all(CONTACT not in body and "13912340000" not in body for body in seen)
    assert "马庄桥镇" not in resident.content()

    desk.reload()
    expect(desk.locator("#order-status")).to_have_text("已答复")
    desk.screenshot(path=str(shots / "25-console-request-fulfilled.png"), full_page=True)
    phone.close()
