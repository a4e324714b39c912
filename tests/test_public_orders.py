"""The 群众点单 form on the public face, over real HTTP (`media-matrix public` on loopback, a
real SQLite file): a valid order, the honeypot, oversized and malformed bodies, the double-submit
CSRF check, floods (per visitor and per address), officer submissions, and the answer page,
which never shows the contact (nor the text or township) of an order."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from media_matrix import users
from media_matrix.config import Settings, load_settings
from media_matrix.store import Store, open_store
from media_matrix.web import create_app

sys.path.insert(0, str(Path(__file__).parent))
from console_fixtures import PASSWORD, login, make_project  # noqa: E402
from test_public import BROWSER, Server  # noqa: E402

CONTACT = "13912345678-张阿姨"
_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def project(tmp_path: Path, **public: Any) -> tuple[Settings, Store]:
    root = make_project(tmp_path)
    raw = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    raw["public"].update({"flush_every": 0.05, **public})
    (root / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    settings = load_settings(root / "config.yaml")
    return settings, open_store(settings.database)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Settings, Store, Server]]:
    settings, store = project(tmp_path, order_burst=3, order_address_burst=5)
    server = Server(settings)
    try:
        yield settings, store, server
    finally:
        server.stop()
        store.close()


class Visitor:
    """One browser: its own cookie jar and user agent."""

    def __init__(self, server: Server, agent: str = BROWSER) -> None:
        self.server = server
        self.http = requests.Session()
        self.http.headers["User-Agent"] = agent
        self.seen: list[str] = []  # every body and header the public face answered

    def get(self, path: str) -> requests.Response:
        return self._keep(self.http.get(self.server.url + path, allow_redirects=False, timeout=10))

    def post(self, path: str, data: dict[str, str], **kw: Any) -> requests.Response:
        response = self.http.post(
            self.server.url + path, data=data, allow_redirects=False, timeout=10, **kw
        )
        return self._keep(response)

    def order(self, path: str = "/request", **fields: str) -> requests.Response:
        page = self.get(path)
        assert page.status_code == 200, page.text
        token = _TOKEN.search(page.text)
        assert token
        data = {
            "county": "清丰县",
            "township": "马庄桥镇",
            "text": "小麦冬季怎么防冻？农药怎么用才安全",
            "group": "farmers",
            "contact": CONTACT,
            "form_token": token.group(1),
            "website": "",
            **fields,
        }
        return self.post(path, data)

    def _keep(self, response: requests.Response) -> requests.Response:
        self.seen.append(response.text + repr(dict(response.headers)))
        return response


def orders_of(store: Store) -> list[dict[str, Any]]:
    return store.list_requests()


def test_a_valid_order_is_stored_tagged_and_its_answer_page_shows_no_personal_data(served):
    settings, store, server = served
    visitor = Visitor(server)
    page = visitor.get("/request")
    assert "群众点单" in page.text and 'name="website"' in page.text
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    answer = visitor.order()
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    (order,) = orders_of(store)
    assert location == f"/request/{order['token']}"
    assert order["contact"] == CONTACT and order["source"] == "web"
    assert "agriculture" in order["topics"] and order["groups"][0] == "farmers"
    shown = visitor.get(location)
    assert shown.status_code == 200
    assert "待接单" in shown.text and "农业技术" in shown.text
    for private in (CONTACT, "13912345678", order["township"], order["text"][:6]):
        assert private not in shown.text
    assert all(CONTACT not in seen and "13912345678" not in seen for seen in visitor.seen)
    assert visitor.get("/request/" + "A" * 24).status_code == 404  # unknown token


def test_honeypot_is_thanked_and_nothing_stored(served):
    _, store, server = served
    answer = Visitor(server).order(website="http://spam.example")
    assert answer.status_code == 200 and "已收到" in answer.text
    assert "/request/" not in answer.text
    assert orders_of(store) == []


def test_oversized_and_bad_bodies_are_refused_with_nothing_stored(served):
    _, store, server = served
    visitor = Visitor(server)
    too_long = visitor.order(text="麦" * 501)
    assert too_long.status_code == 400
    assert "超过 500 字" in too_long.text
    huge = visitor.post("/request", {"text": "x" * 20_000, "county": "清丰县"})
    assert huge.status_code == 413
    not_a_form = visitor.post(
        "/request", {}, json={"county": "清丰县"}, headers={"Content-Type": "application/json"}
    )
    assert not_a_form.status_code == 415
    # every POST spends the visitor's bucket (3 here): another browser for the last one
    marked_up = Visitor(server, agent=BROWSER + " b").order(
        text="<script>alert(1)</script>", township="<b></b>"
    )
    assert marked_up.status_code == 400  # empty once the markup is stripped
    assert "<script>alert(1)" not in marked_up.text
    assert orders_of(store) == []


def test_csrf_needs_the_cookie_and_the_signed_token(served):
    _, store, server = served
    visitor = Visitor(server)
    page = visitor.get("/request")
    token = _TOKEN.search(page.text).group(1)  # type: ignore[union-attr]
    fields = {"county": "清丰县", "township": "城关镇", "text": "食品添加剂安全吗"}
    stranger = Visitor(server)  # a cross-site post: the token copied, no cookie
    assert stranger.post("/request", {**fields, "form_token": token}).status_code == 400
    forged = visitor.post("/request", {**fields, "form_token": "9999999999.abc"})
    assert forged.status_code == 400
    assert orders_of(store) == []
    assert visitor.post("/request", {**fields, "form_token": token}).status_code == 303


def test_a_flood_is_throttled_per_visitor_and_per_address(served):
    settings, store, server = served
    one = Visitor(server)
    codes = [one.order(text=f"节水灌溉问题{i}").status_code for i in range(5)]
    assert codes[:3] == [303, 303, 303] and codes[3:] == [429, 429]
    # new agents from the same address: the address bucket (5) stops them
    others = [Visitor(server, agent=f"{BROWSER} n{i}") for i in range(4)]
    more = [v.order(text=f"防诈骗{i}").status_code for i, v in enumerate(others)]
    assert more.count(303) == 2 and more[2:] == [429, 429]
    assert len(orders_of(store)) == 5
    assert "提交过于频繁" in others[-1].order().text
    # the editors' console is another server on the same database: the flood holds it up not
    users.add_user(settings, store, "ed", "editor", PASSWORD, county="清丰县", by="test")
    client = create_app(settings, store, testing=True).test_client()
    token = login(client, "ed")
    listed = client.get("/requests").get_data(as_text=True)
    assert listed.count("节水灌溉问题") == 3
    first = orders_of(store)[-1]
    accepted = client.post(f"/requests/{first['id']}/accept", data={"csrf_token": token})
    assert accepted.status_code == 302
    assert store.get_request(first["id"])["status"] == "accepted"


def test_an_officer_orders_for_residents_attributed(served, tmp_path):
    settings, store, server = served
    store.import_officers(
        [{"name": "李信息员", "county": "范县", "township": "陈庄镇", "groups": ["farmers"]}],
        lambda: "Tok" + "x" * 21,
    )
    officer = store.officer_by_token("Tok" + "x" * 21)
    visitor = Visitor(server)
    page = visitor.get(f"/o/{officer['token']}")
    assert f"/o/{officer['token']}/request" in page.text
    form = visitor.get(f"/o/{officer['token']}/request")
    assert "李信息员" in form.text and 'value="陈庄镇"' in form.text
    answer = visitor.order(
        f"/o/{officer['token']}/request", county="范县", township="陈庄镇", contact=""
    )
    assert answer.status_code == 303
    (order,) = orders_of(store)
    assert order["officer_id"] == officer["id"] and order["source"] == "officer"
    audit = store.audit_log(subject=f"request:{order['id']}")
    assert audit[0]["who"] == f"officer:{officer['id']}"
    store.disable_officer(officer["id"])
    assert visitor.get(f"/o/{officer['token']}/request").status_code == 404
