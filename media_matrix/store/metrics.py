"""Metrics family of the store (see store/__init__.py)."""

from __future__ import annotations

from media_matrix.store.base import Migration, StoreBase

MIGRATIONS: list[Migration] = []


class MetricsStore(StoreBase):
    pass
