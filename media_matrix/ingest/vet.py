"""The last check every item passes before it is stored, whatever source kind read it.

One place for the rules a stranger's item must meet, so a new parser cannot forget one:

* text fields lose terminal escapes, control characters and bidi overrides;
* group and topic ids are known ids (``^[a-z][a-z0-9_]*$`` and in the vocabulary);
* every URL it carries is http(s), or a local file inside the item's own folder
  (``local_root``: only local sources have one);
* a published date beyond ``future_skew`` into the future is clamped to the fetch time.

Each correction is returned as a reason; the item is fixed in place. Pure: no I/O beyond
resolving the local paths an item names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from media_matrix.ingest.clean import (
    confine_local,
    content_hash,
    local_file_inside,
    plain_http_url,
    strip_controls,
)
from media_matrix.models import GROUPS, TOPICS, Item
from media_matrix.timeutil import from_iso, to_iso

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class VetRules:
    now: datetime
    future_skew: float = 86400.0
    topics: frozenset[str] = frozenset(TOPICS)  # the configured topic rules' ids


def vet_item(item: Item, rules: VetRules) -> list[str]:
    """Fix ``item`` in place; returns what was dropped or changed, with the reason."""
    notes = _scrub_text(item)
    notes += _check_ids(item, rules.topics)
    notes += _check_urls(item)
    notes += _check_date(item, rules)
    return notes


def _scrub_text(item: Item) -> list[str]:
    before = (item.title, item.text)
    item.title = strip_controls(item.title)
    item.summary = strip_controls(item.summary)
    item.text = strip_controls(item.text)
    item.content_html = strip_controls(item.content_html)
    item.author = strip_controls(item.author)
    item.source = strip_controls(item.source)
    item.categories = [c for c in (strip_controls(c) for c in item.categories) if c]
    if (item.title, item.text) == before:
        return []
    item.content_hash = content_hash(item.title, item.text)
    return ["control characters removed from the title or text"]


def _check_ids(item: Item, topics: frozenset[str]) -> list[str]:
    notes = []
    for kind, known, ids in (("group", GROUPS, item.groups), ("topic", topics, item.topics)):
        bad = [i for i in ids if not ID_PATTERN.match(i) or i not in known]
        for value in bad:
            notes.append(f"{kind} id {value!r} dropped: not a known {kind} id")
        ids[:] = [i for i in ids if i not in bad]
    return notes


def url_allowed(url: str | None, local_root: str | None) -> bool:
    """http(s) with a host, or a file inside the item's own folder."""
    if not url:
        return False
    if plain_http_url(url):
        return True
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    return scheme == "file" and local_file_inside(url, local_root)


def _check_urls(item: Item) -> list[str]:
    notes = []
    if item.url and not plain_http_url(item.url):
        parts = urlsplit(item.url)
        if parts.scheme.lower() not in ("http", "https"):
            notes.append(f"link {item.url[:200]!r} dropped: only http(s) links are kept")
            item.url = None
        elif not parts.hostname:
            notes.append(f"link {item.url[:200]!r} dropped: no host")
            item.url = None
    item.content_html, dropped = confine_local(item.content_html, item.local_root)
    for url in dropped:
        notes.append(f"local reference {url[:200]!r} dropped: outside the source's own folder")
    kept = []
    for url in item.images:
        if url_allowed(url, item.local_root):
            kept.append(url)
        elif url not in dropped:
            notes.append(f"image {url[:200]!r} dropped: not http(s) or a file of its own folder")
    item.images = kept
    enclosures = []
    for enclosure in item.enclosures:
        if url_allowed(enclosure.url, item.local_root):
            enclosures.append(enclosure)
        else:
            notes.append(f"enclosure {enclosure.url[:200]!r} dropped: not http(s) or its own file")
    item.enclosures = enclosures
    return notes


def _check_date(item: Item, rules: VetRules) -> list[str]:
    published = from_iso(item.published_at)
    latest = rules.now + timedelta(seconds=rules.future_skew)
    if published is None or published <= latest:
        return []
    item.published_at = to_iso(rules.now)
    return [
        f"published date {to_iso(published)} is in the future; "
        f"clamped to the fetch time {item.published_at}"
    ]
