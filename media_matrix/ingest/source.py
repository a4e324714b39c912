"""What every source kind returns to the ingest loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from media_matrix.models import Item


@dataclass
class SourceResult:
    items: list[Item] = field(default_factory=list)
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    item_errors: list[tuple[str, str]] = field(default_factory=list)  # (subject, error)
    known: list[str] = field(default_factory=list)  # guids seen but not re-read (unchanged)


class SourceError(Exception):
    """The whole source failed (unreadable, not a feed); ``retry_after`` if a server asked."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
