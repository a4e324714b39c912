"""Ingest benchmark: a generated 1,000-item feed served on loopback.

Times our full ingest (fetch, parse, sanitize, dedupe, store) against lemon24's `reader`
updating the same feed in the same run, and a re-poll of the unchanged feed.

    python bench/ingest.py [--items 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("READER_NO_VENDORED_FEEDPARSER", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from feedserver import FeedServer  # noqa: E402

from media_matrix.config import FeedConfig, NetworkConfig, Settings  # noqa: E402
from media_matrix.ingest import run_ingest  # noqa: E402
from media_matrix.store import open_store  # noqa: E402

WORDS = [
    "科学",
    "施肥",
    "小麦",
    "老人",
    "防诈骗",
    "青少年",
    "近视",
    "消防",
    "安全",
    "生产",
    "节水",
    "气象",
    "预警",
    "人工智能",
    "芯片",
    "健康",
    "饮食",
]


def body(rng: random.Random) -> str:
    paragraphs = []
    while sum(len(p) for p in paragraphs) < 2000:
        sentence = "".join(rng.choice(WORDS) for _ in range(12))
        paragraphs.append(
            f"<p>{sentence}，<strong>{rng.choice(WORDS)}</strong>。"
            f'<a href="/detail/{rng.randint(1, 9999)}">详情</a></p>'
        )
    paragraphs.append('<img src="/img/pic.png" alt="配图"><script>track()</script>')
    return "".join(paragraphs)


def generate_feed(n: int) -> bytes:
    rng = random.Random(42)
    items = []
    for i in range(n):
        title = "".join(rng.choice(WORDS) for _ in range(5)) + f"（第{i}期）"
        items.append(
            f"<item><title>{title}</title><link>https://www.kepuchina.cn/a/{i}</link>"
            f'<guid isPermaLink="false">kp-{i}</guid>'
            f"<pubDate>Mon, 02 Nov 2026 08:00:00 +0800</pubDate><category>健康</category>"
            f"<description><![CDATA[{body(rng)}]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>科普中国</title>'
        "<link>https://www.kepuchina.cn/</link>" + "".join(items) + "</channel></rss>"
    ).encode()


def ours(url: str, folder: Path) -> tuple[float, float, int]:
    settings = Settings(
        path=folder / "config.yaml",
        database=folder / "ours.db",
        feeds=[FeedConfig(name="bench", kind="rss", url=url, max_items=100_000)],
        network=NetworkConfig(allow=["127.0.0.1"]),  # the loopback FeedServer
    )
    store = open_store(settings.database)
    start = time.perf_counter()
    report = run_ingest(settings, store)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = run_ingest(settings, store)
    repoll = time.perf_counter() - start
    assert again.feeds[0].not_modified, again.feeds[0]
    store.close()
    return first, repoll, report.feeds[0].new


def theirs(url: str, folder: Path) -> tuple[float, int]:
    from reader import make_reader

    reader = make_reader(str(folder / "reader.db"))
    reader.add_feed(url)
    start = time.perf_counter()
    reader.update_feeds()
    elapsed = time.perf_counter() - start
    count = reader.get_entry_counts().total
    reader.close()
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N, each side alike")
    args = parser.parse_args()
    feed = generate_feed(args.items)
    server = FeedServer()
    server.add(
        "/feed.xml", body=feed, etag='"bench-1"', headers={"Content-Type": "application/rss+xml"}
    )
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = server.url("/feed.xml")
            runs, reader_runs = [], []
            for n in range(args.rounds):  # interleaved, each in a fresh database
                folder = Path(tmp) / str(n)
                folder.mkdir()
                runs.append(ours(url, folder))
                reader_runs.append(theirs(url, folder))
            first, repoll, stored = min(runs)
            reader_time, reader_count = min(reader_runs)
    finally:
        server.stop()
    print(f"feed: {args.items} items, {len(feed) / 1e6:.1f} MB; best of {args.rounds} rounds")
    print(f"ours   first ingest : {first:.3f} s ({stored} packs)")
    print(f"reader first update : {reader_time:.3f} s ({reader_count} entries)")
    print(f"speed-up vs reader  : {reader_time / first:.1f}x (target >= 5x)")
    print(
        f"ours   re-poll      : {repoll * 1000:.1f} ms = {repoll / first:.2%} of first ingest "
        "(target < 2%)"
    )


if __name__ == "__main__":
    main()
