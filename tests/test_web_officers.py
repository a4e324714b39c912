"""/officers in the console (Flask test client, real CSRF, real SQLite): the roster list scoped
by county and paginated, a roster CSV uploaded (good: stored and audited; bad: the parser's
problems shown and nothing changed), an officer disabled (confirmed, audited by the signed-in
user), a hostile name shown escaped."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from console_fixtures import PASSWORD, login, make_console

from media_matrix import users
from media_matrix.links import new_code
from media_matrix.officers import import_roster_data, roster_counties
from media_matrix.web import create_app

HOSTILE = "<script>alert(1)</script>"
ROSTER = (
    "姓名,区县,乡镇,人群\n"
    "王芳,清丰县,韩村镇,农民;青少年\n"
    "李强,范县,濮城镇,老年人\n"
    f"{HOSTILE},清丰县,<img src=x onerror=alert(1)>,farmers\n"
)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = make_console(tmp_path_factory.mktemp("officers-console"))
    users.add_user(c.settings, c.store, "ed_qingfeng", "editor", PASSWORD, county="清丰县", by="t")
    import_roster_data(c.store, ROSTER.encode(), "seed.csv", roster_counties(c.settings))
    yield c
    c.store.close()


@pytest.fixture
def app(console):
    return create_app(console.settings, console.store, testing=True)


def officer(console, name: str) -> dict[str, Any]:
    return next(o for o in console.store.list_officers() if o["name"] == name)


def roster_state(console) -> tuple[Any, ...]:
    """Everything an import or a disable could change."""
    rows = [
        (o["id"], o["name"], o["county"], o["township"], tuple(o["groups"]), o["disabled"])
        for o in console.store.list_officers()
    ]
    audit = [a for a in console.store.audit_log(limit=100000) if a["action"].startswith("officer")]
    return tuple(rows), len(audit)


def shown_ids(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'href="/officers/(\d+)">#', html)}


def upload(client, token: str, text: str | bytes, name: str = "名册.csv", **form: str) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/officers/import",
        data={"roster": (io.BytesIO(data), name), "csrf_token": token, **form},
        content_type="multipart/form-data",
    )


def test_list_is_scoped_by_county_and_shows_link_counts(console, app):
    wang, li = officer(console, "王芳"), officer(console, "李强")
    pack_id = console.store.packs_with_tags()[0]["id"]
    code = console.store.officer_links(wang["id"], [pack_id], new_code)[pack_id]
    link = console.store.query_one("SELECT id FROM links WHERE code = ?", (code,))
    console.store.record_hits([(link["id"], "2026-11-20", "wechat", 1, f"v{i}") for i in range(3)])

    client = app.test_client()
    login(client, "ed_qingfeng")
    page = client.get("/officers").get_data(as_text=True)
    assert wang["id"] in shown_ids(page) and li["id"] not in shown_ids(page)
    assert client.get("/officers?county=范县").get_data(as_text=True).count("李强") == 0
    assert client.get(f"/officers/{li['id']}").status_code == 404  # another county's
    row = page[page.index(f'officers/{wang["id"]}">#') :].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", row) == ["1", "3"]  # one personal link, three clicks
    assert f"/o/{wang['token']}" in page  # an editor gets the share page to pass on

    city = app.test_client()
    login(city, "admin")
    page = city.get("/officers").get_data(as_text=True)
    assert {wang["id"], li["id"]} <= shown_ids(page)
    page = city.get("/officers?county=范县").get_data(as_text=True)
    assert shown_ids(page) == {li["id"]}

    viewer = app.test_client()
    login(viewer, "viewer")
    page = viewer.get("/officers").get_data(as_text=True)
    assert {wang["id"], li["id"]} <= shown_ids(page)
    assert wang["token"] not in page and "导入名册" not in page  # no page token, no import form
    detail = viewer.get(f"/officers/{wang['id']}").get_data(as_text=True)
    assert "王芳" in detail and "/disable" not in detail


def test_roster_is_paginated(console, app):
    rows = "".join(f"分页{i:03d},台前县,侯庙镇,farmers\n" for i in range(60))
    import_roster_data(
        console.store, f"name,county,township,groups\n{rows}".encode(), "p.csv", ["台前县"]
    )
    client = app.test_client()
    login(client, "viewer")
    first = client.get("/officers?county=台前县").get_data(as_text=True)
    second = client.get("/officers?county=台前县&page=2").get_data(as_text=True)
    assert len(shown_ids(first)) == 50 and len(shown_ids(second)) == 10
    assert not shown_ids(first) & shown_ids(second)
    assert "第 1 / 2 页" in first and "page=2" in first and "county=" in first


def test_good_csv_is_imported_and_audited(console, app):
    client = app.test_client()
    token = login(client, "editor")
    text = "name,county,township,groups\n王芳,清丰县,韩村镇,seniors\n赵敏,南乐县,谷金楼乡,workers\n"
    response = upload(client, token, text, note="十一月名册")
    assert response.status_code == 302
    assert "新增 1, 更新 1" in client.get("/officers").get_data(as_text=True)
    assert officer(console, "王芳")["groups"] == ["seniors"]
    assert officer(console, "赵敏")["county"] == "南乐县"
    entry = console.store.audit_log(subject="officers")[0]
    assert (entry["who"], entry["action"]) == ("editor", "officers.import")
    assert "名册.csv" in entry["note"] and "十一月名册" in entry["note"]


def test_bad_csv_shows_the_problems_and_changes_nothing(console, app):
    client = app.test_client()
    token = login(client, "editor")
    before = roster_state(console)
    bad = (
        "姓名,区县,乡镇,人群\n"
        "王芳,清丰县,韩村镇,youth\n"  # good on its own
        "赵六,火星县,某镇,farmers\n"  # 3 unknown county
        "钱七,范县,,aliens\n"  # 4 empty township, unknown group
    )
    response = upload(client, token, bad)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "未导入任何信息员" in page and "第 3 行" in page and "火星县" in page
    assert "第 4 行" in page and "aliens" in page
    assert roster_state(console) == before  # 王芳's groups not touched by the good line 2
    for text, said in [
        ("", "文件为空"),
        ("name,county\n王芳,清丰县\n", "表头缺少列"),
        (b"\xff\xfe\xfd", "编码"),
    ]:
        response = upload(client, token, text)
        assert response.status_code == 400 and said in response.get_data(as_text=True), said
    no_file = client.post("/officers/import", data={"csrf_token": token})
    assert no_file.status_code == 400 and "请选择" in no_file.get_data(as_text=True)
    assert roster_state(console) == before


def test_a_county_editor_imports_only_their_county(console, app):
    client = app.test_client()
    token = login(client, "ed_qingfeng")
    before = roster_state(console)
    text = "name,county,township,groups\n新人甲,清丰县,韩村镇,farmers\n新人乙,范县,濮城镇,farmers\n"
    response = upload(client, token, text)
    assert response.status_code == 400 and "不是您所在的 清丰县" in response.get_data(as_text=True)
    assert roster_state(console) == before
    assert upload(client, token, text.rsplit("新人乙", 1)[0]).status_code == 302
    assert officer(console, "新人甲")["county"] == "清丰县"


def test_import_needs_csrf_and_the_review_permission(console, app):
    before = roster_state(console)
    text = "name,county,township,groups\n冒名,清丰县,韩村镇,farmers\n"
    client = app.test_client()
    login(client, "editor")
    response = client.post(
        "/officers/import",
        data={"roster": (io.BytesIO(text.encode()), "x.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    for role in ("operator", "viewer"):
        other = app.test_client()
        assert upload(other, login(other, role), text).status_code == 403
    assert roster_state(console) == before


def test_disable_is_confirmed_scoped_and_audited(console, app):
    import_roster_data(
        console.store,
        "name,county,township,groups\n停用甲,清丰县,马庄桥镇,farmers\n停用乙,范县,濮城镇,farmers\n".encode(),
        "d.csv",
        ["清丰县", "范县"],
    )
    target, far = officer(console, "停用甲"), officer(console, "停用乙")
    client = app.test_client()
    token = login(client, "ed_qingfeng")
    url = f"/officers/{target['id']}/disable"
    before = roster_state(console)
    unconfirmed = client.post(url, data={"csrf_token": token, "note": "离岗"})
    assert unconfirmed.status_code == 302 and roster_state(console) == before
    refused = client.post(
        f"/officers/{far['id']}/disable", data={"csrf_token": token, "confirm": "yes"}
    )
    assert refused.status_code == 404 and roster_state(console) == before
    assert client.post(url, data={"confirm": "yes"}).status_code == 400  # no CSRF token
    assert roster_state(console) == before

    done = client.post(url, data={"csrf_token": token, "confirm": "yes", "note": "已离岗"})
    assert done.status_code == 302
    assert officer(console, "停用甲")["disabled"]
    assert console.store.officer_by_token(target["token"]) is None  # the public page is gone
    entry = console.store.audit_log(subject=f"officer:{target['id']}")
    assert [(e["who"], e["action"], e["note"]) for e in entry] == [
        ("ed_qingfeng", "officer.disable", "已离岗")
    ]
    detail = client.get(f"/officers/{target['id']}").get_data(as_text=True)
    assert "已停用" in detail and "已离岗" in detail and target["token"] not in detail
    assert f'action="{url}"' not in detail  # no second form
    again = client.post(url, data={"csrf_token": token, "confirm": "yes"})
    assert again.status_code == 302
    assert len(console.store.audit_log(subject=f"officer:{target['id']}")) == 1


def test_a_hostile_roster_name_is_shown_escaped(console, app):
    bad = officer(console, HOSTILE)
    client = app.test_client()
    login(client, "admin")
    for url in ("/officers?county=清丰县", f"/officers/{bad['id']}"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page, url
        assert "&lt;script&gt;alert(" in page and "&lt;img src=x" in page, url
