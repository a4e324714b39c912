"""Tagging wired into ingest, editor overrides, and re-applying changed rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

FEED = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>科普中国</title>
<item><title>小麦冬季田间管理要点</title><guid>w1</guid><link>https://kp.example/w1</link>
<category>农技</category><description>农民朋友要抓好镇压保墒、防冻防旱，确保小麦安全越冬。</description></item>
<item><title>中小学生近视防控指南</title><guid>y1</guid><link>https://kp.example/y1</link>
<description>青少年近视防控从每天两小时户外活动开始，家长和学校要配合。</description></item>
</channel></rss>"""


def setup(tmp_path: Path, extra: dict | None = None) -> Path:
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    data = {
        "database": "var/t.db",
        "feeds": [{"name": "kp", "kind": "rss", "url": "feed.xml", "auto_approve": True}],
        **(extra or {}),
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return config


def mm(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def packs(config: Path, *args: str) -> dict[str, dict]:
    result = mm(config, "packs", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {p["title"]: p for p in json.loads(result.stdout)}


def test_ingest_tags_and_editor_override_survives(tmp_path):
    config = setup(tmp_path)
    assert mm(config, "ingest").returncode == 0
    listed = packs(config)
    wheat = listed["小麦冬季田间管理要点"]
    assert "farmers" in wheat["groups"] and "agriculture" in wheat["topics"]
    assert listed["中小学生近视防控指南"]["groups"] == ["youth"]
    assert list(packs(config, "--group", "youth")) == ["中小学生近视防控指南"]
    assert list(packs(config, "--topic", "agriculture")) == ["小麦冬季田间管理要点"]

    wid = str(wheat["id"])
    edit = mm(
        config,
        "packs",
        "retag",
        wid,
        "--add-group",
        "seniors",
        "--remove-topic",
        "agriculture",
        "--by",
        "王编辑",
        "--json",
    )
    assert edit.returncode == 0, edit.stderr
    shown = json.loads(mm(config, "packs", "show", wid, "--json").stdout)
    editor = [t for t in shown["tags"] if t["origin"] == "editor"]
    assert {(t["tag"], t["removed"]) for t in editor} == {("seniors", False), ("agriculture", True)}
    assert all(t["reason"] for t in shown["tags"])

    # the source changes the article: it is re-tagged by rules, editor decisions stay
    (tmp_path / "feed.xml").write_text(
        FEED.replace("确保小麦安全越冬", "确保小麦安全越冬。农技站"), encoding="utf-8"
    )
    assert mm(config, "ingest").returncode == 0
    again = packs(config)["小麦冬季田间管理要点"]
    assert "seniors" in again["groups"] and "agriculture" not in again["topics"]
    retag = mm(config, "packs", "retag", "--all", "--json")
    assert json.loads(retag.stdout)["packs"] == 2
    after = packs(config)["小麦冬季田间管理要点"]
    assert "seniors" in after["groups"] and "agriculture" not in after["topics"]
    audit = mm(config, "audit", "--json")
    assert audit.returncode == 0, audit.stderr
    edits = [row for row in json.loads(audit.stdout) if row["who"] == "王编辑"]
    assert {(row["action"], row["note"]) for row in edits} == {
        ("add_group", "seniors"),
        ("remove_topic", "agriculture"),
    }


def test_rule_change_then_retag_all_reports_changes(tmp_path):
    config = setup(tmp_path)
    assert mm(config, "ingest").returncode == 0
    assert "officials" not in packs(config)["中小学生近视防控指南"]["groups"]
    setup(tmp_path, {"groups": {"officials": {"keywords": {"近视防控": 5}}}})
    result = mm(config, "packs", "retag", "--all", "--json")
    report = json.loads(result.stdout)
    assert report["changed_tags"] >= 1 and report["changed_packs"] == 1
    assert "officials" in packs(config)["中小学生近视防控指南"]["groups"]


def test_retag_usage_errors(tmp_path):
    config = setup(tmp_path)
    mm(config, "ingest")
    assert mm(config, "packs", "retag").returncode == 2
    bad = mm(config, "packs", "retag", "1", "--add-group", "aliens")
    assert bad.returncode == 2 and "aliens" in bad.stderr
    assert mm(config, "packs", "retag", "99", "--add-group", "youth").returncode == 1
