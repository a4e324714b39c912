"""RSS 0.9x/1.0/2.0 and Atom through feedparser, cleaned by our own sanitizer.

feedparser's sanitizer and relative-URI resolution are turned off: nh3 does both faster and
with one allowlist for every source kind.
"""

from __future__ import annotations

import hashlib
import html
from datetime import UTC, datetime
from typing import Any

import feedparser

from media_matrix.ingest.clean import (
    content_hash,
    html_to_text,
    image_urls,
    plain_text,
    safe_url,
    sanitize_html,
    summarize,
)
from media_matrix.ingest.fetch import FetchResult
from media_matrix.ingest.source import SourceError
from media_matrix.models import Enclosure, Item
from media_matrix.timeutil import to_iso


def parse_feed(fetched: FetchResult, max_items: int = 200) -> list[Item]:
    """Items of a fetched feed, newest first as the feed gives them."""
    headers = dict(fetched.headers)
    headers.setdefault("content-location", fetched.url)
    if fetched.url.startswith("file:"):
        headers.setdefault("content-type", "application/xml")
    parsed = feedparser.parse(
        fetched.content,
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    if not parsed.entries and not parsed.version:
        reason = parsed.get("bozo_exception") or "no RSS or Atom document found"
        raise SourceError(f"not a valid feed: {_describe(reason)}")
    return [_item(entry, fetched.url) for entry in parsed.entries[:max_items]]


def _describe(reason: Any) -> str:
    text = str(reason).strip() or type(reason).__name__
    return text[:300]


def _item(entry: Any, feed_url: str) -> Item:
    body, base = _body(entry, feed_url)
    clean = sanitize_html(body, base)
    text = html_to_text(clean)
    title = plain_text(entry.get("title", "")) or summarize(text, 40) or "(无标题)"
    summary_source = entry.get("summary", "") if entry.get("content") else ""
    summary = summarize(plain_text(summary_source), 200) if summary_source else summarize(text)
    link = safe_url(entry.get("link"), base)
    guid = str(entry.get("id") or "").strip() or link or _fallback_guid(entry, title)
    return Item(
        guid=guid[:1000],
        title=title[:500],
        url=link,
        summary=summary,
        content_html=clean,
        text=text,
        images=image_urls(clean) + _image_enclosures(entry, base),
        enclosures=_enclosures(entry, base),
        author=plain_text(entry.get("author", ""))[:200],
        categories=[
            plain_text(t.get("term") or "") for t in entry.get("tags", []) if t.get("term")
        ],
        published_at=_date(entry.get("published_parsed") or entry.get("updated_parsed")),
        content_hash=content_hash(title, text),
    )


def _body(entry: Any, feed_url: str) -> tuple[str, str]:
    """The richest body the entry has, as HTML, with the base URL it is relative to."""
    detail = None
    if entry.get("content"):
        detail = entry.content[0]
    elif entry.get("summary_detail"):
        detail = entry.summary_detail
    if detail is None:
        return "", feed_url
    value = detail.get("value") or ""
    if detail.get("type") == "text/plain":
        value = html.escape(value).replace("\n", "<br>")
    return value, detail.get("base") or feed_url


def _enclosures(entry: Any, base: str) -> list[Enclosure]:
    out = []
    for link in entry.get("enclosures", []):
        url = safe_url(link.get("href"), base)
        if not url:
            continue
        length = str(link.get("length") or "")
        out.append(Enclosure(url, link.get("type", ""), int(length) if length.isdigit() else None))
    return out


def _image_enclosures(entry: Any, base: str) -> list[str]:
    return [e.url for e in _enclosures(entry, base) if e.type.startswith("image/")]


def _date(parsed: Any) -> str | None:
    if not parsed:
        return None
    try:
        return to_iso(datetime(*parsed[:6], tzinfo=UTC))
    except (TypeError, ValueError):
        return None


def _fallback_guid(entry: Any, title: str) -> str:
    seed = f"{title}|{entry.get('published', '')}|{entry.get('summary', '')[:200]}"
    return "sha1:" + hashlib.sha1(seed.encode("utf-8", "replace")).hexdigest()
