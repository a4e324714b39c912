"""Fixtures and helpers for the adapter, render and sandbox tests (imported, not a conftest)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from media_matrix.adapters import wechat_mp, wecom_robot
from media_matrix.adapters.base import OutgoingItem
from media_matrix.httpclient import network_policy
from media_matrix.models import Pack
from media_matrix.render import DEFAULT_COVER, default_templates_dir
from media_matrix.sandbox import SandboxApp, SandboxServers
from media_matrix.sandbox.common import Request, Response, Running

TEMPLATES = default_templates_dir()
PNG = DEFAULT_COVER.read_bytes()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
JPEG += b"\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01" + b"\x00" * 20


def make_pack(n: int = 1, **fields: Any) -> Pack:
    data: dict[str, Any] = {
        "id": n,
        "title": f"秋冬季流感防护指南（{n}）",
        "url": f"https://www.kepuchina.cn/article/{n}",
        "summary": "流感高发季节，老年人和儿童要注意防护，及时接种疫苗。",
        "status": "approved",
        "content_hash": f"hash{n}",
        "published_at": "2026-11-01T08:00:00+08:00",
        "fetched_at": "2026-11-01T09:00:00+00:00",
        "updated_at": "2026-11-01T09:00:00+00:00",
        "content_html": "<p>流感是由流感病毒引起的急性呼吸道传染病。</p><p>勤洗手、多通风。</p>",
        "text": "流感是由流感病毒引起的急性呼吸道传染病。勤洗手、多通风。",
        "source": "科普中国",
        "author": "科普中国编辑部",
        "groups": ["seniors", "public"],
        "topics": ["health"],
    }
    data.update(fields)
    return Pack(**data)


def make_item(n: int = 1, pack: Pack | None = None, uid: str | None = None) -> OutgoingItem:
    return OutgoingItem(delivery_id=n, delivery_uid=uid or f"{n:032x}", pack=pack or make_pack(n))


class Checkpoints:
    """A checkpoint callback that records every state it is given (as the dispatcher would)."""

    def __init__(self, hook: Any = None) -> None:
        self.states: list[dict[str, Any]] = []
        self.hook = hook

    def __call__(self, state: dict[str, Any]) -> None:
        self.states.append(copy.deepcopy(state))
        if self.hook:
            self.hook(state)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None


class _Balance(HTMLParser):
    VOID = {"img", "br", "hr", "meta", "link", "input", "source", "wbr", "area", "col", "embed"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack}")
        else:
            self.stack.pop()


def assert_balanced(html: str) -> None:
    """Every element closed in order, no tag cut in half."""
    parser = _Balance()
    parser.feed(html)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.stack, f"left open: {parser.stack}"
    assert html.count("<") == html.count(">"), "a tag was cut"


class StaticApp(SandboxApp):
    """Serves bytes at paths, for images fetched over http."""

    name = "static"

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, tuple[bytes, str]] = {}
        self.gets: list[str] = []

    def route(self, req: Request) -> Response:
        self.gets.append(req.path)
        found = self.files.get(req.path)
        if found is None:
            return Response(404, b"not found")
        return Response(200, found[0], {"Content-Type": found[1]})


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Process-wide caches (WeChat tokens, WeCom rate windows) start empty in every test."""
    wechat_mp.clear_token_cache()
    wecom_robot.LIMITER.reset()
    yield
    wechat_mp.clear_token_cache()
    wecom_robot.LIMITER.reset()


@pytest.fixture
def servers() -> Iterator[SandboxServers]:
    with SandboxServers() as sb:
        yield sb


@pytest.fixture
def static() -> Iterator[StaticApp]:
    app = StaticApp()
    app.files["/img/photo.png"] = (PNG, "image/png")
    app.files["/img/photo.jpg"] = (JPEG, "image/jpeg")
    app.files["/img/anim.gif"] = (GIF, "image/gif")
    running = Running(app, "127.0.0.1", 0)
    try:
        yield app
    finally:
        running.stop()


# adapters fetch pack images through the guarded fetch: the loopback static server is allowed
LOOPBACK_POLICY = network_policy(["127.0.0.1"])


def image_file(tmp_path: Path, name: str = "local.png", data: bytes = PNG) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return path.as_uri()
