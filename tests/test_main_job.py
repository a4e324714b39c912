"""The main job on the embedded default config, in a copy of the project folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """config.yaml, channels/ and content_packs/ copied: the run writes only inside tmp_path."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    for folder in ("content_packs", "channels"):
        if (REPO / folder).exists():
            shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_run_once_on_default_config_ingests_the_samples(project):
    result = cli(project, "run", "--once", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_feed = {f["feed"]: f for f in report["ingest"]}
    assert by_feed["kepu-china"]["new"] >= 20
    assert by_feed["kepu-zhongyuan"]["merged"] >= 3  # the same articles as 科普中国's
    assert by_feed["local-packs"]["new"] >= 6
    assert all(f["error"] is None for f in report["ingest"])
    packs = json.loads(cli(project, "packs", "list", "--json").stdout)
    assert len(packs) >= 40
    both = [p for p in packs if p["feeds"] == ["kepu-china", "kepu-zhongyuan"]]
    assert len(both) == 3
    # the whole flow: each channel type got its next slot's batch, sent now, to the sandbox
    sent = report["deliveries"]
    channels = {d["channel"] for d in sent}
    assert channels == {
        "puyang-kexie-wechat",
        "qingfeng-media-centre",
        "hualong-square-screen",
        "puyang-kexie-wecom",
        "qingfeng-kepu-board",
    }
    assert all(d["status"] == "delivered" for d in sent), sent
    # every delivery has its own tracked link on the configured public face
    links = [d["track_url"] for d in sent]
    assert len(set(links)) == len(sent)
    assert all(link.startswith("http://127.0.0.1:8090/s/") for link in links)
    poster = next(d for d in sent if d["channel"] == "qingfeng-kepu-board")
    pdf = Path(poster["url"].removeprefix("file://"))
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.is_relative_to(project)
    officers = json.loads(cli(project, "officers", "list", "--json").stdout)
    assert sorted(o["name"] for o in officers) == ["李强", "王芳"]  # the sample roster
    wechat = [d for d in sent if d["channel"] == "puyang-kexie-wechat"]
    assert 1 <= len(wechat) <= 4 and all(d["url"] for d in wechat)  # per_slot 4, article URLs
    screen = next(d for d in sent if d["channel"] == "hualong-square-screen")
    folder = Path(screen["url"].removeprefix("file://"))
    assert (folder / "manifest.json").is_file() and folder.is_relative_to(project)
    # only approved packs went out (the local packs await review)
    approved = {p["id"] for p in packs if p["status"] == "approved"}
    assert {d["pack_id"] for d in sent} <= approved
    log = json.loads(cli(project, "deliveries", "--json").stdout)
    assert len(log) == len(sent)
    # the run ends with the stats step: estimated reach of what went out, by channel reach
    assert report["estimated_rows"] == len(sent)
    summary = json.loads(cli(project, "stats", "summary", "--json").stdout)
    assert summary["total"]["delivered"] == len(sent)
    assert summary["total"]["estimated_reach"] > 0
    # a second run finds nothing new, stores no duplicate and sends nothing twice
    again = json.loads(cli(project, "run", "--once", "--json").stdout)
    assert sum(f["new"] for f in again["ingest"]) == 0
    assert len(json.loads(cli(project, "packs", "list", "--json").stdout)) == len(packs)
    resent = {(d["pack_id"], d["channel"]) for d in again["deliveries"]}
    assert not resent & {(d["pack_id"], d["channel"]) for d in sent}


def test_config_from_environment_and_bad_pack_in_inbox(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cwd")
    bad = project / "content_packs" / "inbox" / "坏资源包"
    bad.mkdir(parents=True)
    (bad / "pack.yaml").write_text("title: [unclosed\n", encoding="utf-8")
    env = {"MEDIA_MATRIX_CONFIG": str(project / "config.yaml")}
    result = subprocess.run(
        [sys.executable, "-m", "media_matrix", "ingest", "--feed", "inbox"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    assert "坏资源包" in result.stdout and "not valid YAML" in result.stdout
    assert (bad / "pack.yaml").exists()
    feeds = json.loads(cli(project, "feeds", "list", "--json", env=env).stdout)
    inbox = next(f for f in feeds if f["name"] == "inbox")
    assert inbox["item_errors"][0]["item"] == "坏资源包"
    assert (project / "var" / "media_matrix.db").exists()
    assert not (elsewhere / "var").exists()  # paths resolve against the config's folder


def test_offline_demo_survives_a_restart_between_submit_and_poll(project):
    """Issue 10: the embedded sandboxes remember their state beside the database, so a second
    `dispatch --once` polls the WeChat publish the first one submitted (it used to answer 40007
    and mark the urgent 寒潮 warning dead)."""
    assert cli(project, "ingest").returncode == 0
    packs = json.loads(cli(project, "packs", "list", "--json").stdout)
    (pack,) = [p["id"] for p in packs if "寒潮" in p["title"]]
    for args in (("packs", "urgent", str(pack)), ("packs", "approve", str(pack))):
        assert cli(project, *args).returncode == 0
    assert cli(project, "queue", "--auto").returncode == 0
    first = cli(project, "dispatch", "--once", "--json")
    assert first.returncode == 0, first.stderr

    def wechat_delivery() -> dict:
        rows = json.loads(cli(project, "deliveries", "--json").stdout)
        (row,) = [r for r in rows if r["pack_id"] == pack and r["channel"] == "puyang-kexie-wechat"]
        return row

    assert wechat_delivery()["status"] in ("submitted", "delivered")
    for _ in range(3):  # the sandbox finishes a publish after a couple of polls
        if wechat_delivery()["status"] == "delivered":
            break
        second = cli(project, "dispatch", "--once", "--json")
        assert second.returncode == 0, second.stderr
    row = wechat_delivery()
    assert row["status"] == "delivered", row
    assert row["last_error"] is None and row["url"]
    assert any(p.name.endswith(".sandbox.json") for p in (project / "var").iterdir())
