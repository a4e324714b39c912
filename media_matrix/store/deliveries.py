"""Deliveries (a pack on a channel), their attempt log and remote metrics.

Only the schema lives here so far; the queueing, claiming and recording methods arrive with
the planner and the dispatch engine.
"""

from __future__ import annotations

from media_matrix.store.base import Migration, StoreBase

MIGRATIONS: list[Migration] = [
    (
        "deliveries_001_create",
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            channel TEXT NOT NULL,
            edition INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending',
                'submitted', 'delivered', 'failed', 'dead', 'unknown', 'cancelled')),
            slot_at TEXT,
            scheduled_at TEXT NOT NULL,
            next_attempt_at TEXT,
            lease_until TEXT,
            lease_owner TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            batch TEXT,
            remote_id TEXT,
            remote_state TEXT NOT NULL DEFAULT '{}',
            url TEXT,
            last_error TEXT,
            urgent INTEGER NOT NULL DEFAULT 0,
            queued_by TEXT NOT NULL DEFAULT 'planner',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            delivered_at TEXT,
            UNIQUE (pack_id, channel, edition)
        );
        CREATE INDEX deliveries_due ON deliveries (status, scheduled_at);
        CREATE INDEX deliveries_channel ON deliveries (channel, scheduled_at);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            n INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            outcome TEXT,
            http_status INTEGER,
            remote_id TEXT,
            error TEXT,
            excerpt TEXT
        );
        CREATE INDEX attempts_delivery ON attempts (delivery_id, n);
        CREATE TABLE metrics (
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            day TEXT NOT NULL,
            reads INTEGER NOT NULL DEFAULT 0,
            shares INTEGER NOT NULL DEFAULT 0,
            impressions INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL CHECK (source IN ('measured', 'estimated')),
            fetched_at TEXT NOT NULL,
            UNIQUE (delivery_id, day, source)
        )
        """,
    ),
]


class DeliveryStore(StoreBase):
    pass
