"""SQLite store: every SQL statement of media-matrix lives in this package.

The shape: ``StoreBase`` (base.py) owns the connection, the transaction and the migrations.
Each table family is one module with one class over ``StoreBase`` that owns its tables, their
SQL and their migrations; a family uses only ``StoreBase`` and the families it names as its
bases (dispatching audits, so ``DispatchStore`` extends ``AuditStore``) -- mypy checks each
family on its own (tests/test_types.py), so a hidden call into another family fails there.
``Store`` is the facade the services hold: every family's methods on one object
(``store.get_pack(...)``), one connection, migrations in family order.
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
    deliveries.DeliveryStore,
    dispatching.DispatchStore,  # extends audit.AuditStore
    metrics.MetricsStore,
    locks.LockStore,
    links.LinkStore,
    users.UserStore,
    search.SearchStore,
    console.ConsoleStore,
    requests.RequestStore,
):
    """Every table family on one connection (see the module docstring)."""

    migrations = [m for family in _FAMILIES for m in family.MIGRATIONS]


def open_store(path: Path | str, *, migrate: bool = True) -> Store:
    """Open (and by default create or upgrade) the database at ``path``."""
    store = Store(path)
    if migrate:
        store.migrate()
    return store


__all__ = ["NotFound", "Store", "StoreBase", "StoreError", "open_store"]
