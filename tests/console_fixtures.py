"""A console over a real project copy: default config, sample packs ingested, one user per role.

Shared by the server-side tests (Flask's test client, real CSRF) and the browser tests.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from media_matrix import users
from media_matrix.config import Settings, load_settings
from media_matrix.ingest import run_ingest
from media_matrix.store import Store, open_store

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pass-word-123"
ROLE_USERS = {
    "admin": ("admin", None),
    "editor": ("editor", None),
    "operator": ("operator", None),
    "viewer": ("viewer", None),
    "op_qingfeng": ("operator", "清丰县"),
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    root: Path
    settings: Settings
    store: Store


def make_project(tmp_path: Path, *, extra: dict[str, Any] | None = None) -> Path:
    """config.yaml, channels/ and content_packs/ copied into tmp_path (with ``extra`` keys)."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw.update(extra or {})
    for chan in raw["channels"]:
        if chan["name"] == "puyang-kexie-wechat":
            chan["title"] = "濮阳科协微信公众号"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    for folder in ("content_packs", "channels"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def make_console(tmp_path: Path, *, extra: dict[str, Any] | None = None) -> Console:
    root = make_project(tmp_path, extra=extra)
    settings = load_settings(root / "config.yaml")
    store = open_store(settings.database)
    run_ingest(settings, store)
    for name, (role, county) in ROLE_USERS.items():
        users.add_user(settings, store, name, role, PASSWORD, county=county, by="test")
    return Console(root, settings, store)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: Any, name: str, password: str = PASSWORD) -> str:
    """Sign in through the real form; returns a CSRF token for later posts."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return csrf_of(client.get("/").get_data(as_text=True))
