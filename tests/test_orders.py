"""群众点单: validation, tagging, the paper-sheet import (bad rows by line, nothing half
imported), the status table and county permissions, matching, and the CLI. A real project copy
(default config, sample packs ingested) on a real SQLite file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from media_matrix import orders
from media_matrix.cli import cli
from media_matrix.cli.common import run_guarded
from media_matrix.tagging import tagger_for

sys.path.insert(0, str(Path(__file__).parent))
from console_fixtures import Console, make_console  # noqa: E402

SHEET = """区县,乡镇,内容,人群,联系方式
清丰县,马庄桥镇,想了解小麦病虫害怎么防治，农药怎么用才安全,农民,13800000000
华龙区,胜利路街道,老人用手机怎么防诈骗,老年人,
"""


@pytest.fixture
def con(tmp_path: Path) -> Console:
    return make_console(tmp_path)


def _cli(con: Console, *args: str, capsys=None) -> int:  # type: ignore[no-untyped-def]
    return run_guarded(cli, ["--config", str(con.root / "config.yaml"), *args])


def _order(con: Console, county: str = "清丰县", text: str = "小麦病虫害怎么防治", **kw):  # type: ignore[no-untyped-def]
    raw = {"county": county, "township": "马庄桥镇", "text": text, **kw}
    return orders.submit(con.settings, con.store, raw, source="web", by="test")


def test_validation_strips_markup_and_controls_and_caps_length():
    counties = ["清丰县"]
    clean = orders.validate_order(
        {
            "county": "清丰县",
            "township": "马庄桥\x1b[31m镇",
            "text": "<b onclick=x>农药</b><script>alert(1)</script>怎么用\u202e",
            "group": "农民",
        },
        counties,
    )
    assert clean["text"] == "农药怎么用"
    assert clean["township"] == "马庄桥镇"
    assert clean["group_hint"] == "farmers"
    assert clean["contact"] is None
    with pytest.raises(orders.OrderError) as err:
        orders.validate_order(
            {"county": "火星县", "township": "", "text": "长" * (orders.MAX_TEXT + 1)}, counties
        )
    text = "\n".join(err.value.problems)
    assert "未知区县" in text and "乡镇或社区为空" in text and f"超过 {orders.MAX_TEXT} 字" in text


def test_orders_are_tagged_with_the_packs_tagger_with_reasons(con: Console):
    order = _order(con, text="想了解小麦病虫害怎么防治，农药怎么用才安全", group="农民")
    assert "agriculture" in order["topics"]
    assert order["groups"][0] == "farmers"
    assert "农药" in order["reasons"]["agriculture"]
    assert "点单人选择" in order["reasons"]["farmers"]
    same = tagger_for(con.settings).tag(order["text"], hint_groups=["farmers"])
    assert order["topics"] == same.topic_ids
    audit = con.store.audit_log(subject=f"request:{order['id']}")
    assert [a["action"] for a in audit] == ["request_new"]


def test_sheet_import_reports_bad_rows_by_line_and_imports_nothing(con: Console, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        SHEET + "南乐县,,食品添加剂安全吗,,\n濮阳县,城关镇,<i></i>,外星人,\n", encoding="utf-8"
    )
    with pytest.raises(orders.OrderError) as err:
        orders.import_sheet(con.settings, con.store, bad, by="test")
    problems = err.value.problems
    assert any(p.startswith("第 4 行") and "乡镇或社区为空" in p for p in problems)
    assert any(p.startswith("第 5 行") and "点单内容为空" in p for p in problems)
    assert any(p.startswith("第 5 行") and "外星人" in p for p in problems)
    assert not any(p.startswith(("第 2 行", "第 3 行")) for p in problems)
    assert con.store.list_requests() == []  # the good rows were not half-imported

    good = tmp_path / "good.csv"
    good.write_text(SHEET, encoding="gb18030")  # Excel's Chinese CSV
    assert orders.import_sheet(con.settings, con.store, good, by="test") == (2, 0)
    assert orders.import_sheet(con.settings, con.store, good, by="test") == (0, 2)
    rows = con.store.list_requests()
    assert {r["source"] for r in rows} == {"paper"}
    assert {r["county"] for r in rows} == {"清丰县", "华龙区"}


def test_cli_import_exit_codes_and_list(con: Console, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("区县,内容\n清丰县,x\n", encoding="utf-8")
    assert _cli(con, "requests", "import", str(bad)) == 2
    assert "township" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text(SHEET, encoding="utf-8")
    assert _cli(con, "requests", "import", str(good)) == 0
    capsys.readouterr()
    assert _cli(con, "requests", "list", "--county", "清丰县", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["county"] for r in rows] == ["清丰县"]
    assert "token" not in rows[0]
    assert _cli(con, "requests", "list", "--status", "fulfilled", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_status_table_and_audit(con: Console):
    order = _order(con)
    with pytest.raises(orders.OrderError):
        orders.act(con.store, order["id"], "decline", by="ed", note="  ")
    got = orders.act(con.store, order["id"], "escalate", by="ed", note="本县没有")
    assert got["status"] == "escalated"
    with pytest.raises(orders.OrderDenied):
        orders.act(con.store, order["id"], "escalate", by="ed")
    got = orders.act(con.store, order["id"], "accept", by="city")
    assert got["status"] == "accepted"
    got = orders.act(con.store, order["id"], "decline", by="city", note="已有答复")
    assert got["status"] == "declined" and got["note"] == "已有答复"
    with pytest.raises(orders.OrderDenied):
        orders.act(con.store, order["id"], "accept", by="city")
    actions = [a["action"] for a in con.store.audit_log(subject=f"request:{order['id']}")]
    assert actions == [
        "request_decline",
        "request_accept",
        "request_escalate",
        "request_new",
    ]


def test_permissions_by_county():
    qf_editor = {"role": "editor", "county": "清丰县"}
    hl_editor = {"role": "editor", "county": "华龙区"}
    city = {"role": "editor", "county": None}
    viewer = {"role": "viewer", "county": None}
    order = {"id": 1, "county": "清丰县", "status": "open"}
    for action in ("accept", "decline", "escalate", "link"):
        orders.check_action(qf_editor, order, action)
        with pytest.raises(orders.OrderDenied):
            orders.check_action(hl_editor, order, action)
        with pytest.raises(orders.OrderDenied):
            orders.check_action(viewer, order, action)
    with pytest.raises(orders.OrderDenied):
        orders.check_action(city, order, "escalate")
    escalated = {**order, "status": "escalated"}
    for action in ("accept", "decline", "link"):
        orders.check_action(city, escalated, action)
        with pytest.raises(orders.OrderDenied):  # the city's now
            orders.check_action(qf_editor, escalated, action)
    assert orders.may_see(qf_editor, order) and not orders.may_see(hl_editor, order)
    assert orders.may_see(city, order)


def test_match_ranks_approved_packs_with_reasons(con: Console, capsys):
    order = _order(con, text="想了解小麦病虫害怎么防治，农药怎么用才安全", group="农民")
    found = orders.match(con.settings, con.store, order["id"])
    assert found, "the sample packs hold farming packs"
    assert "农药" in found[0].title
    assert any("主题相同: 农业技术" in r for r in found[0].reasons)
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
    approved = {p["id"] for p in con.store.packs_with_tags()}
    assert {m.pack_id for m in found} <= approved
    # a pack of another county never answers
    other = [
        {"id": 1, "title": "小麦", "county": "华龙区", "topics": ["agriculture"], "groups": []}
    ]
    assert orders.rank_packs(order, other) == []
    assert _cli(con, "requests", "match", str(order["id"]), "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["pack_id"] == found[0].pack_id


def test_link_needs_an_approved_pack_and_accepts_an_open_order(con: Console, capsys):
    order = _order(con)
    assert _cli(con, "requests", "link", str(order["id"]), "999999") == 2
    pack_id = con.store.packs_with_tags()[0]["id"]
    assert _cli(con, "requests", "link", str(order["id"]), str(pack_id), "--by", "ed") == 0
    got = con.store.get_request(order["id"])
    assert got["pack_id"] == pack_id and got["status"] == "accepted"
    assert _cli(con, "requests", "decline", str(order["id"])) == 2  # --reason is required
