"""Daemon slot-firing lateness (issue 4): the real `media-matrix daemon` over >= 30 slots.

Two outbox channels whose slot jobs fire every second (``* * * * *`` with
``daemon.slot_second: "*"``, see DaemonConfig), 20 approved packs to fill and dispatch, a real
SQLite file. Lateness is the daemon's own ``lateness_ms`` log field (job start minus scheduled
fire time). The baseline, measured in the same run and at the same time: a bare loop in this
process that sleeps until each whole second and records how late it woke up.

Run from the repository root:  python bench/daemon_lateness.py [--seconds 32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from media_matrix.models import Item, PackStatus, Tag  # noqa: E402
from media_matrix.store import open_store  # noqa: E402

TARGET_P99_MS = 1000.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def make_project(folder: Path) -> Path:
    config = {
        "database": "var/bench.db",
        "templates": str(REPO / "channels"),
        "channels": [
            {
                "name": name,
                "type": "outbox",
                "county": "市级",
                "audience": ["public"],
                "slots": ["* * * * *"],
                "per_slot": 2,
                "path": f"var/outbox/{name}",
            }
            for name in ("bench-a", "bench-b")
        ],
        "daemon": {
            "slot_second": "*",
            "sweep_every": "5s",
            "heartbeat_every": "2s",
            "stale_after": "10s",
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    store = open_store(folder / "var" / "bench.db")
    for i in range(20):
        at = f"2024-09-{i + 1:02d}T00:00:00+00:00"
        item = Item(guid=f"b{i}", title=f"科普{i}", text="科学" * 50, content_hash=f"bh{i}")
        item.published_at = at
        pack = store.insert_pack("bench", item, at=at, status=PackStatus.APPROVED)
        store.replace_rule_tags(pack, [Tag("group", "public", 3, "bench")], at=at)
    store.close()
    return path


def baseline(stop: threading.Event, out: list[float]) -> None:
    """Sleep until each whole second (+0.5 s offset, between the daemon's fires); lateness."""
    while not stop.is_set():
        target = int(time.time()) + 1.5
        time.sleep(max(0.0, target - time.time()))
        out.append((time.time() - target) * 1000)


def run(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        config = make_project(Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-m", "media_matrix", "--config", str(config), "daemon"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        events: list[dict] = []
        started = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.append(event)
                if event["event"] == "daemon_started":
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not started.wait(60):
            proc.kill()
            raise SystemExit("daemon did not start")
        stop = threading.Event()
        base: list[float] = []
        loop = threading.Thread(target=baseline, args=(stop, base), daemon=True)
        loop.start()
        time.sleep(seconds)
        stop.set()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        reader.join(5)
        loop.join(3)
    fires = [e["lateness_ms"] for e in events if e["event"] == "slot_fired"]
    done = [e for e in events if e["event"] == "slot_done"]
    return {
        "exit_code": code,
        "slots": len(fires),
        "queued": sum(e["queued"] for e in done),
        "p50": percentile(fires, 50),
        "p99": percentile(fires, 99),
        "max": max(fires, default=float("nan")),
        "mean": statistics.fmean(fires) if fires else float("nan"),
        "base_n": len(base),
        "base_p50": percentile(base, 50),
        "base_p99": percentile(base, 99),
    }


def main(seconds: float = 32.0) -> dict[str, float]:
    print(f"daemon slot lateness: real daemon, 2 channels firing every second, {seconds:g} s")
    r = run(seconds)
    print(
        f"  daemon:   {r['slots']:>3} slots  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
        f"max {r['max']:7.2f} ms  ({r['queued']} deliveries queued, exit {r['exit_code']})"
    )
    print(
        f"  baseline: {r['base_n']:>3} wakes  p50 {r['base_p50']:7.2f} ms  "
        f"p99 {r['base_p99']:7.2f} ms  (bare time.sleep-until-target loop, same run)"
    )
    ratio50 = r["p50"] / r["base_p50"] if r["base_p50"] > 0 else float("inf")
    ratio99 = r["p99"] / r["base_p99"] if r["base_p99"] > 0 else float("inf")
    print(f"  ratio daemon/baseline: p50 {ratio50:.1f}x  p99 {ratio99:.1f}x")
    enough = "ok" if r["slots"] >= 30 else "TOO FEW SLOTS"
    verdict = "met" if r["p99"] < TARGET_P99_MS else "MISSED"
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: {verdict}; slots >= 30: {enough}")
    return r


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=32.0)
    main(parser.parse_args().seconds)
