"""Dispatch throughput: many webhook channels behind a slow media centre.

    python bench/dispatch.py                       # 2,000 deliveries, 40 channels, 100 ms answers
    python bench/dispatch.py --workers 40 --concurrency 2   # past what one process can feed

The media centre (the sandbox's, signature checks and Idempotency-Key dedupe included) runs in
its own process, so the server's threads do not compete with the dispatcher for the GIL. Every
answer takes ``--latency`` seconds. The server records, per channel (URL path), the most requests
it was serving at the same moment.

Measured in the same run:

* sequential baseline: ``--baseline`` deliveries to one channel with one worker, one after the
  other, through the same engine (claim, attempt log, render, sign, POST, outcome); scaled to
  the full batch;
* parallel: ``--deliveries`` deliveries spread over ``--channels`` channels, one
  ``dispatch_due`` with ``--workers`` workers and ``--concurrency`` per channel.

Printed: wall time against the ideal for the configured concurrency (total requests x latency /
parallelism, where parallelism = min(workers, sum of channel concurrency)) and against the
scaled sequential baseline, and whether every channel's limit held at the server. Targets: at
least 0.8 of ideal, at least 10x the baseline, limits held.

Sizing: a send costs the dispatcher about 3 ms of CPU under the GIL (two SQLite transactions,
the pack read, a Jinja2 render, HMAC, the requests/urllib3 exchange), so one process tops out
near 250-300 sends a second on the 2-core machine this was measured on (shared with other test
runs), and each request costs about 107 ms end to end for a 100 ms answer (so 0.93 of ideal is
the ceiling). Parallelism beyond latency x that rate only queues on the GIL: measured 16
workers 0.89-0.91 of ideal (15x sequential), 24 workers 0.81-0.90, 32 workers 0.75-0.78,
40 workers 0.61-0.75. The default is therefore 16 workers with one request at a time per
channel; a deployment sizes ``dispatch.workers`` the same way (or runs one dispatcher process
per group of channels: claims are atomic, so several processes share the queue safely).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from media_matrix.config import load_settings  # noqa: E402
from media_matrix.dispatch import dispatch_due  # noqa: E402
from media_matrix.models import Item, PackStatus  # noqa: E402
from media_matrix.store import open_store  # noqa: E402

SECRET = "sandbox-secret"
TARGET_IDEAL = 0.8
TARGET_SPEEDUP = 10.0


# -- the server process -------------------------------------------------------------------------


def serve(latency: float) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from media_matrix.sandbox import Faults, MediaCentreSandbox
    from media_matrix.sandbox.common import Running

    class Counting(MediaCentreSandbox):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.active: dict[str, int] = {}
            self.peak: dict[str, int] = {}
            self.total = 0
            self.peak_total = 0

        def handle(self, req: Any) -> Any:
            with self.lock:
                self.active[req.path] = self.active.get(req.path, 0) + 1
                self.peak[req.path] = max(self.peak.get(req.path, 0), self.active[req.path])
                self.total += 1
                self.peak_total = max(self.peak_total, self.total)
            try:
                return super().handle(req)
            finally:
                with self.lock:
                    self.active[req.path] -= 1
                    self.total -= 1

    app = Counting(faults=Faults(latency=latency))
    running = Running(app, "127.0.0.1", 0)
    running.server.socket.listen(512)  # a deeper accept backlog than http.server's 5

    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            with app.lock:
                if self.path == "/reset":
                    app.peak.clear()
                    app.peak_total = 0
                data = {
                    "peak": app.peak,
                    "peak_total": app.peak_total,
                    "accepted": len(app.manuscripts),
                    "rejections": len(app.rejections),
                }
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(
        json.dumps({"url": app.base_url, "control": "http://{}:{}".format(*control.server_address)})
    )
    sys.stdout.flush()
    sys.stdin.read()
    control.shutdown()
    running.stop()


# -- the bench ----------------------------------------------------------------------------------


def control(url: str, path: str = "/") -> dict[str, Any]:
    with urlopen(url + path, timeout=10) as resp:
        return json.loads(resp.read())


def project(
    folder: Path, url: str, *, channels: int, workers: int, concurrency: int, prefix: str
) -> Any:
    data = {
        "database": str(folder / "db.sqlite"),
        "templates": str(ROOT / "channels"),
        "dispatch": {"workers": workers, "lease_seconds": 300, "max_attempts": 3},
        "channels": [
            {
                "name": f"{prefix}{i:02d}",
                "type": "webhook",
                "url": f"{url}/{prefix}{i:02d}/manuscripts",
                "secret": SECRET,
                "concurrency": concurrency,
            }
            for i in range(channels)
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_settings(folder / "config.yaml")


def fill(settings: Any, deliveries: int) -> Any:
    store = open_store(settings.database)
    names = [c.name for c in settings.channels]
    packs_needed = -(-deliveries // len(names))
    at = "2026-01-01T00:00:00+00:00"
    pack_ids = []
    for i in range(packs_needed):
        item = Item(
            guid=f"bench-{i}",
            title=f"防灾减灾知识（{i}）",
            url=f"https://www.kepuchina.cn/a/{i}",
            summary="汛期来临，请注意防范强降雨引发的地质灾害。",
            content_html="<p>汛期来临，请注意防范强降雨引发的地质灾害。</p>" * 20,
            text="汛期来临，请注意防范强降雨引发的地质灾害。" * 20,
            content_hash=f"bench-{i}",
            source="科普中国",
        )
        pack_ids.append(store.insert_pack("bench", item, at=at, status=PackStatus.APPROVED))
    n = 0
    for pid in pack_ids:
        for name in names:
            if n == deliveries:
                break
            store.queue_delivery(pid, name, scheduled_at=at, slot_at=at)
            n += 1
    return store


def run(settings: Any, store: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    report = dispatch_due(settings, store)
    return time.perf_counter() - started, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.latency)
        return 0

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        urls = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            return bench(args, urls, Path(tmp))
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def bench(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> int:
    # sequential baseline: one channel, one worker, one request at a time
    seq_settings = project(
        tmp / "seq", urls["url"], channels=1, workers=1, concurrency=1, prefix="seq"
    )
    seq_store = fill(seq_settings, args.baseline)
    seq_time, seq_report = run(seq_settings, seq_store)
    assert seq_report.delivered == args.baseline, seq_report
    seq_store.close()
    per_request = seq_time / args.baseline
    sequential = per_request * args.deliveries

    control(urls["control"], "/reset")
    settings = project(
        tmp / "par",
        urls["url"],
        channels=args.channels,
        workers=args.workers,
        concurrency=args.concurrency,
        prefix="c",
    )
    store = fill(settings, args.deliveries)
    wall, report = run(settings, store)
    counts = store.status_counts()
    errors = sorted({r["last_error"] for r in store.list_deliveries(status="failed")})
    store.close()
    stats = control(urls["control"])

    parallelism = min(args.workers, args.channels * args.concurrency)
    ideal = args.deliveries * args.latency / parallelism
    of_ideal = ideal / wall
    speedup = sequential / wall
    peaks = {path: n for path, n in stats["peak"].items() if path.startswith("/c")}
    worst = max(peaks.values()) if peaks else 0
    held = worst <= args.concurrency and stats["peak_total"] <= args.workers
    delivered = counts.get("delivered", 0)

    print(f"dispatch bench: {args.deliveries} deliveries to {args.channels} webhook channels")
    print(f"  server latency           {args.latency * 1000:.0f} ms per request (own process)")
    print(
        f"  config                   workers={args.workers}, concurrency={args.concurrency}"
        f"/channel -> parallelism {parallelism}"
    )
    print(
        f"  sequential baseline      {args.baseline} sent one by one in {seq_time:.2f} s "
        f"({per_request * 1000:.1f} ms each) -> {sequential:.1f} s scaled to {args.deliveries}"
    )
    print(f"  ideal at parallelism {parallelism:<3} {ideal:.2f} s")
    print(
        f"  measured                 {wall:.2f} s  ({args.deliveries / wall:.0f} deliveries/s, "
        f"{delivered} delivered, {report.messages} messages)"
    )
    print(
        f"  vs ideal                 {of_ideal:.2f} of ideal   (target >= {TARGET_IDEAL})"
        f"  {'OK' if of_ideal >= TARGET_IDEAL else 'BELOW TARGET'}"
    )
    print(
        f"  vs sequential            {speedup:.1f}x faster      (target >= {TARGET_SPEEDUP:g}x)"
        f"  {'OK' if speedup >= TARGET_SPEEDUP else 'BELOW TARGET'}"
    )
    print(
        f"  per-channel limits       max {worst} concurrent on one channel (limit "
        f"{args.concurrency}), max {stats['peak_total']} at once overall (workers "
        f"{args.workers})  {'held' if held else 'VIOLATED'}"
    )
    print(
        f"  server accepted          {stats['accepted'] - args.baseline} manuscripts, "
        f"{stats['rejections']} rejections"
    )
    if delivered != args.deliveries:
        print(f"  NOT DELIVERED            {counts}; errors: {errors[:3]}")
    ok = (
        of_ideal >= TARGET_IDEAL
        and speedup >= TARGET_SPEEDUP
        and held
        and delivered == args.deliveries
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
