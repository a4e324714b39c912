"""Bounded work: a fetch has a total deadline, a pack has caps on its body, its file count and
its size, folders and zips alike (issue 14, items 8 and 9)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hostile_helpers import BODY, ingest, write_config, write_pack

from media_matrix.adapters.base import load_image
from media_matrix.httpclient import make_session, network_policy

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DRIP_SECONDS = 8  # how long the slow server keeps a connection dripping


@pytest.fixture
def slow_loris() -> Iterator[str]:
    """A loopback server answering every request one byte a second (headers, then body)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n<rss>"
            end = time.monotonic() + DRIP_SECONDS
            for byte in answer:
                if stop.is_set() or time.monotonic() > end:
                    return
                conn.sendall(bytes([byte]))
                time.sleep(1.0)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    listener.close()


def test_a_slow_loris_feed_is_cut_at_the_deadline(tmp_path, slow_loris):
    config = write_config(
        tmp_path,
        [{"name": "slow", "kind": "rss", "url": f"{slow_loris}/feed.xml"}],
        ingest={"deadline": 2, "read_timeout": 5},
    )
    started = time.monotonic()
    report, _, _ = ingest(config, now=NOW)
    elapsed = time.monotonic() - started
    assert "deadline" in (report.feeds[0].error or "")
    assert elapsed < DRIP_SECONDS - 2, elapsed  # each read came within its timeout: not enough


def test_a_slow_loris_image_is_cut_at_its_deadline(slow_loris):
    started = time.monotonic()
    image = load_image(
        f"{slow_loris}/a.png", make_session(), timeout=2, network=network_policy(["127.0.0.1"])
    )
    assert image is None
    assert time.monotonic() - started < DRIP_SECONDS - 2


def test_a_pack_body_over_the_cap_is_refused_by_name(tmp_path):
    packs = tmp_path / "packs"
    write_pack(packs, "huge", body="<p>" + "大" * 400_000 + "</p>")  # 1.2 MB of UTF-8
    write_pack(packs, "fine", body=f"<p>{BODY}</p>")
    config = write_config(
        tmp_path,
        [{"name": "local", "kind": "packdir", "url": str(packs)}],
        ingest={"pack_max_body_bytes": 1_000_000},
    )
    report, store, _ = ingest(config, now=NOW)
    errors = dict(report.feeds[0].item_errors)
    assert "body cap" in errors["huge"] and "1000000" in errors["huge"]
    assert [p.title for p in store.list_packs()] == ["冬季取暖防火"]  # the other pack is stored


def test_a_zip_with_too_many_entries_is_not_extracted(tmp_path):
    packs = tmp_path / "packs"
    packs.mkdir()
    with zipfile.ZipFile(packs / "bomb.zip", "w") as zf:
        zf.writestr("pack.yaml", "title: 很多文件\n")
        zf.writestr("body.html", f"<p>{BODY}</p>")
        for n in range(3000):
            zf.writestr(f"empty/{n}.txt", "")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    report, store, settings = ingest(config, now=NOW)
    errors = dict(report.feeds[0].item_errors)
    assert "3002 entries" in errors["bomb.zip"] and "500" in errors["bomb.zip"]
    media = settings.database.parent / "packs" / "local"
    assert not media.exists() or not any(media.iterdir())  # nothing extracted
    assert store.list_packs() == []


def test_a_folder_with_too_many_files_or_bytes_is_refused(tmp_path):
    packs = tmp_path / "packs"
    many = write_pack(packs, "many", body=f"<p>{BODY}</p>")
    for n in range(30):
        (many / f"{n}.txt").write_text("x")
    heavy = write_pack(packs, "heavy", body=f"<p>{BODY}甲</p>")
    (heavy / "video.bin").write_bytes(b"\0" * 300_000)
    write_pack(packs, "ok", body=f"<p>{BODY}乙</p>")
    config = write_config(
        tmp_path,
        [{"name": "local", "kind": "packdir", "url": str(packs)}],
        ingest={"pack_max_files": 20, "pack_max_bytes": 200_000},
    )
    report, store, _ = ingest(config, now=NOW)
    errors = dict(report.feeds[0].item_errors)
    assert "more than 20 files" in errors["many"]
    assert "more than 200000 bytes" in errors["heavy"]
    assert len(store.list_packs()) == 1
