"""SQLite store: every SQL statement of media-matrix lives in this package.

``Store`` combines one mixin per table family; each family module owns its migrations.
"""

from __future__ import annotations

from pathlib import Path

from media_matrix.store import (
    audit,
    console,
    deliveries,
    dispatching,
    feeds,
    links,
    locks,
    metrics,
    packs,
    requests,
    search,
    users,
)
from media_matrix.store.base import NotFound, StoreBase, StoreError

# console, search and users are the editor console's families (issue 9)
_FAMILIES = (
    feeds,
    packs,
    audit,
    deliveries,
    dispatching,
    metrics,
    locks,
    links,
    users,
    search,
    console,
    requests,  # 群众点单 (issue 13)
)


class Store(
    feeds.FeedStore,
    packs.PackStore,
    audit.AuditStore,
    deliveries.DeliveryStore,
    dispatching.DispatchStore,
    metrics.MetricsStore,
    locks.LockStore,
    links.LinkStore,
    users.UserStore,
    search.SearchStore,
    console.ConsoleStore,
    requests.RequestStore,
):
    migrations = [m for family in _FAMILIES for m in family.MIGRATIONS]


def open_store(path: Path | str, *, migrate: bool = True) -> Store:
    """Open (and by default create or upgrade) the database at ``path``."""
    store = Store(path)
    if migrate:
        store.migrate()
    return store


__all__ = ["NotFound", "Store", "StoreBase", "StoreError", "open_store"]
