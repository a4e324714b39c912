"""The main job, once: every step of the flow in order, each a service of its own module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from media_matrix.config import Settings
from media_matrix.ingest import FeedReport, IngestReport, run_ingest
from media_matrix.store import Store


@dataclass
class RunReport:
    ingest: IngestReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingest": [f.to_dict() for f in self.ingest.feeds],
            "new_pack_ids": self.ingest.new_pack_ids,
        }


def run_once(
    settings: Settings,
    store: Store,
    *,
    progress: Callable[[FeedReport], None] | None = None,
) -> RunReport:
    """Ingest every enabled feed (later: tag, approve, plan, dispatch)."""
    report = run_ingest(settings, store, progress=progress)
    return RunReport(ingest=report)
