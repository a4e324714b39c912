"""科普信息员 roster: CSV import (bad rows by line, nothing half-imported), list, disable, kit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from media_matrix.officers import RosterError, parse_roster
from media_matrix.store import open_store
from media_matrix.timeutil import now_iso

sys.path.insert(0, str(Path(__file__).parent))
from test_dispatch import add_packs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COUNTIES = ["清丰县", "范县"]
GOOD = "name,county,township,groups\n王芳,清丰县,韩村镇,农民;老年人\n李强,范县,濮城镇,seniors\n"


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=60,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    data = {
        "database": str(tmp_path / "db.sqlite"),
        "counties": {c: 500000 for c in COUNTIES},
        "public": {"base_url": "https://kp.example.cn"},
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_parse_accepts_ids_labels_and_chinese_headers():
    rows = parse_roster("姓名,区县,乡镇,人群\n王芳,清丰县,韩村镇,农民、老年人\n", COUNTIES)
    assert rows == [
        {"name": "王芳", "county": "清丰县", "township": "韩村镇", "groups": ["farmers", "seniors"]}
    ]


def test_parse_reports_every_bad_row_by_line():
    text = (
        "name,county,township,groups\n"
        "王芳,清丰县,韩村镇,farmers\n"  # line 2 ok
        ",清丰县,韩村镇,farmers\n"  # 3 no name
        "赵六,火星县,某镇,farmers\n"  # 4 unknown county
        "钱七,范县,濮城镇,aliens\n"  # 5 unknown group
        "王芳,清丰县,韩村镇,youth\n"  # 6 duplicate of 2
        "孙八\x07,范县,濮城镇,\n"  # 7 control character
    )
    with pytest.raises(RosterError) as info:
        parse_roster(text, COUNTIES)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == [f"第 {n} 行" for n in (3, 4, 5, 6, 7)]
    assert "火星县" in problems[1] and "aliens" in problems[2] and "第 2 行" in problems[3]
    with pytest.raises(RosterError, match="表头缺少列"):
        parse_roster("name,county\n王芳,清丰县\n", COUNTIES)


def test_import_with_bad_rows_imports_nothing_and_exits_2(config, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(GOOD, encoding="utf-8")
    assert run_cli(config, "officers", "import", str(good)).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD.replace("李强", "李强强") + "张三,范县,,farmers\n", encoding="utf-8")
    result = run_cli(config, "officers", "import", str(bad))
    assert result.returncode == 2
    assert "第 4 行" in result.stderr and "未导入" in result.stderr
    listed = json.loads(run_cli(config, "officers", "list", "--json").stdout)
    assert sorted(o["name"] for o in listed) == ["李强", "王芳"]  # nothing of bad.csv
    assert all(
        "token" not in o and o["page_url"].startswith("https://kp.example.cn/o/") for o in listed
    )


def test_reimport_updates_groups_and_keeps_the_page_link_and_gbk_is_read(config, tmp_path):
    first = tmp_path / "a.csv"
    first.write_text(GOOD, encoding="utf-8-sig")
    assert run_cli(config, "officers", "import", str(first)).returncode == 0
    before = {
        o["name"]: o for o in json.loads(run_cli(config, "officers", "list", "--json").stdout)
    }
    second = tmp_path / "b.csv"
    second.write_bytes(GOOD.replace("seniors", "workers").encode("gb18030"))
    result = run_cli(config, "officers", "import", str(second))
    assert result.returncode == 0 and "更新 2" in result.stdout
    after = {o["name"]: o for o in json.loads(run_cli(config, "officers", "list", "--json").stdout)}
    assert after["李强"]["groups"] == ["workers"]
    assert after["李强"]["page_url"] == before["李强"]["page_url"]
    only = json.loads(run_cli(config, "officers", "list", "--county", "范县", "--json").stdout)
    assert [o["name"] for o in only] == ["李强"]


def test_disable_and_kit(config, tmp_path):
    roster = tmp_path / "r.csv"
    roster.write_text(GOOD, encoding="utf-8")
    assert run_cli(config, "officers", "import", str(roster)).returncode == 0
    store = open_store(tmp_path / "db.sqlite")
    add_packs(store, 2)
    store.execute("UPDATE packs SET fetched_at = ?, county = '清丰县'", (now_iso(),))
    wang, li = sorted(store.list_officers(), key=lambda o: o["id"])
    result = run_cli(config, "officers", "kit", "-o", str(tmp_path / "kit"))
    assert result.returncode == 0, result.stderr
    sheets = sorted((tmp_path / "kit").glob("*.html"))
    assert len(sheets) == 2
    wang_sheet = next(p for p in sheets if "王芳" in p.name).read_text(encoding="utf-8")
    li_sheet = next(p for p in sheets if "李强" in p.name).read_text(encoding="utf-8")
    codes = store.query("SELECT code, officer_id FROM links ORDER BY id")
    assert {c["officer_id"] for c in codes} == {wang["id"]}  # 清丰县 packs: not for 范县
    for row in codes:
        assert f"https://kp.example.cn/s/{row['code']}" in wang_sheet
        assert row["code"] not in li_sheet
    assert "<svg" in wang_sheet and "秋冬季流感防护指南" in wang_sheet
    assert run_cli(config, "officers", "disable", str(li["id"])).returncode == 0
    assert run_cli(config, "officers", "disable", "999").returncode == 1
    listed = json.loads(run_cli(config, "officers", "list", "--json").stdout)
    assert [o["disabled"] for o in sorted(listed, key=lambda o: o["id"])] == [False, True]
    bad_week = run_cli(config, "officers", "kit", "--week", "2026-W99", "-o", str(tmp_path / "k"))
    assert bad_week.returncode == 2 and "--week" in bad_week.stderr
    store.close()
