"""群众点单 (residents' topic orders): the ``requests`` table.

An order comes from the public form, an officer's page or a paper CSV. Its contact (optional,
personal data) is stored for the county's editors only: no public query here returns it. A
paper row carries ``paper_key`` (a hash of its content) so importing the same sheet twice adds
nothing. Status changes happen only through :meth:`RequestStore.change_request`, which checks
the expected current status and writes the audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from media_matrix.redact import redact
from media_matrix.store.base import Migration, NotFound, StoreBase, StoreError, dumps, loads
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "requests_001_create",
        """
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            county TEXT NOT NULL,
            township TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            group_hint TEXT,
            contact TEXT,
            groups TEXT NOT NULL DEFAULT '[]',
            topics TEXT NOT NULL DEFAULT '[]',
            reasons TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN
                ('open', 'accepted', 'declined', 'escalated', 'fulfilled')),
            source TEXT NOT NULL CHECK (source IN ('web', 'officer', 'paper')),
            officer_id INTEGER REFERENCES officers (id),
            pack_id INTEGER REFERENCES packs (id),
            delivery_id INTEGER REFERENCES deliveries (id),
            note TEXT,
            paper_key TEXT UNIQUE,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            fulfilled_at TEXT
        );
        CREATE INDEX requests_county ON requests (county, status, created_at);
        CREATE INDEX requests_status ON requests (status, created_at);
        CREATE INDEX IF NOT EXISTS deliveries_delivered ON deliveries (channel, delivered_at)
            WHERE status = 'delivered'
        """,
    ),
]

LIVE = ("open", "accepted", "escalated")  # orders still waiting for an answer
_COLUMNS = (
    "token, county, township, text, group_hint, contact, groups, topics, reasons, source,"
    " officer_id, paper_key, created_at, updated_at"
)


def _request_filter(county: str | None, statuses: Sequence[str]) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if county:
        where.append("county = ?")
        params.append(county)
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    return ("WHERE " + " AND ".join(where) if where else ""), params


def _order(row: dict[str, Any]) -> dict[str, Any]:
    row["groups"] = loads(row["groups"], [])
    row["topics"] = loads(row["topics"], [])
    row["reasons"] = loads(row["reasons"], {})
    return row


class RequestStore(StoreBase):
    def add_requests(
        self, rows: Sequence[Mapping[str, Any]], *, by: str, note: str | None = None
    ) -> list[int]:
        """Insert orders in one transaction (all or nothing), each audited. A paper row whose
        ``paper_key`` is already stored is skipped (its id is not returned)."""
        at = now_iso()
        ids: list[int] = []
        with self.transaction() as conn:
            for row in rows:
                if (
                    row.get("paper_key")
                    and conn.execute(
                        "SELECT 1 FROM requests WHERE paper_key = ?", (row["paper_key"],)
                    ).fetchone()
                ):
                    continue
                cur = conn.execute(
                    f"INSERT INTO requests ({_COLUMNS}) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["token"],
                        row["county"],
                        row.get("township") or "",
                        row["text"],
                        row.get("group_hint"),
                        row.get("contact"),
                        dumps(list(row.get("groups", []))),
                        dumps(list(row.get("topics", []))),
                        dumps(dict(row.get("reasons", {}))),
                        row["source"],
                        row.get("officer_id"),
                        row.get("paper_key"),
                        row.get("created_at") or at,
                        at,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
                conn.execute(
                    "INSERT INTO audit (at, who, action, subject, note) VALUES (?, ?, ?, ?, ?)",
                    (
                        at,
                        by,
                        "request_new",
                        f"request:{cur.lastrowid}",
                        redact(f"{row['source']}; {note}" if note else row["source"]),
                    ),
                )
        return ids

    def get_request(self, request_id: int) -> dict[str, Any]:
        row = self.query_one("SELECT * FROM requests WHERE id = ?", (request_id,))
        if row is None:
            raise NotFound(f"order {request_id} not found")
        return _order(row)

    def request_by_token(self, token: str) -> dict[str, Any] | None:
        row = self.query_one("SELECT * FROM requests WHERE token = ?", (token,))
        return _order(row) if row else None

    def list_requests(
        self,
        *,
        county: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        where, params = _request_filter(county, statuses)
        rows = self.query(
            f"SELECT * FROM requests {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_order(r) for r in rows]

    def count_requests(self, *, county: str | None = None, statuses: Sequence[str] = ()) -> int:
        where, params = _request_filter(county, statuses)
        row = self.query_one(f"SELECT count(*) AS n FROM requests {where}", params)
        return int(row["n"]) if row else 0

    def change_request(
        self,
        request_id: int,
        *,
        expect: Sequence[str],
        status: str | None,
        by: str,
        action: str,
        note: str | None = None,
        pack_id: int | None = None,
    ) -> dict[str, Any]:
        """Move an order to ``status`` (None: keep it) and/or link ``pack_id``, only if its
        status is still one of ``expect``; the audit row is written in the same transaction."""
        at = now_iso()
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()
            if row is None:
                raise NotFound(f"order {request_id} not found")
            if row[0] not in expect:
                raise StoreError(f"order {request_id} is {row[0]}")
            if (
                pack_id is not None
                and not conn.execute("SELECT 1 FROM packs WHERE id = ?", (pack_id,)).fetchone()
            ):
                raise NotFound(f"pack {pack_id} not found")
            conn.execute(
                "UPDATE requests SET status = coalesce(?, status), pack_id = coalesce(?, pack_id),"
                " note = coalesce(?, note), updated_at = ? WHERE id = ?",
                (status, pack_id, note, at, request_id),
            )
            conn.execute(
                "INSERT INTO audit (at, who, action, subject, note) VALUES (?, ?, ?, ?, ?)",
                (at, by, action, f"request:{request_id}", redact(note)),
            )
        return self.get_request(request_id)

    def fulfil_requests(
        self,
        channel_counties: Mapping[str, str],
        *,
        by: str,
        since: str | None = None,
        request_ids: Sequence[int] | None = None,
        pack_id: int | None = None,
    ) -> list[int]:
        """Mark fulfilled every live order answered by a delivered copy in its county: the
        linked pack, or (no pack linked) an approved pack sharing one of its topics, delivered
        on a channel of that county after the order came in. The earliest such copy is kept.

        ``since``: only copies delivered from then on (a dispatch round passes its start, so
        it reads only what it delivered); ``request_ids``: only these orders (a pack just
        linked may have been delivered already); ``pack_id``: only copies of this pack."""
        channels = [c for c, county in channel_counties.items() if county]
        if not channels:
            return []
        values = ", ".join("(?, ?)" for _ in channels)
        params: list[Any] = [p for c in channels for p in (c, channel_counties[c])]
        live = ", ".join("?" for _ in LIVE)
        only = ""
        if request_ids is not None:
            only = f" AND r.id IN ({', '.join('?' for _ in request_ids) or 'NULL'})"
        narrow, narrow_params = (
            "",
            list[Any](),
        )  # each bound only when given: SQLite then picks its index
        if since is not None:
            narrow, narrow_params = " AND d.delivered_at >= ?", [since]
        if pack_id is not None:
            narrow, narrow_params = narrow + " AND d.pack_id = ?", [*narrow_params, pack_id]
        found = self.query(
            f"""
            WITH chan (name, county) AS (VALUES {values}),
            fresh AS MATERIALIZED (
                SELECT d.id, d.pack_id, d.delivered_at, chan.county
                FROM chan JOIN deliveries d ON d.channel = chan.name
                WHERE d.status = 'delivered'{narrow})
            SELECT r.id, (
                SELECT f.id FROM fresh f
                WHERE f.county = r.county AND f.delivered_at >= r.created_at
                  AND (f.pack_id = r.pack_id OR (r.pack_id IS NULL AND EXISTS (
                        SELECT 1 FROM pack_tags t, json_each(r.topics) j
                        WHERE t.pack_id = f.pack_id AND t.kind = 'topic' AND t.removed = 0
                          AND t.tag = j.value)))
                ORDER BY f.delivered_at, f.id LIMIT 1) AS delivery_id
            FROM requests r WHERE r.status IN ({live}){only}
            """,
            (*params, *narrow_params, *LIVE, *(request_ids or ())),
        )
        done: list[int] = []
        at = now_iso()
        with self.transaction() as conn:
            for row in found:
                if row["delivery_id"] is None:
                    continue
                cur = conn.execute(
                    f"UPDATE requests SET status = 'fulfilled', delivery_id = ?,"
                    f" fulfilled_at = (SELECT delivered_at FROM deliveries WHERE id = ?),"
                    f" updated_at = ? WHERE id = ? AND status IN ({live})",
                    (row["delivery_id"], row["delivery_id"], at, row["id"], *LIVE),
                )
                if cur.rowcount:
                    conn.execute(
                        "INSERT INTO audit (at, who, action, subject, note) VALUES (?, ?, ?, ?, ?)",
                        (
                            at,
                            by,
                            "request_fulfilled",
                            f"request:{row['id']}",
                            f"答复投递 {row['delivery_id']}",
                        ),
                    )
                    done.append(row["id"])
        return done

    def request_demand(self) -> list[dict[str, Any]]:
        """Live orders' county, topics, groups and linked pack (what the planner favours)."""
        live = ", ".join("?" for _ in LIVE)
        rows = self.query(
            f"SELECT county, topics, groups, pack_id FROM requests WHERE status IN ({live})",
            LIVE,
        )
        for row in rows:
            row["topics"] = loads(row["topics"], [])
            row["groups"] = loads(row["groups"], [])
        return rows

    def packs_with_tags(self, pack_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Approved packs with their live topic and group tags (for matching orders)."""
        where = ""
        params: list[Any] = []
        if pack_ids is not None:
            where = f" AND p.id IN ({', '.join('?' for _ in pack_ids) or 'NULL'})"
            params = list(pack_ids)
        rows = self.query(
            f"""
            SELECT p.id, p.title, p.county, p.published_at, p.fetched_at,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                     AND t.kind = 'topic' AND t.removed = 0) AS topics,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                     AND t.kind = 'group' AND t.removed = 0) AS groups
            FROM packs p WHERE p.status = 'approved'{where}
            """,
            params,
        )
        for row in rows:
            row["topics"] = loads(row["topics"], [])
            row["groups"] = loads(row["groups"], [])
        return rows

    def request_figures_rows(
        self, since: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        """Orders created in [since, until) with what the figures need (no text, no contact),
        and whether each was ever escalated to the city (from the audit)."""
        rows = self.query(
            """
            SELECT r.id, r.county, r.status, r.topics, r.groups, r.source, r.created_at,
                   r.fulfilled_at,
                   EXISTS (SELECT 1 FROM audit a WHERE a.subject = 'request:' || r.id
                           AND a.action = 'request_escalate') AS escalated
            FROM requests r
            WHERE r.created_at >= coalesce(?, '') AND r.created_at < coalesce(?, '~')
            ORDER BY r.created_at
            """,
            (since, until),
        )
        for row in rows:
            row["topics"] = loads(row["topics"], [])
            row["groups"] = loads(row["groups"], [])
        return rows


__all__ = ["LIVE", "RequestStore"]
