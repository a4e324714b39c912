"""CLI start-up benchmark: whole processes, as an editor or a cron job runs them.

Prints, against ``python3 -c pass`` measured in the same run (best of several interleaved
rounds): ``media-matrix --help``, ``status`` and ``packs list`` on a small database, and a
process-level ``ingest`` of a 1,000-item loopback feed against lemon24/reader updating the same
feed in its own process. A re-poll of the unchanged feed is shown beyond start-up (its time
less ``status``'s, the cost of loading the config and opening the store).

Ingest leaves the full-text index to whoever needs it next (the daemon after each ingest, or
the first search; see store/search.py), as reader leaves its search index to
``update_search``. So the work moved is shown too: the first ``packs list -q`` after the
ingest, which indexes the 1,000 packs, against a second one that finds the index current.

    python3 bench/cli_start.py [--rounds 5] [--items 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from feedserver import FeedServer  # noqa: E402
from ingest import generate_feed  # noqa: E402

READER_SCRIPT = """
import sys
from reader import make_reader
r = make_reader(sys.argv[1])
r.add_feed(sys.argv[2], exist_ok=True)
r.update_feeds()
"""


def cli() -> list[str]:
    """The console script beside this interpreter when installed (not a version manager's
    shim, e.g. pyenv's, which is a shell script adding ~0.15 s before Python even starts),
    else the one on PATH, else the module: what a user types."""
    beside = Path(sys.executable).with_name("media-matrix")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("media-matrix")
    return [found] if found else [sys.executable, "-m", "media_matrix"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode()[-800:]}")
    return elapsed


def write_config(folder: Path, url: str, port: int) -> Path:
    config = folder / "config.yaml"
    config.write_text(
        "timezone: Asia/Shanghai\n"
        f"database: {folder / 'bench.db'}\n"
        "network:\n"
        f"  allow: ['127.0.0.1:{port}']\n"
        "feeds:\n"
        f"  - {{name: bench, kind: rss, url: '{url}', max_items: 100000}}\n",
        encoding="utf-8",
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    # A user's installation has bytecode caches (pip compiles site-packages, reader's included;
    # an editable install writes them on first import). A sandbox that forbids writing them
    # would make every run here compile media_matrix from source: let the first round write them.
    unset = ("MEDIA_MATRIX_CONFIG", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["READER_NO_VENDORED_FEEDPARSER"] = "1"
    server = FeedServer()
    server.add("/feed.xml", body=generate_feed(args.items), etag='"cli-1"')
    server.start()
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    try:
        url = server.url("/feed.xml")
        port = int(url.split(":")[2].split("/")[0])
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.rounds):  # interleaved: every command once per round
                folder = Path(tmp) / str(n)
                folder.mkdir()
                config = str(write_config(folder, url, port))
                base = [*cli(), "--config", config]
                keep("python3 -c pass", timed([sys.executable, "-c", "pass"], env))
                keep("--help", timed([*cli(), "--help"], env))
                keep("ingest (first)", timed([*base, "ingest"], env))
                keep("ingest (re-poll)", timed([*base, "ingest"], env))
                keep("status", timed([*base, "status"], env))
                keep("packs list", timed([*base, "packs", "list"], env))
                search = [*base, "packs", "list", "-q", "防诈骗"]
                keep("search (catch-up)", timed(search, env))
                keep("search (current)", timed(search, env))
                reader_db = str(folder / "reader.db")
                reader = [sys.executable, "-c", READER_SCRIPT, reader_db, url]
                keep("reader update", timed(reader, env))
    finally:
        server.stop()
    bare = best["python3 -c pass"]
    print(f"best of {args.rounds} interleaved rounds; feed of {args.items} items on loopback")
    print(f"{'command':<20}{'seconds':>9}{'beyond bare python':>21}")
    for name, seconds in best.items():
        print(f"{name:<20}{seconds:>9.3f}{seconds - bare:>+20.3f}s")
    print(f"--help      beyond bare python: {best['--help'] - bare:.3f} s (target <= 0.25 s)")
    print(f"status      beyond bare python: {best['status'] - bare:.3f} s (target <= 0.4 s)")
    print(f"packs list  beyond bare python: {best['packs list'] - bare:.3f} s (target <= 0.4 s)")
    ratio = best["reader update"] / best["ingest (first)"]
    print(f"process-level ingest vs reader: {ratio:.1f}x faster (target >= 5x)")
    startup = best["status"]
    repoll = (best["ingest (re-poll)"] - startup) / max(best["ingest (first)"] - startup, 1e-9)
    print(f"re-poll beyond start-up: {repoll:.1%} of a first ingest (target < 10%)")
    catch_up = best["search (catch-up)"] - best["search (current)"]
    with_index = best["reader update"] / (best["ingest (first)"] + catch_up)
    print(
        f"search index catch-up after the first ingest: {catch_up:.3f} s "
        f"(ingest and catch-up together: {with_index:.1f}x faster than reader)"
    )


if __name__ == "__main__":
    main()
