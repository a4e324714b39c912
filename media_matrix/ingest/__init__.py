"""Ingest: fetch -> parse -> sanitize -> dedupe -> store, one feed failing alone.

``run_ingest`` is the service the CLI and the daemon call. Decisions that need no I/O
(backoff, how an item relates to what is stored) are small pure functions here.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from media_matrix.config import FeedConfig, Settings
from media_matrix.errortext import error_phrase
from media_matrix.ingest.source import SourceError, SourceResult
from media_matrix.models import TOPICS, IngestOutcome, Item, Pack, PackStatus, Tag
from media_matrix.redact import redact_url
from media_matrix.retag import item_tagger
from media_matrix.review import content_changed
from media_matrix.store import Store
from media_matrix.timeutil import from_iso, to_iso, utcnow

if TYPE_CHECKING:  # the readers (requests, feedparser, lxml, nh3) load when a feed is read,
    # so a command that only shows feeds' state (status, feeds list) does not pay for them
    import requests

    from media_matrix.ingest.fetch import FetchOptions, FetchResult

log = logging.getLogger(__name__)

# How a stored item error reads when the item was stored, corrected (see vet.py).
CORRECTED = "已修正: "
# Short or empty bodies hash alike by accident; only a real article body identifies a pack.
MIN_TEXT_FOR_HASH_MATCH = 30


class ItemTagger(Protocol):
    """Anything that turns a stored item into rule tags (see tagging.py)."""

    def __call__(self, item: Item) -> list[Tag]: ...


@dataclass
class FeedReport:
    feed: str
    kind: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    not_modified: bool = False
    skipped: bool = False  # not due yet (backing off or interval not elapsed)
    error: str | None = None  # the raw detail (stored, logged, --json)
    error_text: str | None = None  # what people read: errortext.error_phrase
    item_errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # items fixed at ingest
    new_pack_ids: list[int] = field(default_factory=list)
    changed_pack_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "feed": self.feed,
            "kind": self.kind,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "merged": self.merged,
            "not_modified": self.not_modified,
            "skipped": self.skipped,
            "error": self.error,
            "error_text": self.error_text,
            "item_errors": [{"item": s, "error": e} for s, e in self.item_errors],
            "warnings": [{"item": s, "warning": w} for s, w in self.warnings],
        }


@dataclass
class IngestReport:
    feeds: list[FeedReport] = field(default_factory=list)

    @property
    def new_pack_ids(self) -> list[int]:
        return [i for f in self.feeds for i in f.new_pack_ids]

    @property
    def failed(self) -> list[FeedReport]:
        return [f for f in self.feeds if f.failed]


# -- pure decisions ---------------------------------------------------------------------------


def next_fetch_delay(
    every: float, failures: int, *, retry_after: float | None = None, cap: float = 86400.0
) -> float:
    """Seconds until the next fetch: the interval, doubled per consecutive failure, capped;
    never sooner than a server's Retry-After."""
    delay = every if failures <= 0 else min(cap, every * 2 ** (failures - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def is_due(next_fetch_at: str | None, now: datetime) -> bool:
    when = from_iso(next_fetch_at)
    return when is None or when <= now


# -- the loop ---------------------------------------------------------------------------------


def run_ingest(
    settings: Settings,
    store: Store,
    *,
    feeds: Iterable[str] | None = None,
    due_only: bool = False,
    now: datetime | None = None,
    tagger: ItemTagger | None = None,
    progress: Callable[[FeedReport], None] | None = None,
    session: requests.Session | None = None,
) -> IngestReport:
    """Ingest the named feeds (default: every enabled feed); one feed's failure stays its own.

    Fetching and parsing run in a small thread pool; storing is serialized. New and changed
    packs are tagged as they are stored (``tagger`` defaults to the configured rules).
    """
    now = now or utcnow()
    tagger = tagger or item_tagger(settings)
    wanted = [settings.feed(name) for name in feeds] if feeds else settings.feeds
    if not feeds:
        wanted = [f for f in wanted if f.enabled]
    store.sync_feeds([(f.name, f.kind, f.url) for f in wanted])
    states = {s["name"]: s for s in store.list_feed_states()}
    report = IngestReport()
    due = []
    for feed in wanted:
        if due_only and not is_due(states[feed.name]["next_fetch_at"], now):
            skipped = FeedReport(feed.name, feed.kind, skipped=True)
            report.feeds.append(skipped)
            if progress:
                progress(skipped)
            continue
        due.append(feed)
    if not due:  # a cron `ingest --due` between polls: no HTTP client to load
        return report
    from media_matrix.httpclient import make_session
    from media_matrix.ingest.fetch import FetchError, FetchOptions

    options = FetchOptions(
        user_agent=settings.ingest.user_agent,
        connect_timeout=settings.ingest.connect_timeout,
        read_timeout=settings.ingest.read_timeout,
        max_bytes=settings.ingest.max_bytes,
        deadline=settings.ingest.deadline,
        max_redirects=settings.ingest.max_redirects,
        network=settings.network.policy,
    )
    http = session or make_session(settings.ingest.workers * 2, network=settings.network.policy)

    def read(feed: FeedConfig) -> SourceResult | Exception:
        try:
            return _read_source(settings, store, feed, states[feed.name], options, http)
        except (SourceError, FetchError) as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - one feed must never stop the others
            log.exception("feed %s: unexpected error while reading", feed.name)
            return SourceError(f"unexpected {type(exc).__name__}: {exc}")

    workers = max(1, min(settings.ingest.workers, len(due)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for feed, outcome in zip(due, pool.map(read, due), strict=True):
            try:
                feed_report = _record(settings, store, feed, outcome, now, tagger)
            except Exception as exc:  # noqa: BLE001 - storing one feed must not stop the others
                log.exception("feed %s: unexpected error while storing", feed.name)
                error = SourceError(f"unexpected {type(exc).__name__} while storing: {exc}")
                feed_report = _record(settings, store, feed, error, now, tagger)
            report.feeds.append(feed_report)
            if progress:
                progress(feed_report)
    return report


def _read_source(
    settings: Settings,
    store: Store,
    feed: FeedConfig,
    state: dict[str, object],
    options: FetchOptions,
    http: requests.Session,
) -> SourceResult:
    # each reader loads with the first feed of its kind that has something to read
    from media_matrix.ingest.fetch import FetchError, fetch, is_local, local_path

    if feed.kind == "packdir":
        from media_matrix.ingest.packdir import PackCaps, read_packdir

        media_root = settings.database.parent / "packs" / feed.name
        caps = PackCaps(
            max_body_bytes=settings.ingest.pack_max_body_bytes,
            max_files=settings.ingest.pack_max_files,
            max_bytes=settings.ingest.pack_max_bytes,
        )
        return read_packdir(local_path(feed.url), media_root, feed.county, settings.tz, caps)
    fetched = fetch(
        feed.url,
        options,
        etag=state.get("etag"),  # type: ignore[arg-type]
        last_modified=state.get("last_modified"),  # type: ignore[arg-type]
        session=http,
    )
    if fetched.not_modified:
        return SourceResult(
            not_modified=True, etag=fetched.etag, last_modified=fetched.last_modified
        )
    # a feed the operator gave as a local file may name files beside it, nothing else may
    root = str(local_path(feed.url).resolve().parent) if is_local(feed.url) else None
    if feed.kind == "rss":
        from media_matrix.ingest.rss import parse_feed

        items = parse_feed(fetched, feed.max_items)
        for item in items:
            item.county = feed.county
            item.local_root = root
        return SourceResult(items=items, etag=fetched.etag, last_modified=fetched.last_modified)
    from media_matrix.ingest.clean import local_file_inside
    from media_matrix.ingest.html import read_site

    known = store.feed_guid_labels(feed.name)

    def fetch_page(url: str) -> FetchResult:
        if is_local(url) and not local_file_inside(url, root):
            raise FetchError(f"{url[:200]} is a local file outside the feed's own folder")
        return fetch(url, options, session=http)

    result = read_site(fetched, feed, settings.tz, known, fetch_page, settings.ingest.workers)
    for item in result.items:
        item.local_root = root
    return result


def _record(
    settings: Settings,
    store: Store,
    feed: FeedConfig,
    outcome: SourceResult | Exception,
    now: datetime,
    tagger: ItemTagger,
) -> FeedReport:
    report = FeedReport(feed.name, feed.kind)
    at = to_iso(now) or ""
    if isinstance(outcome, Exception):
        report.error = str(outcome) or type(outcome).__name__
        report.error_text = error_phrase(outcome)
        failures = (store.get_feed_state(feed.name) or {}).get("failures", 0) + 1  # type: ignore[operator]
        delay = next_fetch_delay(
            feed.every,
            failures,
            retry_after=getattr(outcome, "retry_after", None),
            cap=settings.ingest.max_backoff,
        )
        store.record_fetch_error(
            feed.name,
            at=at,
            error=report.error,
            next_fetch_at=to_iso(now + timedelta(seconds=delay)) or "",
        )
        return report
    report.not_modified = outcome.not_modified
    warnings = _vet_items(settings, outcome.items, now)
    noted: dict[str, list[str]] = {}
    for guid, note in warnings:
        noted.setdefault(guid, []).append(note)
    trust = _trust_table(settings)
    with store.transaction():
        changed = _store_items(store, feed, outcome.items, at, report, trust)
        if outcome.known:
            store.touch_sources(feed.name, outcome.known, at)
            report.unchanged += len(outcome.known)
        for subject, error in outcome.item_errors:
            store.record_item_error(feed.name, subject, error, at)
        failing = {e["subject"] for e in store.item_errors(feed.name)}
        for item in outcome.items:
            if item.guid in failing:  # it ingests cleanly now
                store.resolve_item_error(feed.name, item.guid)
        for subject, notes in noted.items():  # shown in `feeds list` while the source needs it
            store.record_item_error(feed.name, subject, CORRECTED + "; ".join(notes), at)
        store.record_fetch_ok(
            feed.name,
            at=at,
            next_fetch_at=to_iso(now + timedelta(seconds=feed.every)) or "",
            etag=outcome.etag,
            last_modified=outcome.last_modified,
            # what this fetch saw (new, changed, known and bad items); a 304 keeps the last
            items=None
            if outcome.not_modified
            else len(outcome.items) + len(outcome.known or ()) + len(outcome.item_errors),
        )
        store.replace_rule_tags_many([(pack_id, tagger(item)) for pack_id, item in changed], at=at)
    report.item_errors = outcome.item_errors
    report.warnings = warnings
    return report


def _vet_items(settings: Settings, items: list[Item], now: datetime) -> list[tuple[str, str]]:
    """Every item through the last check (vet.py), fixed in place; (guid, correction) pairs."""
    if not items:  # a 304 or an empty feed: nothing to load the checks for
        return []
    from media_matrix.ingest.vet import VetRules, vet_item

    rules = VetRules(
        now=now,
        future_skew=settings.ingest.future_skew,
        topics=frozenset(settings.topics or TOPICS),
    )
    return [(item.guid, note) for item in items for note in vet_item(item, rules)]


def _trust_table(settings: Settings) -> Callable[[str | None], int]:
    levels = {f.name: f.trust_level for f in settings.feeds}
    return lambda name: levels.get(name or "", 0)


def _store_items(
    store: Store,
    feed: FeedConfig,
    items: list[Item],
    at: str,
    report: FeedReport,
    trust: Callable[[str | None], int],
) -> list[tuple[int, Item]]:
    """Store every item, counting outcomes; returns the (pack id, item) pairs that changed."""
    if not items:
        return []
    known = store.feed_guid_hashes(feed.name)
    changed: list[tuple[int, Item]] = []
    for item in items:
        outcome, pack_id = _store_item(store, feed, item, known, at, trust)
        setattr(report, outcome.value, getattr(report, outcome.value) + 1)
        if outcome is IngestOutcome.NEW:
            report.new_pack_ids.append(pack_id)
        if outcome in (IngestOutcome.NEW, IngestOutcome.UPDATED):
            report.changed_pack_ids.append(pack_id)
            changed.append((pack_id, item))
        known[item.guid] = item.content_hash
    return changed


def _store_item(
    store: Store,
    feed: FeedConfig,
    item: Item,
    known: dict[str, str],
    at: str,
    trust: Callable[[str | None], int],
) -> tuple[IngestOutcome, int]:
    """Dedupe by (feed, guid), else link, else content hash; then insert, update or merge.

    A pack holds the text of its most trusted source: a feed of lower trust than the one whose
    text a pack holds only adds itself as a source; a more trusted one's text replaces it.
    """
    if item.guid in known:
        source = store.source_of(feed.name, item.guid)
        assert source is not None
        pack_id = source["pack_id"]
        if known[item.guid] == item.content_hash:
            if item.label:  # re-read because the list showed it differently: keep the new label
                store.add_source(pack_id, feed.name, item, at=at)
            else:
                store.touch_sources(feed.name, [item.guid], at)
            return IngestOutcome.UNCHANGED, pack_id
        if trust(feed.name) < trust(store.content_feed(pack_id)):
            store.add_source(pack_id, feed.name, item, at=at)  # its text is not the pack's
            return IngestOutcome.UNCHANGED, pack_id
        _replace_content(store, pack_id, feed, item, at)
        return IngestOutcome.UPDATED, pack_id
    pack_id = item.url and store.pack_id_by_url(item.url)
    if not pack_id and len(item.text) >= MIN_TEXT_FOR_HASH_MATCH:
        pack_id = store.pack_id_by_hash(item.content_hash)
    if pack_id:
        if trust(feed.name) > trust(store.content_feed(pack_id)):
            _replace_content(store, pack_id, feed, item, at)  # the trusted text wins
            return IngestOutcome.UPDATED, pack_id
        store.add_source(pack_id, feed.name, item, at=at)
        return IngestOutcome.MERGED, pack_id
    status = PackStatus.APPROVED if feed.auto_approve else PackStatus.NEW
    return IngestOutcome.NEW, store.insert_pack(feed.name, item, at=at, status=status)


def _replace_content(store: Store, pack_id: int, feed: FeedConfig, item: Item, at: str) -> None:
    """``feed``'s item becomes the pack's content; the change is recorded with a readable diff
    and, if the pack was approved, reviewed again (see review.content_changed)."""
    old = store.get_pack(pack_id)
    diff = content_diff(old, item)
    store.update_pack_content(pack_id, feed.name, item, at=at, diff=diff)
    content_changed(store, pack_id, feed=feed.name, auto_approve=feed.auto_approve, diff=diff)


def content_diff(old: Pack, new: Item) -> str:
    """A unified diff of title, summary and text, the way an editor reads a change."""
    lines: list[str] = []
    for name in ("title", "summary", "text"):
        before = str(getattr(old, name) or "").splitlines()
        after = str(getattr(new, name) or "").splitlines()
        lines += difflib.unified_diff(before, after, f"{name} (旧)", f"{name} (新)", lineterm="")
    return "\n".join(lines)


def feed_health(enabled: bool, state: dict[str, Any]) -> str:
    """disabled | never (not fetched yet) | failing | ok."""
    if not enabled:
        return "disabled"
    if not state.get("last_fetch_at"):
        return "never"
    return "failing" if state.get("failures") else "ok"


def feed_overview(settings: Settings, store: Store) -> list[dict[str, Any]]:
    """Every configured feed with its stored fetch state, health and unresolved item errors."""
    states = {s["name"]: s for s in store.list_feed_states()}
    pack_counts = store.pack_counts_by_feed()
    errors: dict[str, list[dict[str, str]]] = {}
    for row in store.item_errors():
        errors.setdefault(row["feed"], []).append(
            {"item": row["subject"], "error": row["error"], "at": row["at"]}
        )
    rows = []
    for feed in settings.feeds:
        state = states.get(feed.name, {})
        rows.append(
            {
                "name": feed.name,
                "kind": feed.kind,
                "url": redact_url(feed.url),  # a feed URL may carry a token
                "enabled": feed.enabled,
                "health": feed_health(feed.enabled, state),
                "auto_approve": feed.auto_approve,
                "trust": feed.trust_level,
                "every_seconds": feed.every,
                "last_fetch_at": state.get("last_fetch_at"),
                "last_success_at": state.get("last_success_at"),
                "last_error": state.get("last_error"),
                "error_text": error_phrase(state.get("last_error")),
                "failures": state.get("failures", 0),
                "next_fetch_at": state.get("next_fetch_at"),
                "items_last_fetch": state.get("items_seen", 0),  # the column keeps its name
                "packs": pack_counts.get(feed.name, 0),
                "etag": state.get("etag"),
                "last_modified": state.get("last_modified"),
                "item_errors": errors.get(feed.name, []),
            }
        )
    return rows
