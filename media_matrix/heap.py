"""Start-up's objects set apart from the garbage collector, once a face has loaded what it runs.

A full collection walks every tracked object; the modules, templates and the config's
validators that start-up builds take tens of milliseconds to walk, and a command or a request
that makes many objects (an ingest, the calendar) sets several full collections off. Frozen,
start-up's objects are never walked again: later collections see only what the work made.
"""

from __future__ import annotations

import gc


def settle_heap(*, collect: bool = True, once: bool = False) -> None:
    """Freeze what exists now. ``collect`` first drops start-up's garbage (worth it before a
    long-running server; a short command skips it, since the collection costs what it saves).
    ``once``: only if nothing is frozen yet (a process running commands in turn, as the tests
    do, freezes its start-up and not every later command's leftovers)."""
    if once and gc.get_freeze_count():
        return
    if collect:
        gc.collect()
    gc.freeze()
