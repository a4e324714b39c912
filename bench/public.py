"""Public face benchmark: tracked-link redirects under concurrent load from loopback clients.

    python3 bench/public.py                       # defaults: 8 clients x 1500 requests, 3 rounds
    python3 bench/public.py --clients 16 --requests 1000 --rounds 3

Starts the real server (`media-matrix public`, waitress) twice on loopback: recording (each
`/s/{code}` resolved in the database, its hit recorded) and the baseline (the same server
answering every request with a fixed 302, nothing read or recorded). Rounds alternate; each
side keeps its best round. Clients are separate processes with keep-alive connections, each
bounded in requests and time. Printed: redirects per second, p50/p99 latency, the recording
cost (1 - recording / baseline throughput), and a SIGTERM check: a recording server stopped
in the middle of a load must have written a hit for every redirect it answered.

Targets: >= 1,000 redirects/s, p99 < 20 ms, recording costs < 30% of throughput, no hit lost.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINKS = 500
TARGET_RPS = 1000.0
TARGET_P99_MS = 20.0
TARGET_COST = 0.30
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 MicroMessenger/8.0.44",
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/116.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
)


def prepare(folder: Path) -> tuple[Path, list[str]]:
    """A config and a database with LINKS tracked links (half of them officers')."""
    import yaml

    from media_matrix.config import load_settings
    from media_matrix.links import new_code, new_token
    from media_matrix.models import Item, PackStatus
    from media_matrix.store import open_store

    config = folder / "config.yaml"
    data = {
        "database": str(folder / "public.db"),
        "channels": [
            {"name": "cms", "type": "webhook", "url": "https://cms.example.cn/api", "secret": "s"}
        ],
        "public": {"base_url": "https://kp.example.cn", "threads": 8},
    }
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = load_settings(config)
    store = open_store(settings.database)
    codes = []
    store.import_officers(
        [{"name": f"信息员{i}", "county": "清丰县", "township": "韩村镇", "groups": []}
         for i in range(10)],
        new_token,
    )  # fmt: skip
    officers = [o["id"] for o in store.list_officers()]
    for i in range(LINKS // 2):
        item = Item(
            guid=f"b{i}",
            title=f"科普 {i}",
            url=f"https://www.kepuchina.cn/a/{i}",
            content_hash=f"h{i}",
        )
        pack = store.insert_pack("bench", item, at="2026-01-01T00:00:00+00:00",
                                 status=PackStatus.APPROVED)  # fmt: skip
        delivery = store.queue_delivery(pack, "cms", scheduled_at="2026-01-01T00:00:00+00:00")
        codes.append(store.delivery_link(delivery, new_code))
        codes.extend(store.officer_links(officers[i % len(officers)], [pack], new_code).values())
    store.close()
    return config, codes


def start_server(config: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "media_matrix", "--config", str(config), "public", "--port", "0",
         *extra],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(match.group(1))


def stop_server(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


# -- the clients (separate processes) -----------------------------------------------------------


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response with an empty or Content-Length body; returns its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer.extend(chunk)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    buffer[:] = rest[length:]
    return int(head[9:12])


def client(args: tuple[int, int, list[str], int, float, str]) -> dict:
    port, index, codes, count, deadline_s, _label = args
    agent = AGENTS[index % len(AGENTS)] + f" client/{index}"
    requests = [
        (f"GET /s/{codes[(index * 7 + i) % len(codes)]} HTTP/1.1\r\nHost: kp.example.cn\r\n"
         f"User-Agent: {agent}\r\n\r\n").encode()
        for i in range(min(count, 256))
    ]  # fmt: skip
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    deadline = time.monotonic() + deadline_s
    error = None
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            sock.sendall(requests[i % len(requests)])
            status = _read_response(sock, buffer)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    except OSError as exc:
        error = str(exc)
    finally:
        sock.close()
    return {"latencies": latencies, "statuses": statuses, "error": error}


def load(port: int, codes: list[str], clients: int, count: int, limit: float) -> dict:
    with mp.get_context("fork").Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.map(client, [(port, i, codes, count, limit, "") for i in range(clients)])
        elapsed = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    n = len(latencies)
    return {
        "requests": n,
        "redirects": statuses.get(302, 0),
        "statuses": statuses,
        "seconds": elapsed,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if latencies else 0.0,
        "errors": [r["error"] for r in results if r["error"]],
    }


def count_hits(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM hits").fetchone()[0]


def sigterm_check(config: Path, db: Path, codes: list[str], clients: int, count: int) -> dict:
    """Stop a recording server with SIGTERM in the middle of a load; compare answered redirects
    with the hits written."""
    before = count_hits(db)
    proc, port = start_server(config)
    with mp.get_context("fork").Pool(clients) as pool:
        pending = pool.map_async(
            client, [(port, i, codes, count, 30.0, "") for i in range(clients)]
        )
        time.sleep(1.0)
        code = stop_server(proc)
        results = pending.get(timeout=60)
    answered = sum(r["statuses"].get(302, 0) for r in results)
    written = count_hits(db) - before
    return {
        "exit": code,
        "answered": answered,
        "written": written,
        "lost": max(0, answered - written),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1500, help="per client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=float, default=30.0, help="seconds a client may run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mm-bench-public-") as tmp:
        folder = Path(tmp)
        config, codes = prepare(folder)
        db = folder / "public.db"
        best: dict[str, dict] = {}
        recorded = 0
        for _ in range(args.rounds):
            for side, extra in (("baseline", ("--static-redirect", "https://example.cn/x")),
                                ("recording", ())):  # fmt: skip
                before = count_hits(db)
                proc, port = start_server(config, *extra)
                result = load(port, codes, args.clients, args.requests, args.limit)
                stop_server(proc)
                if side == "recording":
                    result["hits_written"] = count_hits(db) - before
                    recorded += result["hits_written"] == result["redirects"]
                if side not in best or result["rps"] > best[side]["rps"]:
                    best[side] = result
        term = sigterm_check(config, db, codes, args.clients, args.requests * 4)
    base, rec = best["baseline"], best["recording"]
    cost = 1 - rec["rps"] / base["rps"] if base["rps"] else 0.0
    summary = {
        "clients": args.clients,
        "requests_per_client": args.requests,
        "links": len(codes),
        "baseline": {k: base[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "statuses")},
        "recording": {
            k: rec[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "statuses", "hits_written")
        },
        "recording_cost": cost,
        "every_round_wrote_every_hit": recorded == args.rounds,
        "sigterm": term,
        "targets": {
            "rps": rec["rps"] >= TARGET_RPS,
            "p99": rec["p99_ms"] < TARGET_P99_MS,
            "cost": cost < TARGET_COST,
            "no_hit_lost": term["lost"] == 0 and recorded == args.rounds,
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return
    print(f"{args.clients} loopback clients x {args.requests} requests, {len(codes)} links, "
          f"best of {args.rounds} rounds per side")  # fmt: skip
    for side, r in (("baseline (static 302)", base), ("recording", rec)):
        print(f"  {side:22s} {r['rps']:8.0f} redirects/s   p50 {r['p50_ms']:6.2f} ms   "
              f"p99 {r['p99_ms']:6.2f} ms   ({r['requests']} requests)")  # fmt: skip
    print(f"  hits written by the best recording round: {rec['hits_written']} "
          f"for {rec['redirects']} redirects")  # fmt: skip
    print(f"  recording cost: {cost * 100:.1f}% of throughput (target < {TARGET_COST * 100:.0f}%)")
    print(f"  SIGTERM mid-load: answered {term['answered']} redirects, wrote {term['written']} "
          f"hits, lost {term['lost']} (exit {term['exit']})")  # fmt: skip
    for name, ok in summary["targets"].items():
        print(f"  target {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
