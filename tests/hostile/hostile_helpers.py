"""Shared by the hostile-input tests: a project folder with a config, packs on disk, ingest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from feedserver import LOOPBACK_NETWORK

from media_matrix.config import Settings, load_settings
from media_matrix.ingest import IngestReport, run_ingest
from media_matrix.store import Store, open_store

REPO = Path(__file__).resolve().parents[2]
KEPU_SAMPLE = REPO / "content_packs" / "samples" / "kepu_china.xml"
BODY = "冬季是火灾高发季节，使用取暖设备要注意安全，人走断电，不要在电暖器上烘烤衣物。" * 3


def write_config(
    tmp_path: Path, feeds: list[dict[str, Any]], *, loopback: bool = True, **extra: Any
) -> Path:
    data: dict[str, Any] = {"database": "var/hostile.db", "feeds": feeds, **extra}
    if loopback:
        data.setdefault("network", LOOPBACK_NETWORK)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def write_pack(
    folder: Path,
    name: str,
    body: str = f"<p>{BODY}</p>",
    body_name: str = "body.html",
    **manifest: Any,
) -> Path:
    pack = folder / name
    pack.mkdir(parents=True, exist_ok=True)
    data = {"title": "冬季取暖防火", **manifest}
    (pack / "pack.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    (pack / body_name).write_text(body, "utf-8")
    return pack


def ingest(
    config: Path, feeds: list[str] | None = None, now: datetime | None = None
) -> tuple[IngestReport, Store, Settings]:
    settings = load_settings(config)
    store = open_store(settings.database)
    report = run_ingest(settings, store, feeds=feeds, now=now)
    return report, store, settings


def rss(items: list[tuple[str, str, str]], extra: str = "", item_extra: str = "") -> bytes:
    """An RSS 2.0 document of (guid, title, body) items."""
    entries = "".join(
        f"<item {item_extra}><guid>{g}</guid><title>{t}</title>"
        f"<link>https://www.kepuchina.cn/article/{g}</link>"
        f"<description><![CDATA[{b}]]></description>{extra}</item>"
        for g, t, b in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://www.kepuchina.cn/</link>{entries}</channel></rss>"
    ).encode()
