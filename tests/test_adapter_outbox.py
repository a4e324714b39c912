"""The outbox adapter: atomic folder drops with media, manifest, ticker, playlist and DONE."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from media_matrix.adapters import make_adapter, outbox
from media_matrix.adapters.base import AuthError, NothingSent, RetryableError
from media_matrix.adapters.outbox import DONE, OutboxAdapter, folder_name, ticker_text
from media_matrix.config import OutboxChannel

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import (  # noqa: E402
    LOOPBACK_POLICY,
    PNG,
    TEMPLATES,
    Checkpoints,
    image_file,
    make_item,
    make_pack,
)

pytest_plugins = ("sandbox_fixtures",)

SHANGHAI_START = datetime.fromisoformat("2026-12-01T07:30:00+08:00")


def screen(tmp_path: Path, **fields: Any) -> OutboxAdapter:
    settings = {
        "name": "hualong-square-screen",
        "type": "outbox",
        "county": "华龙区",
        "path": tmp_path / "outbox",
        "ticker_max": 20,
        "play_seconds": 20,
        "weekdays": [1, 2, 3, 4, 5],
        "window": "07:00-21:30",
        "play_days": 3,
        **fields,
    }
    return make_adapter(  # type: ignore[return-value]
        OutboxChannel(**settings), templates_dir=TEMPLATES, network=LOOPBACK_POLICY
    )


def scheduled_item(n: int = 1, **pack_fields: Any):
    item = make_item(n, make_pack(n, **pack_fields))
    item.scheduled_at = SHANGHAI_START
    return item


def test_folder_with_files_media_manifest_and_done(tmp_path, static):
    local = image_file(tmp_path, "photo.png")
    remote = f"{static.base_url}/img/photo.jpg"
    html = f'<p>图一<img src="{local}" srcset="x 2x"></p><p><img src="{remote}"><img src="file:///gone.png"></p>'
    item = scheduled_item(
        1,
        content_html=html,
        images=[remote, local],
        title="A&B 科普：冬季防火安全须知",
        local_root=str(tmp_path),  # the pack's own folder: its local files are read from it
    )
    adapter = screen(tmp_path)
    result = adapter.send(adapter.render([item]), Checkpoints())
    folder = tmp_path / "outbox" / item.delivery_uid
    assert result.status == "delivered" and result.remote_id == item.delivery_uid
    assert result.url == folder.as_uri() and result.item_urls == [folder.as_uri()]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        DONE,
        "article.html",
        "manifest.json",
        "media",
        "playlist.json",
        "qr.png",
        "ticker.txt",
    ]
    page = (folder / "article.html").read_text()
    assert 'src="media/01-photo.png"' in page and 'src="media/02-photo.jpg"' in page
    assert "gone.png" not in page and "srcset" not in page
    assert (folder / "media" / "01-photo.png").read_bytes() == PNG
    ticker = (folder / "ticker.txt").read_text().strip()
    assert len(ticker) <= 20 and ticker.startswith("【科普】A&B") and ticker.endswith("…")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["delivery_uid"] == item.delivery_uid and manifest["pack_id"] == 1
    assert manifest["done_marker"] == DONE and manifest["ticker"] == ticker
    for entry in manifest["files"]:
        data = (folder / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert [m["source"] for m in manifest["media"]] == [local, remote]  # copied once each
    assert static.gets.count("/img/photo.jpg") == 1


def test_playlist_entry(tmp_path):
    adapter = screen(tmp_path)
    item = scheduled_item(1)
    adapter.send(adapter.render([item]), Checkpoints())
    entry = json.loads((tmp_path / "outbox" / item.delivery_uid / "playlist.json").read_text())
    assert entry["start"] == "2026-12-01T07:30:00+08:00"
    assert datetime.fromisoformat(entry["end"]) - SHANGHAI_START == timedelta(days=3)
    assert entry["duration"] == 20 and entry["weekdays"] == [1, 2, 3, 4, 5]
    assert entry["window"] == {"from": "07:00", "to": "21:30"}
    assert entry["ticker"] == "ticker.txt" and entry["page"] == "article.html"


def test_writing_twice_leaves_one_folder(tmp_path):
    adapter = screen(tmp_path)
    item = scheduled_item(1)
    message = adapter.render([item])
    first = adapter.send(message, Checkpoints())
    stamp = (tmp_path / "outbox" / item.delivery_uid / "manifest.json").stat().st_mtime_ns
    again = screen(tmp_path).send(message, Checkpoints())
    assert again.remote_id == first.remote_id and again.state["written"] is False
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [item.delivery_uid]
    assert (tmp_path / "outbox" / item.delivery_uid / "manifest.json").stat().st_mtime_ns == stamp
    assert adapter.idempotent
    with pytest.raises(NothingSent):
        adapter.reconcile({})


def test_concurrent_writers_of_one_delivery(tmp_path):
    adapter = screen(tmp_path)
    message = adapter.render([scheduled_item(1)])
    results: list[str] = []

    def write() -> None:
        results.append(adapter.send(message, Checkpoints()).status)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["delivered"] * 6
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [message.items[0].delivery_uid]


def test_a_crash_mid_write_leaves_nothing_visible(tmp_path, monkeypatch):
    adapter = screen(tmp_path)
    item = scheduled_item(1)
    message = adapter.render([item])
    real_write = outbox.write_synced

    def failing(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(outbox, "write_synced", failing)
    with pytest.raises(RetryableError, match="No space left"):
        adapter.send(message, Checkpoints())
    assert list((tmp_path / "outbox").iterdir()) == []  # no folder, no temp left behind
    monkeypatch.setattr(outbox, "write_synced", real_write)
    # a killed process leaves its temp folder and maybe a folder without DONE (copied by hand)
    stale = tmp_path / "outbox" / f".tmp-{item.delivery_uid}-dead"
    stale.mkdir()
    (stale / "article.html").write_text("half")
    partial = tmp_path / "outbox" / item.delivery_uid
    partial.mkdir()
    (partial / "ticker.txt").write_text("half")
    adapter.send(message, Checkpoints())
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [item.delivery_uid]
    assert (partial / DONE).is_file() and (partial / "manifest.json").is_file()


def test_visible_folders_always_complete(tmp_path, monkeypatch):
    """The final name appears only through the rename, after DONE is written."""
    adapter = screen(tmp_path)
    seen: list[list[str]] = []
    real_rename = os.rename

    def watching(src: Any, dst: Any) -> None:
        seen.append(sorted(os.listdir(src)))
        assert not Path(dst).exists()
        real_rename(src, dst)

    monkeypatch.setattr(outbox.os, "rename", watching)
    adapter.send(adapter.render([scheduled_item(1)]), Checkpoints())
    assert DONE in seen[0] and "manifest.json" in seen[0]


def test_unwritable_folder_is_an_auth_error(tmp_path):
    """A real refusal by the OS. Root writes through permission bits, so as root the folder is
    made immutable (chattr +i: even root gets EPERM) instead of read-only."""
    import subprocess

    root = tmp_path / "outbox"
    root.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        made = subprocess.run(["chattr", "+i", str(root)], capture_output=True, text=True)
        assert made.returncode == 0, f"cannot make a folder immutable here: {made.stderr}"
    else:
        root.chmod(0o500)
    try:
        adapter = screen(tmp_path)
        with pytest.raises(AuthError):
            adapter.send(adapter.render([scheduled_item(1)]), Checkpoints())
        assert list(root.iterdir()) == []
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(root)], check=True)
        else:
            root.chmod(0o700)


def test_read_only_target_is_an_auth_error(tmp_path, monkeypatch):
    adapter = screen(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(AuthError, match="Permission denied"):
        adapter.send(adapter.render([scheduled_item(1)]), Checkpoints())


def test_helpers():
    assert ticker_text("  一行\n两行  ", 60) == "一行 两行"
    assert ticker_text("字" * 30, 10) == "字" * 9 + "…"
    assert folder_name("abc123") == "abc123"
    assert len(folder_name("../../etc")) == 32 and "/" not in folder_name("../../etc")
