"""Tracked links, their hits, the daily visitor salts and the 科普信息员 (officers).

A link belongs either to a delivery or to an officer x pack (exactly one of the two). A hit
holds its local day, user-agent class, whether it counts as a click and the visitor key; never
an address. ``link_salts`` keeps the salt of the current day only: older ones are deleted as soon
as a new day's salt is made, so old visitor keys cannot be recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from media_matrix.store.base import Migration, NotFound, StoreBase, dumps, loads
from media_matrix.timeutil import now_iso

MIGRATIONS: list[Migration] = [
    (
        "links_001_create",
        """
        CREATE TABLE officers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            county TEXT NOT NULL,
            township TEXT NOT NULL,
            groups TEXT NOT NULL DEFAULT '[]',
            token TEXT NOT NULL UNIQUE,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (name, county, township)
        );
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            delivery_id INTEGER REFERENCES deliveries (id),
            officer_id INTEGER REFERENCES officers (id),
            created_at TEXT NOT NULL,
            CHECK ((delivery_id IS NULL) <> (officer_id IS NULL))
        );
        CREATE UNIQUE INDEX links_delivery ON links (delivery_id) WHERE delivery_id IS NOT NULL;
        CREATE UNIQUE INDEX links_officer_pack ON links (officer_id, pack_id)
            WHERE officer_id IS NOT NULL;
        CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            link_id INTEGER NOT NULL REFERENCES links (id),
            day TEXT NOT NULL,
            ua_class TEXT NOT NULL CHECK (ua_class IN ('wechat', 'mobile', 'desktop', 'bot')),
            counted INTEGER NOT NULL,
            visitor TEXT NOT NULL
        );
        CREATE INDEX hits_link ON hits (link_id, counted, day, visitor);
        CREATE TABLE link_salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL)
        """,
    ),
]

# A hit to record: (link_id, local day, ua_class, counted 0/1, visitor key).
HitRow = tuple[int, str, str, int, str]


def _officer(row: dict[str, Any]) -> dict[str, Any]:
    row["groups"] = loads(row["groups"], [])
    row["disabled"] = bool(row["disabled"])
    return row


class LinkStore(StoreBase):
    # -- links ----------------------------------------------------------------------------------

    def delivery_link(self, delivery_id: int, new_code: Callable[[], str]) -> str:
        """The code of the delivery's tracked link, created on first use."""
        return self.delivery_links([delivery_id], new_code)[delivery_id]

    def delivery_links(
        self, delivery_ids: Sequence[int], new_code: Callable[[], str]
    ) -> dict[int, str]:
        """Codes of the deliveries' tracked links, the missing ones created (one transaction;
        a read first, so a retry's render writes nothing)."""
        wanted = list(dict.fromkeys(delivery_ids))
        marks = ", ".join("?" for _ in wanted)
        sql = f"SELECT delivery_id, code FROM links WHERE delivery_id IN ({marks})"
        found = {r["delivery_id"]: r["code"] for r in self.query(sql, wanted)}
        missing = [d for d in wanted if d not in found]
        if not missing:
            return found
        with self.transaction() as conn:
            for delivery_id in missing:
                row = conn.execute(
                    "SELECT code FROM links WHERE delivery_id = ?", (delivery_id,)
                ).fetchone()
                if row:
                    found[delivery_id] = row[0]
                    continue
                pack = conn.execute(
                    "SELECT pack_id FROM deliveries WHERE id = ?", (delivery_id,)
                ).fetchone()
                if pack is None:
                    raise NotFound(f"delivery {delivery_id} not found")
                code = new_code()
                conn.execute(
                    "INSERT INTO links (code, pack_id, delivery_id, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (code, pack[0], delivery_id, now_iso()),
                )
                found[delivery_id] = code
        return found

    def officer_links(
        self, officer_id: int, pack_ids: Sequence[int], new_code: Callable[[], str]
    ) -> dict[int, str]:
        """Codes of the officer's personal links to these packs, created on first use."""
        out: dict[int, str] = {}
        with self.transaction() as conn:
            for pack_id in pack_ids:
                row = conn.execute(
                    "SELECT code FROM links WHERE officer_id = ? AND pack_id = ?",
                    (officer_id, pack_id),
                ).fetchone()
                if row is None:
                    code = new_code()
                    conn.execute(
                        "INSERT INTO links (code, pack_id, officer_id, created_at)"
                        " VALUES (?, ?, ?, ?)",
                        (code, pack_id, officer_id, now_iso()),
                    )
                    out[pack_id] = code
                else:
                    out[pack_id] = row[0]
        return out

    def resolve_link(self, code: str) -> dict[str, Any] | None:
        """A live link by code with its pack's source URL (None: unknown, or its officer is
        disabled: both answer alike)."""
        return self.query_one(
            """
            SELECT l.id, l.pack_id, l.delivery_id, l.officer_id, p.url AS source_url
            FROM links l JOIN packs p ON p.id = l.pack_id
            LEFT JOIN officers o ON o.id = l.officer_id
            WHERE l.code = ? AND coalesce(o.disabled, 0) = 0
            """,
            (code,),
        )

    def public_copies(self, pack_id: int) -> list[dict[str, Any]]:
        """Delivered copies of a pack that carry a URL: id, channel, url, delivered_at."""
        return self.query(
            "SELECT id, channel, url, delivered_at FROM deliveries"
            " WHERE pack_id = ? AND status = 'delivered' AND url IS NOT NULL",
            (pack_id,),
        )

    def links_of(self, *, delivery_id: int | None = None) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM links WHERE delivery_id IS ?", (delivery_id,))

    # -- hits -----------------------------------------------------------------------------------

    def record_hits(self, rows: Iterable[HitRow]) -> int:
        rows = list(rows)
        if rows:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT INTO hits (link_id, day, ua_class, counted, visitor)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        return len(rows)

    def day_salt(self, day: str, make: Callable[[], bytes]) -> bytes:
        """The salt of ``day`` (created on first use); salts of earlier days are deleted."""
        with self.transaction() as conn:
            row = conn.execute("SELECT salt FROM link_salts WHERE day = ?", (day,)).fetchone()
            if row:
                return bytes(row[0])
            salt = make()
            conn.execute("DELETE FROM link_salts WHERE day < ?", (day,))
            conn.execute("INSERT INTO link_salts (day, salt) VALUES (?, ?)", (day, salt))
            return salt

    def link_figures(self, link_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Per link: clicks (counted hits), unique visitors (distinct per day), bot hits."""
        where = ""
        params: list[Any] = []
        if link_ids is not None:
            where = f"WHERE l.id IN ({', '.join('?' for _ in link_ids)})"
            params = list(link_ids)
        return self.query(
            f"""
            SELECT l.id, l.code, l.delivery_id, l.officer_id, l.pack_id,
                   coalesce(sum(h.counted), 0) AS clicks,
                   count(DISTINCT CASE WHEN h.counted THEN h.day || h.visitor END) AS visitors,
                   coalesce(sum(h.id IS NOT NULL AND NOT h.counted), 0) AS bots
            FROM links l LEFT JOIN hits h ON h.link_id = l.id
            {where}
            GROUP BY l.id ORDER BY l.id
            """,
            params,
        )

    # -- officers -------------------------------------------------------------------------------

    def import_officers(
        self, rows: Sequence[dict[str, Any]], new_token: Callable[[], str]
    ) -> tuple[int, int]:
        """Add or update officers (keyed by name, county, township) in one transaction;
        an updated officer keeps its token. Returns (added, updated)."""
        added = updated = 0
        at = now_iso()
        with self.transaction() as conn:
            for row in rows:
                found = conn.execute(
                    "SELECT id FROM officers WHERE name = ? AND county = ? AND township = ?",
                    (row["name"], row["county"], row["township"]),
                ).fetchone()
                if found:
                    conn.execute(
                        "UPDATE officers SET groups = ?, updated_at = ? WHERE id = ?",
                        (dumps(list(row["groups"])), at, found[0]),
                    )
                    updated += 1
                else:
                    conn.execute(
                        "INSERT INTO officers (name, county, township, groups, token,"
                        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            row["name"],
                            row["county"],
                            row["township"],
                            dumps(list(row["groups"])),
                            new_token(),
                            at,
                            at,
                        ),
                    )
                    added += 1
        return added, updated

    def list_officers(
        self, *, county: str | None = None, include_disabled: bool = True
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if county:
            where.append("county = ?")
            params.append(county)
        if not include_disabled:
            where.append("disabled = 0")
        sql = "SELECT * FROM officers" + (" WHERE " + " AND ".join(where) if where else "")
        return [_officer(r) for r in self.query(sql + " ORDER BY county, township, id", params)]

    def page_officers(
        self, *, county: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the roster (disabled officers included) and the roster's size; each
        officer with ``links`` (personal tracked links made) and ``clicks`` (counted hits on
        them), counted for the page's officers only."""
        where, params = ("WHERE o.county = ?", [county]) if county else ("", [])
        rows = self.query(
            f"""
            SELECT o.*,
                   (SELECT count(*) FROM links l WHERE l.officer_id = o.id) AS links,
                   (SELECT count(*) FROM links l JOIN hits h ON h.link_id = l.id
                    WHERE l.officer_id = o.id AND h.counted = 1) AS clicks
            FROM officers o {where}
            ORDER BY o.county, o.township, o.id LIMIT ? OFFSET ?
            """,
            (*params, limit, offset),
        )
        total = self.query_one(f"SELECT count(*) AS n FROM officers o {where}", params)
        return [_officer(r) for r in rows], int(total["n"]) if total else 0

    def get_officer(self, officer_id: int) -> dict[str, Any]:
        row = self.query_one("SELECT * FROM officers WHERE id = ?", (officer_id,))
        if row is None:
            raise NotFound(f"officer {officer_id} not found")
        return _officer(row)

    def officer_by_token(self, token: str) -> dict[str, Any] | None:
        row = self.query_one("SELECT * FROM officers WHERE token = ? AND disabled = 0", (token,))
        return _officer(row) if row else None

    def disable_officer(self, officer_id: int) -> None:
        cur = self.execute(
            "UPDATE officers SET disabled = 1, updated_at = ? WHERE id = ?",
            (now_iso(), officer_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"officer {officer_id} not found")

    def packs_for_officer(
        self, county: str, groups: Sequence[str], since: str, until: str
    ) -> list[int]:
        """Approved packs that arrived in [since, until) for the officer's county (or the city
        level) and groups (a pack for the general public, or untagged, fits every group)."""
        wanted = [*groups, "public"]
        marks = ", ".join("?" for _ in wanted)
        rows = self.query(
            f"""
            SELECT p.id FROM packs p
            WHERE p.status = 'approved' AND p.fetched_at >= ? AND p.fetched_at < ?
              AND (p.county = ? OR p.county = '市级')
              AND (EXISTS (SELECT 1 FROM pack_tags t WHERE t.pack_id = p.id AND t.kind = 'group'
                           AND t.removed = 0 AND t.tag IN ({marks}))
                   OR NOT EXISTS (SELECT 1 FROM pack_tags t WHERE t.pack_id = p.id
                                  AND t.kind = 'group' AND t.removed = 0))
            ORDER BY p.fetched_at DESC, p.id DESC
            """,
            (since, until, county, *wanted),
        )
        return [r["id"] for r in rows]


__all__ = ["HitRow", "LinkStore"]
