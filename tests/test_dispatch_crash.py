"""Crash test: a dispatcher process is killed with SIGKILL, or stalled (SIGSTOP past its lease,
recovered by a sweeper meanwhile, then SIGCONT), at random moments, over and over.

Layout (three processes, so killing the dispatcher never touches the remote side):

* the sandbox servers (WeChat MP, media centre) run in their own process, started from this file
  (``python tests/test_dispatch_crash.py sandbox``) and expose what they accepted on a JSON
  control endpoint;
* the dispatcher is ``media-matrix dispatch --once``: on some runs the real console command
  (``python -m media_matrix``), on the others forked from a pre-imported copy of the package
  (``python tests/test_dispatch_crash.py forkserver``) so that a kill can land anywhere from the
  first claim on without paying the interpreter start-up every run; both are killed with
  SIGKILL after a random delay;
* this process restarts dispatching after the lease expired (on some runs with the real command
  again, otherwise in-process) and checks the outcome.

Runs continue until 20 dispatchers were killed while alive (a kill drawn after the dispatcher
had finished does not count), and again until 20 were stalled while alive: a stalled sender
resumes after the sweeper took its deliveries over and must stop at its next write (fencing)
instead of sending them a second time. Every run gets a fresh database and fresh packs (titles
carry the run number). After recovery: every delivery is ``delivered`` (or ``unknown``, listed
with its reason); the media centre holds one manuscript per delivery (per Idempotency-Key and
per channel and title), WeChat published each article at most once (exactly once if delivered)
and submitted each draft once, the outbox holds one folder per delivery and no temp folder or
lock file; the attempt log has no open attempt, every interrupted attempt is followed by a
recovery, and each delivery's last word is its outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_dispatch import add_packs, outbox, queue, webhook, wechat, write_settings  # noqa: E402

from media_matrix.dispatch import dispatch_due, sweep  # noqa: E402
from media_matrix.store import open_store  # noqa: E402
from media_matrix.timeutil import from_iso  # noqa: E402

KILLS = int(os.environ.get("MM_CRASH_KILLS", "20"))  # runs whose dispatcher died by SIGKILL
STALLS = int(os.environ.get("MM_CRASH_STALLS", "20"))  # runs whose dispatcher was stalled
SEED = int(os.environ.get("MM_CRASH_SEED", str(int(time.time()))))
LEASE = 1.0
HERE = Path(__file__).resolve()
FINAL = {"delivered", "unknown"}
OPEN = ("queued", "sending", "failed", "submitted")


# -- the sandbox process ------------------------------------------------------------------------


def serve_sandbox() -> None:
    from media_matrix.sandbox import Faults, MediaCentreSandbox, SandboxServers, WechatSandbox

    wechat_app = WechatSandbox(publish_polls=1, publish_seconds=0.2, faults=Faults(latency=0.04))
    centre = MediaCentreSandbox(faults=Faults(latency=0.05))
    servers = SandboxServers(wechat=wechat_app, mediacentre=centre).start()

    def records() -> dict[str, Any]:
        with centre.lock:
            manuscripts = {
                key: {"id": m["id"], "path": m["path"], "title": m["body"].get("title")}
                for key, m in centre.manuscripts.items()
            }
            hits = dict(centre.hits)
        with wechat_app.lock:
            wechat_app._finish_due()
            published = [
                {
                    "publish_id": p.publish_id,
                    "via": p.via,
                    "titles": [a["title"] for a in p.articles],
                    "urls": list(p.urls),
                }
                for p in wechat_app.published
            ]
            submits = [[a["title"] for a in p.articles] for p in wechat_app.publishes.values()]
            drafts = len(wechat_app.all_drafts)
        return {
            "manuscripts": manuscripts,
            "hits": hits,
            "published": published,
            "submits": submits,
            "drafts": drafts,
        }

    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            body = json.dumps(records(), ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    import threading

    threading.Thread(target=control.serve_forever, daemon=True).start()
    host, port = control.server_address[:2]
    urls = {**servers.urls, "control": f"http://{host}:{port}"}
    print(json.dumps(urls), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    control.shutdown()
    servers.stop()


# -- the fork server ----------------------------------------------------------------------------


def fork_server() -> None:
    """Import everything once, then fork one `dispatch --once` per line read: `config<TAB>log`."""
    import media_matrix.adapters.outbox
    import media_matrix.adapters.webhook
    import media_matrix.adapters.wechat_mp
    import media_matrix.dispatch  # noqa: F401
    from media_matrix.cli import cli
    from media_matrix.cli.common import run_guarded

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    print("ready", flush=True)
    for line in sys.stdin:
        config, log = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = 1
            try:
                code = run_guarded(cli, ["--config", config, "dispatch", "--once"])
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(pid, flush=True)


# -- the test -----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stopped(pid: int, within: float = 5.0) -> bool:
    """Wait until every thread of ``pid`` is really stopped: SIGSTOP is delivered
    asynchronously, and a process still running for a moment after ``kill`` returns may take
    the write lock in that moment. False when it exited (or would not stop) first."""
    limit = time.monotonic() + within
    while time.monotonic() < limit:
        try:
            states = {
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                for task in Path(f"/proc/{pid}/task").iterdir()
            }
        except OSError:
            return False  # gone
        if states <= {"T", "t"}:
            return True
        if states & {"Z", "X"}:
            return False
        time.sleep(0.002)
    return False


def _records(control: str) -> dict[str, Any]:
    with urlopen(control, timeout=10) as resp:
        return json.loads(resp.read())


@dataclass
class Tally:
    runs: int = 0
    kills: int = 0  # SIGKILL landed on a live dispatcher
    after_exit: int = 0  # the dispatcher had already finished
    cli_kills: int = 0  # of which the real console command
    cli_restarts: int = 0
    interrupted_attempts: int = 0
    released: int = 0
    recovered: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    unknown: list[str] = field(default_factory=list)
    kill_states: Counter = field(default_factory=Counter)  # status counts at the moment of death
    interrupted_by_channel: Counter = field(default_factory=Counter)
    fenced: int = 0  # resumed dispatchers that stopped on a lost lease (attempts lease_lost)
    stalled_in_transaction: int = 0  # stops that landed inside a write transaction (redrawn)


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory):
    # killed clients make the servers log broken pipes: keep them out of the test output
    log = open(tmp_path_factory.mktemp("sandbox") / "sandbox.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        urls = json.loads(proc.stdout.readline())
        yield urls
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def forker():
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "forkserver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"

    def spawn(config: Path, log: Path) -> int:
        proc.stdin.write(f"{config}\t{log}\n")
        proc.stdin.flush()
        return int(proc.stdout.readline())

    try:
        yield spawn
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cli(config: Path, *args: str, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "media_matrix", "--config", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )


def _cli_dispatcher_at_work(
    config: Path, store: Any, rng: random.Random
) -> tuple[subprocess.Popen, bool]:
    """A real `dispatch --once` process, left to run until its first attempt is recorded and a
    random moment more; returns it and whether it is still running."""
    proc = _cli(config, "dispatch", "--once")
    limit = time.monotonic() + 30
    while time.monotonic() < limit and proc.poll() is None:
        if store.query_one("SELECT 1 FROM attempts LIMIT 1"):
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.4))
    return proc, proc.poll() is None


def _wait_leases(store: Any) -> None:
    sending = store.list_deliveries(status="sending")
    if not sending:
        return
    until = max(from_iso(r["lease_until"]) for r in sending)
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)


def _finish(settings: Any, store: Any, tally: Tally, deadline: float) -> None:
    """The restarted dispatcher: sweep, send what is due, poll, until nothing is open."""
    while time.monotonic() < deadline:
        swept = sweep(settings, store)
        tally.released += swept.released
        tally.recovered += swept.recovered
        dispatch_due(settings, store)
        sweep(settings, store, wait=0)
        if not store.list_deliveries(status=list(OPEN)):
            return
        time.sleep(0.1)


def test_sigkill_at_random_moments_never_loses_or_duplicates(
    tmp_path, sandbox_process, forker, capsys
):
    _campaign("kill", KILLS, tmp_path, sandbox_process, forker, capsys)


def test_sigstop_past_the_lease_then_sigcont_never_duplicates(
    tmp_path, sandbox_process, forker, capsys
):
    tally = _campaign("stop", STALLS, tmp_path, sandbox_process, forker, capsys)
    assert tally.fenced > 0  # some resumed dispatchers found their leases gone and stopped


def _campaign(
    mode: str, wanted: int, tmp_path: Path, urls: dict[str, str], spawn: Any, capsys: Any
) -> Tally:
    rng = random.Random(f"{SEED}-{mode}")
    tally = Tally()
    started = time.monotonic()
    run = 0
    while tally.kills < wanted and run < 2 * wanted:  # a signal that comes too late: not counted
        _one_run(run, tmp_path / f"{mode}{run:02d}", urls, spawn, rng, tally, mode)
        run += 1
    elapsed = time.monotonic() - started
    summary = {
        "mode": mode,
        "seed": SEED,
        "runs": tally.runs,
        "signals_landed": tally.kills,
        "signals_after_exit": tally.after_exit,
        "real_cli": tally.cli_kills,
        "restarted_with_real_cli": tally.cli_restarts,
        "statuses_at_signal": dict(tally.kill_states),
        "interrupted_attempts": tally.interrupted_attempts,
        "interrupted_by_channel": dict(tally.interrupted_by_channel),
        "fenced_attempts": tally.fenced,
        "stops_inside_a_transaction": tally.stalled_in_transaction,
        "released_unstarted": tally.released,
        "recovered_in_process": tally.recovered,
        "final_outcomes": dict(tally.outcomes),
        "attempt_kinds": dict(tally.by_kind),
        "unknown": tally.unknown,
        "seconds": round(elapsed, 1),
    }
    with capsys.disabled():
        print(f"\ncrash test ({mode}):", json.dumps(summary, ensure_ascii=False))
    assert tally.kills >= wanted  # at least 20 dispatchers died (or stalled) while alive
    assert tally.interrupted_attempts > 0  # some of them mid-send
    return tally


def _one_run(
    run: int,
    folder: Path,
    urls: dict[str, str],
    spawn: Any,
    rng: random.Random,
    tally: Tally,
    mode: str = "kill",
) -> None:
    folder.mkdir(parents=True)
    screen = folder / "screen"
    settings = write_settings(
        folder,
        [
            wechat("wx", urls["wechat"]),
            webhook("cms-a", urls["mediacentre"] + "/a/manuscripts"),
            webhook("cms-b", urls["mediacentre"] + "/b/manuscripts"),
            outbox("screen", screen),
        ],
        lease_seconds=LEASE,
        max_attempts=8,
        backoff_base=0.1,
        backoff_cap=0.4,
        workers=4,
    )
    config = folder / "config.yaml"
    store = open_store(settings.database)
    packs = add_packs(store, 8, prefix=f"{mode[0].upper()}{run:02d}-")
    ids = queue(store, packs[:4], "wx", slot="2026-01-01T00:00:00+00:00")
    ids += queue(store, packs[4:], "wx", slot="2026-01-01T04:00:00+00:00")
    for name in ("cms-a", "cms-b", "screen"):
        ids += queue(store, packs, name)

    # -- start a dispatcher and kill (or stall) it at a random moment --
    real_cli = run % 5 == 0
    if mode == "stop":
        _stall(config, folder, store, settings, spawn, rng, tally, real_cli)
    elif real_cli:
        proc, alive = _cli_dispatcher_at_work(config, store, rng)
        pid = proc.pid
        proc.kill()
        proc.wait()
        tally.cli_kills += alive
    else:
        pid = spawn(config, folder / "dispatch.log")
        time.sleep(rng.uniform(0.02, 0.55))
        alive = _alive(pid)
        if alive:
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.005)
    if mode == "kill":
        tally.kills += alive
        tally.after_exit += not alive
        if alive:
            tally.kill_states.update(r["status"] for r in store.list_deliveries())

    # -- restart after the leases expired --
    _wait_leases(store)
    if run % 4 == 1:
        tally.cli_restarts += 1
        assert _cli(config, "dispatch", "--once", "--wait", "2").wait(timeout=60) in (0, 1)
    _finish(settings, store, tally, deadline=time.monotonic() + 30)

    # -- what happened --
    rows = store.list_deliveries(ids=ids)
    by_status = Counter(r["status"] for r in rows)
    assert set(by_status) <= FINAL, f"run {run}: {by_status}"
    tally.runs += 1
    tally.outcomes.update(by_status)
    records = _records(urls["control"])
    uids = {r["uid"]: r for r in rows}

    # media centre: one manuscript per delivery, per key and per (channel, title)
    mine = {k: m for k, m in records["manuscripts"].items() if k in uids}
    cms = [r for r in rows if r["channel"].startswith("cms")]
    per_title = Counter((m["path"], m["title"]) for m in mine.values())
    assert all(n == 1 for n in per_title.values()), f"run {run}: duplicate manuscript"
    for r in cms:
        if r["status"] == "delivered":
            assert mine[r["uid"]]["id"] == r["remote_id"]
            assert mine[r["uid"]]["path"] == "/" + r["channel"][-1] + "/manuscripts"
    assert len(mine) == sum(1 for r in cms if r["status"] == "delivered") + sum(
        1 for r in cms if r["status"] == "unknown" and r["uid"] in mine
    )

    # WeChat: each article published at most once; delivered ones exactly once, at their URL
    titles = {r["pack_title"] for r in rows if r["channel"] == "wx"}
    published = Counter(t for p in records["published"] for t in p["titles"] if t in titles)
    submitted = Counter(t for s in records["submits"] for t in s if t in titles)
    assert all(n == 1 for n in published.values()), f"run {run}: published twice {published}"
    assert all(n == 1 for n in submitted.values()), f"run {run}: submitted twice {submitted}"
    urls_by_title = {
        t: u for p in records["published"] for t, u in zip(p["titles"], p["urls"], strict=True)
    }
    for r in rows:
        if r["channel"] == "wx" and r["status"] == "delivered":
            assert published[r["pack_title"]] == 1
            assert r["url"] == urls_by_title[r["pack_title"]]

    # outbox: one folder per delivery, nothing half-written left behind
    entries = sorted(p.name for p in screen.iterdir()) if screen.exists() else []
    temps = [e for e in entries if e.startswith(".tmp")]
    # a kill mid-write leaves a temp folder or a bare `.lock`: the recovery's write removes them
    assert temps == [], f"run {run}: outbox leftovers {temps}"
    delivered_screen = [r["uid"] for r in rows if r["channel"] == "screen"]
    assert sorted(delivered_screen) == entries
    assert all((screen / e / "DONE").exists() for e in entries)

    # attempt log: nothing left open, interruptions followed by recovery, last word = outcome
    for r in rows:
        log = store.attempts_of(r["id"])
        assert log, f"run {run}: delivery {r['id']} has no attempt"
        assert all(a["finished_at"] for a in log)
        tally.by_kind.update(a["kind"] for a in log)
        for i, a in enumerate(log):
            tally.fenced += a["outcome"] == "lease_lost"
            if a["outcome"] == "interrupted":
                tally.interrupted_attempts += 1
                tally.interrupted_by_channel[r["channel"]] += 1
                assert "lease of" in a["error"]
                assert i + 1 < len(log) and log[i + 1]["kind"] == "recover"
        last = [a for a in log if a["kind"] != "fence"][-1]  # a resumed sender's note comes late
        if r["status"] == "delivered":
            assert last["outcome"] == "delivered"
        else:
            assert last["outcome"] == "unknown" and r["last_error"], f"run {run}: {r}"
            tally.unknown.append(
                f"run {run} delivery {r['id']} ({r['channel']}): {r['last_error']}"
            )
    store.close()


def _write_locked(database: Path) -> bool:
    """Whether another process holds the database's write lock (a short BEGIN IMMEDIATE)."""
    import sqlite3

    conn = sqlite3.connect(str(database), timeout=0.5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def _stall(
    config: Path,
    folder: Path,
    store: Any,
    settings: Any,
    spawn: Any,
    rng: random.Random,
    tally: Tally,
    real_cli: bool,
) -> None:
    """Stop the dispatcher (SIGSTOP) at a random moment for longer than its lease, let the
    sweeper take its deliveries over and finish them meanwhile, then resume it (SIGCONT): it
    must notice its lost leases and stop instead of sending again."""
    if real_cli:
        proc, alive = _cli_dispatcher_at_work(config, store, rng)
        pid = proc.pid
    else:
        proc = None
        pid = spawn(config, folder / "dispatch.log")
        time.sleep(rng.uniform(0.02, 0.55))
        alive = _alive(pid)
    if alive:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            alive = False
        if alive and not _stopped(pid):  # it exited first (or never stopped): no stall
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            alive = False
    if alive and _write_locked(settings.database):
        # stopped inside a write transaction: SQLite keeps everyone else out until it resumes,
        # so no sweeper can take over; resume it and draw again (not counted as a stall)
        tally.stalled_in_transaction += 1
        os.kill(pid, signal.SIGCONT)
        alive = False
    tally.kills += alive
    tally.after_exit += not alive
    tally.cli_kills += alive and real_cli
    if alive:
        tally.kill_states.update(r["status"] for r in store.list_deliveries())
        try:
            _wait_leases(store)
            _finish(settings, store, tally, deadline=time.monotonic() + 30)
        finally:
            os.kill(pid, signal.SIGCONT)
    limit = time.monotonic() + 60
    if proc is not None:
        proc.wait(timeout=60)
    while _alive(pid) and time.monotonic() < limit:
        time.sleep(0.01)
    assert not _alive(pid), f"dispatcher {pid} did not finish after SIGCONT"


if __name__ == "__main__":
    if sys.argv[1:] == ["sandbox"]:
        serve_sandbox()
    elif sys.argv[1:] == ["forkserver"]:
        fork_server()
    else:
        sys.exit("usage: test_dispatch_crash.py sandbox|forkserver")
