"""Browser tests: the console served by waitress on loopback, Debian's Chromium via Playwright
(never a downloaded browser)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console_fixtures import REPO, Console, make_console  # noqa: E402

from media_matrix.web import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parent / "screenshots"

# A county CMS that refuses every connection (nothing listens on loopback port 9): its
# deliveries fail, for the retry step.
BROKEN = {
    "name": "broken-cms",
    "type": "webhook",
    "county": "市级",
    "audience": ["public"],
    "reach": 100,
    "slots": ["0 10 * * *"],
    "url": "http://127.0.0.1:9/api/manuscripts",
    "secret": "sandbox-secret",
    "timeout": 2,
}


@pytest.fixture(scope="session")
def console(tmp_path_factory) -> Iterator[Console]:
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    c = make_console(tmp_path_factory.mktemp("e2e"), extra={"channels": [*raw["channels"], BROKEN]})
    yield c
    c.store.close()


@pytest.fixture(scope="session")
def server(console) -> Iterator[str]:
    import waitress

    app = create_app(console.settings, console.store)
    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}"
    finally:
        srv.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
