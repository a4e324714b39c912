"""Class: secrets and URL query strings never reach a stored error, a printed one, a JSON
output or a log line. The WeCom robot key lives in webhook_url's query and requests quotes the
whole URL in a connection error; WeChat's token request carries the app secret the same way."""

from __future__ import annotations

import io
import json
import logging
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_dispatch import add_packs, queue, wechat, wecom, write_settings  # noqa: E402

from media_matrix.daemon import JsonLog, _JsonHandler  # noqa: E402
from media_matrix.redact import MASK, redact, redact_record, remember  # noqa: E402
from media_matrix.store import open_store  # noqa: E402

ROBOT_KEY = "5f0c2a9e-robot-key-4b7d-9e1f-leaked"
APP_SECRET = "wechat-app-secret-0123456789abcdef"
FEED_TOKEN = "feed-token-abcdef123456"  # behind ?sid=, a name not known as sensitive


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mm(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def failed_project(tmp_path: Path) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    port = _closed_port()
    base = f"http://127.0.0.1:{port}"
    settings = write_settings(
        tmp_path,
        [
            wecom("robot", f"{base}/cgi-bin/webhook/send?key={ROBOT_KEY}", timeout=2),
            {**wechat("wx", base, timeout=2), "secret": APP_SECRET},
        ],
        backoff_base=60,
        backoff_cap=600,
    )
    store = open_store(settings.database)
    queue(store, add_packs(store, 1, "R"), "robot")
    queue(store, add_packs(store, 1, "W"), "wx")
    store.close()
    config = settings.path
    text = config.read_text(encoding="utf-8")
    feed = f"feeds:\n- name: tokened\n  kind: rss\n  url: {base}/feed.xml?sid={FEED_TOKEN}\n"
    config.write_text(text + feed, encoding="utf-8")
    runs = {
        "ingest": _mm(config, "ingest"),
        "dispatch": _mm(config, "dispatch", "--once"),
        "dispatch_json": _mm(config, "dispatch", "--once", "--json"),
        "run_once": _mm(config, "run", "--once"),
        "show1": _mm(config, "deliveries", "show", "1"),
        "show2": _mm(config, "deliveries", "show", "2"),
        "show_json": _mm(config, "deliveries", "show", "1", "--json"),
        "list": _mm(config, "deliveries"),
        "list_json": _mm(config, "deliveries", "--json"),
        "status": _mm(config, "status"),
        "status_json": _mm(config, "status", "--json"),
        "feeds": _mm(config, "feeds", "list"),
        "feeds_json": _mm(config, "feeds", "list", "--json"),
        "audit": _mm(config, "audit"),
    }
    return tmp_path, runs


def test_network_failures_leak_no_key_anywhere(failed_project):
    folder, runs = failed_project
    # the failures really happened and were recorded
    deliveries = json.loads(runs["list_json"].stdout)
    assert {d["status"] for d in deliveries} == {"failed"}, runs["dispatch"].stderr
    assert all(d["last_error"] for d in deliveries)
    assert "127.0.0.1" in runs["show1"].stdout  # the error still says where it failed
    for name, run in runs.items():
        for secret in (ROBOT_KEY, APP_SECRET, FEED_TOKEN):
            assert secret not in run.stdout, f"{name} stdout shows {secret}"
            assert secret not in run.stderr, f"{name} stderr shows {secret}"
        assert "Traceback" not in run.stderr, name
    conn = sqlite3.connect(folder / "db.sqlite")
    tables = {
        "attempts": "error, excerpt",
        "deliveries": "last_error",
        "audit": "note",
        "feeds": "last_error",
        "feed_errors": "error",
    }
    dump = "\n".join(
        str(row)
        for table, cols in tables.items()
        for row in conn.execute(f"SELECT {cols} FROM {table}")
    )
    conn.close()
    for secret in (ROBOT_KEY, APP_SECRET, FEED_TOKEN):
        assert secret not in dump
    assert MASK in dump  # the errors are stored, masked


@pytest.mark.parametrize(
    "text",
    [
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
        "/cgi-bin/webhook/send?key=SEKRET-KEY-1 (Caused by NewConnectionError)",
        "GET https://api.weixin.qq.com/cgi-bin/token?grant_type=x&appid=wx1&secret=SEKRET-KEY-1",
        "POST http://u:SEKRET-KEY-1@cms.example/api",
        '{"access_token": "SEKRET-KEY-1", "expires_in": 7200}',
        "invalid access_token=SEKRET-KEY-1, hint",
    ],
)
def test_redact_masks_query_strings_userinfo_and_token_pairs(text):
    out = redact(text)
    assert "SEKRET-KEY-1" not in out and MASK in out


def test_remembered_secrets_are_masked_everywhere_also_percent_encoded():
    remember(["p@ss word/+secret"])
    assert "p@ss" not in redact("signed with p@ss word/+secret")
    assert "p%40ss" not in redact("body=p%40ss%20word%2F%2Bsecret")
    record = redact_record({"url": "https://x.example/a?id=3", "error": "at /a?id=3"})
    assert record["url"] == "https://x.example/a?id=3"  # pack URLs keep their queries
    assert record["error"] == f"at /a?{MASK}"  # error text does not


def test_daemon_json_log_lines_are_redacted():
    stream = io.StringIO()
    log = JsonLog(stream)
    remember([APP_SECRET])
    url = f"http://127.0.0.1:9/cgi-bin/webhook/send?key={ROBOT_KEY}"
    log("job_error", error=f"network error: {url}", channel="robot", note=f"token {APP_SECRET}")
    handler = _JsonHandler(log, logging.INFO)
    record = logging.LogRecord(
        "media_matrix.dispatch", logging.ERROR, __file__, 1, "send to %s failed", (url,), None
    )
    handler.handle(record)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["job_error", "log"]
    text = stream.getvalue()
    assert ROBOT_KEY not in text and APP_SECRET not in text
    assert (
        lines[0]["channel"] == "robot"
        and "127.0.0.1:9/cgi-bin/webhook/send?" in lines[1]["message"]
    )
