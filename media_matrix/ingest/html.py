"""Sites without a feed (科普中原 publishes list pages): a list page plus article pages.

CSS selectors from config pick items, links, titles, dates and the article body. Pages are
decoded by HTTP charset, then the page's own meta charset, then UTF-8, then GB18030 (a
superset of GBK and GB2312, which Chinese government sites still use).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bs4 import BeautifulSoup, Tag

from media_matrix.config import FeedConfig
from media_matrix.ingest.clean import (
    content_hash,
    html_to_text,
    image_urls,
    plain_text,
    safe_url,
    sanitize_html,
    summarize,
)
from media_matrix.ingest.fetch import FetchError, FetchResult
from media_matrix.ingest.source import SourceResult
from media_matrix.models import Item
from media_matrix.timeutil import to_iso

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_-]+)""", re.I)
_CHINESE_ALIASES = {
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "x-gbk": "gb18030",
}
_DATE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:\s+(\d{1,2}):(\d{2}))?"
)


def decode_page(content: bytes, header_charset: str | None, forced: str | None = None) -> str:
    """Decode a page with the first charset that decodes it cleanly."""
    sniffed = _META_CHARSET.search(content[:4096])
    candidates = [forced, header_charset, sniffed.group(1).decode() if sniffed else None]
    candidates += ["utf-8", "gb18030"]
    for name in candidates:
        if not name:
            continue
        codec = _CHINESE_ALIASES.get(name.lower(), name)
        try:
            return content.decode(codec)
        except (LookupError, UnicodeDecodeError):
            continue
    return content.decode("utf-8", errors="replace")


def parse_date(text: str, tz: ZoneInfo) -> str | None:
    """'2026-11-05', '2026年11月5日 08:30' -> ISO UTC; dates on pages are local time."""
    match = _DATE.search(text or "")
    if not match:
        return None
    year, month, day, hour, minute = (int(g) if g else 0 for g in match.groups())
    try:
        return to_iso(datetime(year, month, day, hour, minute, tzinfo=tz))
    except ValueError:
        return None


@dataclass
class ListEntry:
    url: str
    title: str
    date: str | None

    @property
    def label(self) -> str:
        return f"{self.title}|{self.date or ''}"


def parse_list(page: FetchResult, feed: FeedConfig, tz: ZoneInfo) -> list[ListEntry]:
    return _list_page(page, feed, tz, feed.max_items)[0]


def _list_page(
    page: FetchResult, feed: FeedConfig, tz: ZoneInfo, room: int
) -> tuple[list[ListEntry], str | None]:
    """A list page's entries (at most ``room``) and its next page's URL when it names one on
    the same site (scheme, host and port of the page itself; a local file stays local)."""
    assert feed.selectors is not None
    selectors = feed.selectors
    soup = BeautifulSoup(decode_page(page.content or b"", page.charset, feed.encoding), "lxml")
    return _entries(soup, page, feed, tz, room), _next_page(soup, page, selectors.next_page)


def _next_page(soup: BeautifulSoup, page: FetchResult, selector: str | None) -> str | None:
    node = soup.select_one(selector) if selector else None
    if node is not None and not _is_link(node):
        node = node.select_one("a[href]")
    url = safe_url(str(node.get("href")), page.url) if node is not None else None
    if not url or urlsplit(url)[:2] != urlsplit(page.url)[:2]:
        return None
    return url.split("#", 1)[0]


def _entries(
    soup: BeautifulSoup, page: FetchResult, feed: FeedConfig, tz: ZoneInfo, room: int
) -> list[ListEntry]:
    assert feed.selectors is not None
    selectors = feed.selectors
    entries: dict[str, ListEntry] = {}
    for node in soup.select(selectors.item):
        link = node if _is_link(node) else node.select_one(selectors.link)
        href = link.get("href") if link is not None else None
        url = safe_url(str(href), page.url) if href else None
        if not url or url in entries:
            continue
        title_node = node.select_one(selectors.title) if selectors.title else link
        date_node = node.select_one(selectors.date) if selectors.date else None
        entries[url] = ListEntry(
            url=url,
            title=plain_text(title_node.get_text(" ") if title_node else ""),
            date=parse_date(date_node.get_text(" "), tz) if date_node else None,
        )
        if len(entries) >= room:
            break
    return list(entries.values())


def _is_link(node: Tag) -> bool:
    return node.name == "a" and node.has_attr("href")


def parse_article(page: FetchResult, entry: ListEntry, feed: FeedConfig) -> Item:
    assert feed.selectors is not None
    selectors = feed.selectors
    soup = BeautifulSoup(decode_page(page.content or b"", page.charset, feed.encoding), "lxml")
    body = soup.select_one(selectors.body)
    if body is None:
        raise ValueError(f"no element matches the body selector {selectors.body!r}")
    title = entry.title
    if selectors.article_title and (node := soup.select_one(selectors.article_title)):
        title = plain_text(node.get_text(" ")) or title
    clean = sanitize_html(body.decode_contents(), page.url)
    text = html_to_text(clean)
    title = title or summarize(text, 40) or "(无标题)"
    return Item(
        guid=entry.url,
        title=title[:500],
        url=entry.url,
        summary=summarize(text),
        content_html=clean,
        text=text,
        images=image_urls(clean),
        published_at=entry.date,
        content_hash=content_hash(title, text),
        county=feed.county,
        label=entry.label,
    )


def list_entries(
    listing: FetchResult,
    feed: FeedConfig,
    tz: ZoneInfo,
    known: dict[str, str],
    fetch_page: Callable[[str], FetchResult],
) -> list[ListEntry]:
    """The entries of the list page and of the pages its next-page links lead to: same site
    only, through ``fetch_page`` (the guarded fetch), at most ``selectors.max_pages`` pages and
    ``max_items`` entries, never a page twice, and no further than a page with nothing new."""
    assert feed.selectors is not None
    entries: dict[str, ListEntry] = {}
    seen = {listing.url.split("#", 1)[0]}
    page = listing
    for number in range(1, feed.selectors.max_pages + 1):
        found, next_url = _list_page(page, feed, tz, feed.max_items - len(entries))
        new = [e for e in found if e.url not in entries]
        entries.update((e.url, e) for e in new)
        if not any(known.get(e.url) != e.label for e in new):
            break  # nothing new here: the older pages were read before
        if number == feed.selectors.max_pages or len(entries) >= feed.max_items:
            break
        if next_url is None or next_url in seen:
            break
        seen.add(next_url)
        try:
            page = fetch_page(next_url)
        except FetchError:
            break  # the entries read so far still count; the next poll tries again
    return list(entries.values())


def read_site(
    listing: FetchResult,
    feed: FeedConfig,
    tz: ZoneInfo,
    known: dict[str, str],
    fetch_page: Callable[[str], FetchResult],
    workers: int = 4,
) -> SourceResult:
    """Parse the list page, then fetch and parse the article pages not seen before, or shown
    differently on the list than last time (``known``: url -> label; a retitled or redated
    entry is re-read, and its pack updated if the article changed)."""
    entries = list_entries(listing, feed, tz, known, fetch_page)
    result = SourceResult(etag=listing.etag, last_modified=listing.last_modified)
    fresh = [e for e in entries if known.get(e.url) != e.label]
    result.known = [e.url for e in entries if known.get(e.url) == e.label]

    def load(entry: ListEntry) -> Item | tuple[str, str]:
        try:
            return parse_article(fetch_page(entry.url), entry, feed)
        except (FetchError, ValueError) as exc:
            return (entry.url, str(exc))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(fresh) or 1))) as pool:
        for outcome in pool.map(load, fresh):
            if isinstance(outcome, Item):
                result.items.append(outcome)
            else:
                result.item_errors.append(outcome)
    return result
