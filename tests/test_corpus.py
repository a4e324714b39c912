"""feedparser's 2,106-feed corpus ingests from local paths: no unhandled exception, every file
ingested or recorded as a failed feed with a reason, and nothing dangerous stored."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from media_matrix.config import FeedConfig, Settings
from media_matrix.ingest import run_ingest
from media_matrix.ingest.fetch import FetchResult
from media_matrix.ingest.rss import parse_feed
from media_matrix.ingest.source import SourceError
from media_matrix.store import open_store

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "feedparser"
DANGEROUS_URL = re.compile(r"^\s*(javascript|vbscript|data):", re.I)


# CI lays shared/ beside the clone: there the corpus must run, never be skipped.
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir() and os.environ.get("CI") != "true", reason="shared corpus not present"
)


def corpus_files() -> list[Path]:
    assert CORPUS.is_dir(), f"the feedparser corpus is missing at {CORPUS}"
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in {".xml", ".rdf"})


@needs_corpus
def test_whole_feedparser_corpus(tmp_path):
    files = corpus_files()
    assert len(files) >= 2000
    feeds = [FeedConfig(name=f"c{i:04d}", kind="rss", url=str(p)) for i, p in enumerate(files)]
    settings = Settings(path=tmp_path / "config.yaml", database=tmp_path / "corpus.db", feeds=feeds)
    store = open_store(settings.database)
    report = run_ingest(settings, store)
    assert len(report.feeds) == len(files)
    failed = report.failed
    for feed in failed:
        assert feed.error and feed.error.strip()
    states = {s["name"]: s for s in store.list_feed_states()}
    assert all(states[f.feed]["last_error"] for f in failed)
    ok = [f for f in report.feeds if not f.failed]
    assert len(ok) > len(files) * 0.9, f"only {len(ok)} of {len(files)} ingested"
    print(
        f"\ncorpus: {len(ok)} ingested, {len(failed)} failed, "
        f"{sum(f.new for f in report.feeds)} new packs"
    )

    rows = store.query("SELECT id, title, summary, content_html, text, url FROM packs")
    assert rows
    for row in rows:
        assert_harmless(row, row["id"])
    store.close()


@needs_corpus
def test_every_corpus_item_is_cleaned_before_dedupe():
    """Dedupe keeps one copy of look-alike items; check every parsed item, not just those."""
    checked = 0
    for path in corpus_files():
        fetched = FetchResult(url=path.as_uri(), content=path.read_bytes())
        try:
            items = parse_feed(fetched)
        except SourceError:
            continue
        for item in items:
            assert_harmless(vars(item), path.name)
            checked += 1
    assert checked > 1000


def assert_harmless(row: dict, where: object) -> None:
    for field in ("title", "summary", "text"):
        assert "<script" not in row[field].lower(), (where, field)
    soup = BeautifulSoup(row["content_html"], "lxml")
    assert soup.find(["script", "style", "iframe", "object", "embed"]) is None, where
    for tag in soup.find_all(True):
        for attr, value in tag.attrs.items():
            assert not attr.lower().startswith("on"), (where, tag.name, attr)
            for v in value if isinstance(value, list) else [value]:
                assert not DANGEROUS_URL.match(v), (where, tag.name, attr, v)
    assert not DANGEROUS_URL.match(row["url"] or "")
