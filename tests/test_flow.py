"""The sending round is composed once (flow.run_round) and every face uses it."""

from __future__ import annotations

import ast
from pathlib import Path

from test_dispatch import add_packs, outbox, statuses, write_settings

from media_matrix import review
from media_matrix.flow import run_round
from media_matrix.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def test_round_steps_are_switched_on_by_the_caller(tmp_path):
    settings = write_settings(
        tmp_path,
        [outbox("screen", tmp_path / "out"), outbox("board", tmp_path / "board")],
    )
    store = open_store(settings.database)
    try:
        urgent, plain = add_packs(store, 2)
        review.set_urgent(store, urgent, True, "editor", None)  # flagged only, not queued
        # dispatch's round: no urgent queueing, no fill -> nothing to send
        idle = run_round(settings, store)
        assert idle.queued == [] and idle.dispatch.claimed == 0 and idle.poll is not None
        # the daemon's sweep: urgent packs go to every matching channel now, no poll after
        swept = run_round(settings, store, urgent=True, poll=False, by="daemon")
        assert {(q.pack_id, q.channel) for q in swept.urgent} == {
            (urgent, "screen"),
            (urgent, "board"),
        }
        assert swept.filled == [] and swept.poll is None
        assert swept.dispatch.delivered == 2 and swept.counts == {"delivered": 2}
        # run --once: a batch booked now on the channels asked for, sent in the same round
        filled = run_round(settings, store, fill=True, channels=["screen"], by="run-once")
        assert [(q.pack_id, q.channel) for q in filled.filled] == [(plain, "screen")]
        assert filled.dispatch.delivered == 1
        assert sorted(statuses(store).values()) == ["delivered"] * 3
    finally:
        store.close()


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_every_face_sends_through_the_one_round():
    """run --once, dispatch (once and looping), the daemon's sweep and the console's dispatch
    button call flow.run_round; none of them strings sweep and send together on its own."""
    faces = {
        "media_matrix/flow.py": "run_once",
        "media_matrix/cli/deliveries.py": "dispatch",
        "media_matrix/daemon.py": "sweep job",
        "media_matrix/web/deliveries.py": "console",
    }
    for name in faces:
        calls = _calls(ROOT / name)
        assert "run_round" in calls, name
        if name != "media_matrix/flow.py":
            assert "sweep" not in calls and "queue_urgent" not in calls, name
