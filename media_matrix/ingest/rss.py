"""RSS 0.9x/1.0/2.0 and Atom, cleaned by our own sanitizer.

Two parsers feed one item builder: a fast lxml path for plain, well-formed RS 2.0 and Atom 1.0
(most real feeds, 科普中国's included), and feedparser for everything else (RSS 1.0/RDF, CDF,
broken XML, odd encodings, xml:base). The fast path declines anything it is unsure of, so
feedparser's leniency is never lost. feedparser's own sanitizer and relative-URI resolution
are off: nh3 does both, with one allowlist for every source kind.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from lxml import etree

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

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True
)


@dataclass
class RawEntry:
    """One entry as either parser read it, before cleaning."""

    id: str = ""
    title: str = ""
    link: str | None = None
    body: str = ""  # HTML
    base: str = ""
    summary: str = ""  # HTML or text, only when a separate body exists
    author: str = ""
    categories: list[str] = field(default_factory=list)
    published: datetime | None = None
    enclosures: list[Enclosure] = field(default_factory=list)


def parse_feed(fetched: FetchResult, max_items: int = 200) -> list[Item]:
    """Items of a fetched feed, in the order the feed gives them."""
    entries = fast_entries(fetched.content or b"", fetched.url)
    if entries is None:
        entries = feedparser_entries(fetched)
    return [build_item(entry) for entry in entries[:max_items]]


# -- fast path --------------------------------------------------------------------------------


class _Decline(Exception):
    """The fast path is not sure; feedparser takes over."""


def fast_entries(content: bytes, url: str) -> list[RawEntry] | None:
    """RSS 2.0 / Atom 1.0 through lxml, or None when feedparser should decide."""
    if b"<!DOCTYPE" in content[:1024] or b"<!ENTITY" in content[:4096]:
        return None
    try:
        root = etree.fromstring(content, _XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    try:
        if root.tag == "rss" and root.get("version", "").startswith(("2.", "0.9")):
            return [_rss_entry(item, url) for item in root.iterfind("channel/item")]
        if root.tag == f"{ATOM}feed":
            return [_atom_entry(e, url) for e in root.iterfind(f"{ATOM}entry")]
    except _Decline:
        return None
    return None


def _enclosure(url: str | None, kind: str | None, length: Any) -> Enclosure:
    size = str(length or "").strip()
    return Enclosure(url or "", kind or "", int(size) if size.isdigit() else None)


def _text(node: Any) -> str:
    if node is None:
        return ""
    if len(node):  # markup where text was expected: let feedparser interpret it
        raise _Decline
    return (node.text or "").strip()


def _rss_entry(item: Any, url: str) -> RawEntry:
    if item.get(XML_BASE) is not None:
        raise _Decline
    description = _text(item.find("description"))
    encoded = _text(item.find(CONTENT_ENCODED))
    enclosures = [
        _enclosure(node.get("url"), node.get("type"), node.get("length"))
        for node in item.iterfind("enclosure")
    ]
    guid = _text(item.find("guid"))
    return RawEntry(
        id=guid,
        title=_text(item.find("title")),
        link=_text(item.find("link")) or (guid if guid.startswith("http") else None),
        body=encoded or description,
        base=url,
        summary=description if encoded else "",
        author=_text(item.find(DC_CREATOR)) or _text(item.find("author")),
        categories=[_text(c) for c in item.iterfind("category") if _text(c)],
        published=_rfc822(_text(item.find("pubDate"))),
        enclosures=enclosures,
    )


def _atom_entry(entry: Any, url: str) -> RawEntry:
    if entry.get(XML_BASE) is not None:
        raise _Decline
    content = entry.find(f"{ATOM}content")
    summary = entry.find(f"{ATOM}summary")
    body_node = content if content is not None else summary
    link, enclosures = None, []
    for node in entry.iterfind(f"{ATOM}link"):
        rel = node.get("rel", "alternate")
        if rel == "alternate" and link is None:
            link = node.get("href")
        elif rel == "enclosure":
            enclosures.append(_enclosure(node.get("href"), node.get("type"), node.get("length")))
    return RawEntry(
        id=_text(entry.find(f"{ATOM}id")),
        title=_atom_text(entry.find(f"{ATOM}title")),
        link=link,
        body=_atom_html(body_node),
        base=url,
        summary=_atom_html(summary) if content is not None else "",
        author=_text(entry.find(f"{ATOM}author/{ATOM}name")),
        categories=[c.get("term", "") for c in entry.iterfind(f"{ATOM}category") if c.get("term")],
        published=_iso_date(
            _text(entry.find(f"{ATOM}published")) or _text(entry.find(f"{ATOM}updated"))
        ),
        enclosures=enclosures,
    )


def _atom_html(node: Any) -> str:
    if node is None:
        return ""
    kind = node.get("type", "text")
    if kind in ("html", "text/html"):
        return _text(node)
    if kind in ("text", "text/plain"):
        return html.escape(_text(node)).replace("\n", "<br>")
    raise _Decline  # xhtml and media types: feedparser knows them


def _atom_text(node: Any) -> str:
    if node is None:
        return ""
    if node.get("type", "text") not in ("text", "html", "text/plain", "text/html"):
        raise _Decline
    return _text(node)


def _rfc822(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return _any_date(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _any_date(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _any_date(value: str) -> datetime | None:
    """feedparser's date parsers know every format feeds have used."""
    import feedparser  # loaded only when a feed needs it: most take the fast path

    parsed = feedparser.datetimes._parse_date(value)  # noqa: SLF001
    return _from_struct(parsed)


def _from_struct(parsed: Any) -> datetime | None:
    if not parsed:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


# -- feedparser path --------------------------------------------------------------------------


def feedparser_entries(fetched: FetchResult) -> list[RawEntry]:
    import feedparser

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
        text = str(reason).strip() or type(reason).__name__
        raise SourceError(f"not a valid feed: {text[:300]}")
    return [_from_feedparser(entry, fetched.url) for entry in parsed.entries]


def _from_feedparser(entry: Any, feed_url: str) -> RawEntry:
    detail = entry.content[0] if entry.get("content") else entry.get("summary_detail")
    body, base = "", feed_url
    if detail is not None:
        body = detail.get("value") or ""
        if detail.get("type") == "text/plain":
            body = html.escape(body).replace("\n", "<br>")
        base = detail.get("base") or feed_url
        if base.lower().startswith("file:") and not feed_url.lower().startswith("file:"):
            base = feed_url  # a remote document cannot make its links local (xml:base)
    enclosures = [
        _enclosure(link.get("href"), link.get("type"), link.get("length"))
        for link in entry.get("enclosures", [])
    ]
    return RawEntry(
        id=str(entry.get("id") or "").strip(),
        title=entry.get("title", ""),
        link=entry.get("link"),
        body=body,
        base=base,
        summary=entry.get("summary", "") if entry.get("content") else "",
        author=entry.get("author", ""),
        categories=[t["term"] for t in entry.get("tags", []) if t.get("term")],
        published=_from_struct(entry.get("published_parsed") or entry.get("updated_parsed")),
        enclosures=enclosures,
    )


# -- one item builder -------------------------------------------------------------------------


def build_item(entry: RawEntry) -> Item:
    clean = sanitize_html(entry.body, entry.base)
    text = html_to_text(clean)
    title = plain_text(entry.title) or summarize(text, 40) or "(无标题)"
    summary = summarize(plain_text(entry.summary), 200) if entry.summary else summarize(text)
    link = safe_url(entry.link, entry.base)
    guid = entry.id or link or _fallback_guid(entry, title)
    enclosures = [
        Enclosure(url, e.type, e.length)
        for e in entry.enclosures
        if (url := safe_url(e.url, entry.base))
    ]
    return Item(
        guid=guid[:1000],
        title=title[:500],
        url=link,
        summary=summary,
        content_html=clean,
        text=text,
        images=image_urls(clean) + [e.url for e in enclosures if e.type.startswith("image/")],
        enclosures=enclosures,
        author=plain_text(entry.author)[:200],
        categories=[c for c in (plain_text(c) for c in entry.categories) if c],
        published_at=to_iso(entry.published) if entry.published else None,
        content_hash=content_hash(title, text),
    )


def _fallback_guid(entry: RawEntry, title: str) -> str:
    published = to_iso(entry.published) if entry.published else ""
    seed = f"{title}|{published}|{entry.body[:200]}"
    return "sha1:" + hashlib.sha1(seed.encode("utf-8", "replace")).hexdigest()
