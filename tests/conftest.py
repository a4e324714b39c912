"""Shared fixtures: a temporary project folder with a config file, and the loopback server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from feedserver import FeedServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
