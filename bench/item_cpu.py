"""Per-item CPU benchmark: the pure work an ingest does for each item, in one process.

    python3 bench/item_cpu.py [--items 1000] [--rounds 5]

On bench/ingest.py's generated feed (about 2,000 characters of Chinese HTML per item), parsed
once, times three stages: ``build_item`` (sanitize, text, summary, hash, links and images),
``vet_item`` (the last check, rules as ``ingest._vet_items`` builds them) and the rule tagger
of the default config (``retag.item_tagger``). The baseline, in the same run, is feedparser's
own HTML sanitizer on the same bodies, one of the steps lemon24/reader takes per item. Best of
``--rounds`` interleaved rounds; the ratio is baseline / our three stages together.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from feedparser.sanitizer import _sanitize_html  # noqa: E402
from ingest import generate_feed  # noqa: E402

from media_matrix.config import Settings, load_rules  # noqa: E402
from media_matrix.ingest.rss import RawEntry, build_item, fast_entries  # noqa: E402
from media_matrix.ingest.vet import VetRules, vet_item  # noqa: E402
from media_matrix.models import TOPICS, Item  # noqa: E402
from media_matrix.retag import item_tagger  # noqa: E402


def default_settings() -> Settings:
    """Settings of a config without inline rules: the rules shipped with the package."""
    settings = Settings(path=ROOT / "config.yaml")
    settings.groups, settings.topics = load_rules(settings)
    return settings


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def one_round(
    entries: list[RawEntry], rules: VetRules, tag: Callable[[Item], object]
) -> dict[str, float]:
    items: list[Item] = []
    getattr(urlsplit, "cache_clear", lambda: None)()  # an ingest meets each link once: cold
    return {
        "build_item": timed(lambda: items.extend(build_item(e) for e in entries)),
        "vet_item": timed(lambda: [vet_item(item, rules) for item in items]),
        "tagger": timed(lambda: [tag(item) for item in items]),
        "baseline": timed(lambda: [_sanitize_html(e.body, "utf-8", "text/html") for e in entries]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    entries = fast_entries(generate_feed(args.items), "https://www.kepuchina.cn/rss")
    assert entries is not None and len(entries) == args.items
    settings = default_settings()
    rules = VetRules(
        now=datetime.now(UTC),
        future_skew=settings.ingest.future_skew,
        topics=frozenset(settings.topics or TOPICS),
    )
    tag = item_tagger(settings)
    tag(build_item(entries[0]))  # compile the rules outside the timing
    rounds = [one_round(entries, rules, tag) for _ in range(args.rounds)]
    best = {name: min(r[name] for r in rounds) for name in rounds[0]}
    ours = best["build_item"] + best["vet_item"] + best["tagger"]
    print(f"per-item CPU, {args.items} items, best of {args.rounds} rounds (seconds)")
    for name in ("build_item", "vet_item", "tagger"):
        print(f"  {name:<10} {best[name]:.4f}")
    print(f"  {'together':<10} {ours:.4f}")
    print(f"baseline: feedparser's HTML sanitizer on the same bodies {best['baseline']:.4f}")
    print(f"ratio (baseline / ours): {best['baseline'] / ours:.2f}x")


if __name__ == "__main__":
    main()
