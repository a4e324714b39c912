"""/requests in the console (Flask test client, real CSRF, real SQLite): each role and county
against each order action (allowed: done and audited; refused: 403/404 and nothing changed),
county scoping of the list, escalations on the city's list, contacts only for editors."""

from __future__ import annotations

from typing import Any

import pytest
from console_fixtures import PASSWORD, login, make_console

from media_matrix import orders, users
from media_matrix.web import create_app

CONTACT = "13700001111"
ACTORS = {
    # name: (role, county)
    "admin": ("admin", None),
    "editor": ("editor", None),  # a city-level editor
    "operator": ("operator", None),
    "viewer": ("viewer", None),
    "ed_qingfeng": ("editor", "清丰县"),
    "ed_hualong": ("editor", "华龙区"),
}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = make_console(tmp_path_factory.mktemp("orders-console"))
    for name in ("ed_qingfeng", "ed_hualong"):
        role, county = ACTORS[name]
        users.add_user(c.settings, c.store, name, role, PASSWORD, county=county, by="test")
    yield c
    c.store.close()


@pytest.fixture
def app(console):
    return create_app(console.settings, console.store, testing=True)


def new_order(console, status: str = "open", county: str = "清丰县") -> dict[str, Any]:
    raw = {"county": county, "township": "马庄桥镇", "text": "小麦怎么防冻", "contact": CONTACT}
    order = orders.submit(console.settings, console.store, raw, source="web", by="test")
    if status == "escalated":
        order = orders.act(console.store, order["id"], "escalate", by="test")
    return order


def state(console, order_id: int) -> tuple[Any, ...]:
    order = console.store.get_request(order_id)
    audit = console.store.audit_log(subject=f"request:{order_id}")
    return order["status"], order["pack_id"], order["note"], len(audit)


def expected(name: str, order: dict[str, Any], action: str) -> bool:
    role, county = ACTORS[name]
    try:
        orders.check_action({"role": role, "county": county}, order, action)
    except orders.OrderDenied:
        return False
    return True


@pytest.mark.parametrize("name", list(ACTORS))
@pytest.mark.parametrize("status", ["open", "escalated"])
def test_order_action_matrix(console, app, name, status):
    client = app.test_client()
    token = login(client, name)
    assert client.get("/requests").status_code == 200
    pack_id = console.store.packs_with_tags()[0]["id"]
    forms = {
        "accept": {},
        "decline": {"note": "暂不安排"},
        "escalate": {"note": "本县无此内容"},
        "link": {"pack_id": pack_id},
    }
    for action, form in forms.items():
        order = new_order(console, status)
        before = state(console, order["id"])
        response = client.post(
            f"/requests/{order['id']}/{action}", data={**form, "csrf_token": token}
        )
        if expected(name, order, action):
            assert response.status_code == 302, (name, status, action, response.status_code)
            after = state(console, order["id"])
            assert after != before and after[3] == before[3] + 1, (name, action)
            audit = console.store.audit_log(subject=f"request:{order['id']}")[0]
            assert audit["who"] == name and audit["action"] == f"request_{action}"
        else:
            assert response.status_code in (403, 404), (name, status, action)
            assert state(console, order["id"]) == before, (name, action, "refused but changed")
    # a POST without the CSRF token changes nothing
    order = new_order(console, status)
    before = state(console, order["id"])
    assert client.post(f"/requests/{order['id']}/accept").status_code == 400
    assert state(console, order["id"]) == before


def test_lists_are_scoped_by_county_and_contacts_shown_to_editors(console, app):
    qf = new_order(console, county="清丰县")
    hl = new_order(console, county="华龙区")
    up = new_order(console, "escalated", county="清丰县")

    client = app.test_client()
    login(client, "ed_qingfeng")
    page = client.get("/requests").get_data(as_text=True)
    assert f"#{qf['id']}<" in page and f"#{hl['id']}<" not in page
    assert f"#{up['id']}<" not in page  # escalated: the city's list now
    assert CONTACT in page
    assert client.get(f"/requests/{hl['id']}").status_code == 404  # another county's
    detail = client.get(f"/requests/{qf['id']}").get_data(as_text=True)
    assert "推荐内容" in detail and "关联此内容" in detail
    assert f"/request/{qf['token']}" in detail  # the answer page, to pass on to the resident

    city = app.test_client()
    login(city, "editor")
    page = city.get("/requests").get_data(as_text=True)  # escalations by default
    assert f"#{up['id']}<" in page and f"#{qf['id']}<" not in page
    page = city.get("/requests?status=open&county=华龙区").get_data(as_text=True)
    assert f"#{hl['id']}<" in page and f"#{qf['id']}<" not in page

    viewer = app.test_client()
    login(viewer, "viewer")
    page = viewer.get("/requests?status=all").get_data(as_text=True)
    assert f"#{qf['id']}<" in page and CONTACT not in page
    shown = viewer.get(f"/requests/{qf['id']}").get_data(as_text=True)
    assert CONTACT not in shown and qf["token"] not in shown


def test_stats_page_shows_order_figures_by_request_topic(console, app):
    new_order(console)
    client = app.test_client()
    login(client, "viewer")
    page = client.get("/stats?by=request_topic").get_data(as_text=True)
    assert "按点单主题" in page and "点单数" in page and "农业技术" in page
    assert CONTACT not in page


def test_dashboard_counts_the_orders_waiting_on_each_user(console, app):
    def card(name: str) -> int:
        client = app.test_client()
        login(client, name)
        page = client.get("/").get_data(as_text=True)
        number = page.split("群众点单待处理")[0].rsplit("<b>", 1)[1].split("</b>")[0]
        return int(number)

    def waiting(statuses: list[str], county: str | None = None) -> int:
        rows = console.store.list_requests(county=county, statuses=statuses)
        return len(rows)

    before = {n: card(n) for n in ("ed_qingfeng", "ed_hualong", "editor")}
    new_order(console, county="清丰县")
    new_order(console, county="清丰县")
    new_order(console, status="escalated", county="华龙区")
    assert card("ed_qingfeng") == before["ed_qingfeng"] + 2 == waiting(["open"], "清丰县")
    assert card("ed_hualong") == before["ed_hualong"] == waiting(["open"], "华龙区")
    assert card("editor") == before["editor"] + 1 == waiting(["escalated"])  # the city's queue
