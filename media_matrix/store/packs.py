"""Packs, the sources that delivered them, their change history and their tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from media_matrix.models import Item, Pack, PackStatus, Tag
from media_matrix.store.base import Migration, NotFound, StoreBase, dumps, loads


def _tag_list(pack: str, kind: str) -> str:
    """SQL for a pack's live tags of one kind as ',a,b,' (NULL when it has none)."""
    return (
        "(SELECT ',' || group_concat(tag, ',') || ',' FROM (SELECT tag FROM pack_tags"
        f" WHERE pack_id = {pack} AND kind = '{kind}' AND removed = 0 ORDER BY tag))"
    )


def _tag_sets_triggers(*, held: bool = False) -> str:
    """Triggers that rewrite a pack's row of ``pack_tag_sets`` whenever one of its tags is
    added, changed or deleted (DELETE then INSERT: a trigger's OR REPLACE would give way to
    the conflict clause of the upsert that fired it).

    ``held``: the triggers stand aside while ``pack_tag_sets_held`` has its row, which a
    batch writer sets inside its own transaction and clears after rebuilding the rows of
    every pack it touched in one statement (see ``replace_rule_tags_many``); and an update
    that leaves a tag's identity and ``removed`` alone (a new score or reason) rebuilds
    nothing."""
    script = ""
    for name, event, row in (
        ("ins", "INSERT", "NEW"),
        ("upd", "UPDATE OF pack_id, kind, tag, removed", "NEW"),
        ("del", "DELETE", "OLD"),
    ):
        pack = f"{row}.pack_id"
        if not held:
            event = event.split(" OF ")[0]
        when = " WHEN NOT EXISTS (SELECT 1 FROM pack_tag_sets_held)" if held else ""
        script += (
            f";\nCREATE TRIGGER pack_tag_sets_{name} AFTER {event} ON pack_tags{when} BEGIN"
            f" DELETE FROM pack_tag_sets WHERE pack_id = {pack};"
            " INSERT INTO pack_tag_sets (pack_id, groups, topics)"
            f" SELECT {pack}, {_tag_list(pack, 'group')}, {_tag_list(pack, 'topic')}; END"
        )
    return script


MIGRATIONS: list[Migration] = [
    (
        "packs_001_create",
        """
        CREATE TABLE packs (
            id INTEGER PRIMARY KEY,
            guid TEXT NOT NULL,
            url TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            content_html TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL DEFAULT '',
            images TEXT NOT NULL DEFAULT '[]',
            enclosures TEXT NOT NULL DEFAULT '[]',
            author TEXT NOT NULL DEFAULT '',
            categories TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT '',
            county TEXT NOT NULL DEFAULT '市级',
            published_at TEXT,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'approved', 'rejected', 'archived')),
            urgent INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX packs_content_hash ON packs (content_hash);
        CREATE INDEX packs_url ON packs (url);
        CREATE INDEX packs_status ON packs (status, published_at);
        CREATE TABLE pack_sources (
            id INTEGER PRIMARY KEY,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            feed TEXT NOT NULL,
            guid TEXT NOT NULL,
            url TEXT,
            item_hash TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            UNIQUE (feed, guid)
        );
        CREATE INDEX pack_sources_pack ON pack_sources (pack_id);
        CREATE INDEX pack_sources_url ON pack_sources (url);
        CREATE TABLE pack_changes (
            id INTEGER PRIMARY KEY,
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            feed TEXT NOT NULL,
            at TEXT NOT NULL,
            fields TEXT NOT NULL,
            old_hash TEXT NOT NULL,
            new_hash TEXT NOT NULL
        );
        CREATE TABLE pack_tags (
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            kind TEXT NOT NULL CHECK (kind IN ('group', 'topic')),
            tag TEXT NOT NULL,
            score REAL NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT '',
            origin TEXT NOT NULL DEFAULT 'rule' CHECK (origin IN ('rule', 'editor')),
            removed INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            UNIQUE (pack_id, kind, tag)
        );
        CREATE INDEX pack_tags_tag ON pack_tags (kind, tag, removed)
        """,
    ),
    (
        "packs_002_tag_hints",
        """
        ALTER TABLE packs ADD COLUMN hint_groups TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE packs ADD COLUMN hint_topics TEXT NOT NULL DEFAULT '[]'
        """,
    ),
    (
        "packs_003_source_label",
        "ALTER TABLE pack_sources ADD COLUMN label TEXT NOT NULL DEFAULT ''",
    ),
    (
        "packs_004_origin_and_diff",
        """
        ALTER TABLE packs ADD COLUMN local_root TEXT;
        ALTER TABLE packs ADD COLUMN content_feed TEXT;
        ALTER TABLE pack_changes ADD COLUMN diff TEXT NOT NULL DEFAULT '';
        UPDATE packs SET published_at = fetched_at
            WHERE julianday(published_at) > julianday(fetched_at) + 1
        """,
    ),
    (
        # The planner's candidates in its rank order (freshest first, ties by id), read a
        # batch at a time from the approved, non-urgent packs.
        "packs_005_plan_rank",
        """
        CREATE INDEX IF NOT EXISTS packs_plan_rank ON packs
            (status, urgent, coalesce(published_at, fetched_at) DESC, id)
        """,
    ),
    (
        # Each pack's live groups and topics as ',a,b,' lists (NULL: none), kept by triggers
        # on every tag change: the statistics group deliveries by them without reading
        # pack_tags once per delivery (or rebuilding the lists of every pack per report).
        "packs_006_tag_sets",
        """
        CREATE TABLE pack_tag_sets (pack_id INTEGER PRIMARY KEY, groups TEXT, topics TEXT);
        INSERT INTO pack_tag_sets (pack_id, groups, topics)
            SELECT pack_id,
                   ',' || group_concat(CASE kind WHEN 'group' THEN tag END, ',') || ',',
                   ',' || group_concat(CASE kind WHEN 'topic' THEN tag END, ',') || ','
            FROM (SELECT pack_id, kind, tag FROM pack_tags WHERE removed = 0
                  ORDER BY pack_id, kind, tag)
            GROUP BY pack_id
        """
        + _tag_sets_triggers(),
    ),
    (
        # Rule tags of a whole ingest are written in one pass; rebuilding a pack's sets once
        # per tag row was most of that pass (see _tag_sets_triggers).
        "packs_007_tag_sets_held",
        """
        CREATE TABLE pack_tag_sets_held (held INTEGER PRIMARY KEY CHECK (held = 1));
        DROP TRIGGER pack_tag_sets_ins;
        DROP TRIGGER pack_tag_sets_upd;
        DROP TRIGGER pack_tag_sets_del
        """
        + _tag_sets_triggers(held=True),
    ),
]

# A campaign as the candidate query filters by it: (topics, groups); a pack belongs when it
# shares a topic (if any are listed) and a group (if any are listed).
CampaignTags = tuple[Sequence[str], Sequence[str]]
_RANK = "coalesce(p.published_at, p.fetched_at)"

# Fields an item carries into its pack; compared to tell what changed.
ITEM_FIELDS = (
    "title",
    "url",
    "summary",
    "content_html",
    "text",
    "images",
    "enclosures",
    "author",
    "categories",
    "published_at",
)
_JSON_FIELDS = ("images", "enclosures", "categories", "hint_groups", "hint_topics")


def _item_row(item: Item) -> dict[str, Any]:
    row = {name: getattr(item, name) for name in ITEM_FIELDS}
    row["enclosures"] = [asdict(e) for e in item.enclosures]
    row["hint_groups"] = item.groups
    row["hint_topics"] = item.topics
    row["local_root"] = item.local_root
    for name in _JSON_FIELDS:
        row[name] = dumps(row[name])
    return row


class PackStore(StoreBase):
    # -- dedupe look-ups ------------------------------------------------------------------------

    def source_of(self, feed: str, guid: str) -> dict[str, Any] | None:
        """The pack this feed already delivered under this guid, with the hash it had then."""
        return self.query_one(
            "SELECT pack_id, item_hash, url FROM pack_sources WHERE feed = ? AND guid = ?",
            (feed, guid),
        )

    def pack_id_by_url(self, url: str) -> int | None:
        # every pack is stored with its first source, so pack_sources holds every link
        row = self.query_one(
            "SELECT pack_id FROM pack_sources WHERE url = ? ORDER BY id LIMIT 1", (url,)
        )
        return row["pack_id"] if row else None

    def pack_id_by_hash(self, content_hash: str) -> int | None:
        row = self.query_one(
            "SELECT id FROM packs WHERE content_hash = ? ORDER BY id LIMIT 1", (content_hash,)
        )
        return row["id"] if row else None

    def feed_guid_labels(self, feed: str) -> dict[str, str]:
        """guid -> how the feed's list page last showed it (HTML sources)."""
        rows = self.query("SELECT guid, label FROM pack_sources WHERE feed = ?", (feed,))
        return {r["guid"]: r["label"] for r in rows}

    def feed_guid_hashes(self, feed: str) -> dict[str, str]:
        """guid -> item hash for everything this feed delivered (one query per poll)."""
        rows = self.query("SELECT guid, item_hash FROM pack_sources WHERE feed = ?", (feed,))
        return {r["guid"]: r["item_hash"] for r in rows}

    # -- writes ---------------------------------------------------------------------------------

    def insert_pack(self, feed: str, item: Item, *, at: str, status: PackStatus) -> int:
        row = _item_row(item)
        row.update(
            guid=item.guid,
            source=item.source,
            county=item.county,
            fetched_at=at,
            updated_at=at,
            content_hash=item.content_hash,
            status=str(status),
            content_feed=feed,
        )
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO packs ({columns}) VALUES ({marks})", tuple(row.values())
            )
            pack_id = int(cursor.lastrowid or 0)
            self._add_source(conn, pack_id, feed, item, at)
        return pack_id

    def add_source(self, pack_id: int, feed: str, item: Item, *, at: str) -> None:
        with self.transaction() as conn:
            self._add_source(conn, pack_id, feed, item, at)

    def _add_source(self, conn: Any, pack_id: int, feed: str, item: Item, at: str) -> None:
        conn.execute(
            """
            INSERT INTO pack_sources (pack_id, feed, guid, url, item_hash, label,
                                      first_seen_at, last_seen_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (feed, guid) DO UPDATE SET
                pack_id = excluded.pack_id, url = excluded.url, item_hash = excluded.item_hash,
                label = excluded.label, last_seen_at = excluded.last_seen_at
            """,
            (pack_id, feed, item.guid, item.url, item.content_hash, item.label, at, at),
        )

    def update_pack_content(
        self, pack_id: int, feed: str, item: Item, *, at: str, diff: str = ""
    ) -> list[str]:
        """Overwrite a pack with a changed item (``feed``'s text is now the pack's); records the
        change with ``diff`` (readable, for the editor) and returns the changed fields."""
        new = _item_row(item)
        new["content_feed"] = feed
        with self.transaction() as conn:
            cols = ", ".join(ITEM_FIELDS)
            old_row = conn.execute(
                f"SELECT {cols}, content_hash FROM packs WHERE id = ?", (pack_id,)
            ).fetchone()
            if old_row is None:
                raise NotFound(f"pack {pack_id} not found")
            old = dict(zip((*ITEM_FIELDS, "content_hash"), old_row, strict=True))
            changed = [name for name in ITEM_FIELDS if old[name] != new[name]]
            if old["content_hash"] != item.content_hash and "text" not in changed:
                changed.append("content_hash")
            assignments = ", ".join(f"{name} = ?" for name in new)
            conn.execute(
                f"UPDATE packs SET {assignments}, content_hash = ?, updated_at = ?,"
                " revision = revision + 1 WHERE id = ?",
                (*new.values(), item.content_hash, at, pack_id),
            )
            conn.execute(
                "INSERT INTO pack_changes (pack_id, feed, at, fields, old_hash, new_hash, diff)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pack_id, feed, at, dumps(changed), old["content_hash"], item.content_hash, diff),
            )
            self._add_source(conn, pack_id, feed, item, at)
        return changed

    def content_feed(self, pack_id: int) -> str | None:
        """The feed whose text the pack holds (its first source for packs stored before)."""
        row = self.query_one(
            "SELECT COALESCE(p.content_feed, (SELECT feed FROM pack_sources s"
            " WHERE s.pack_id = p.id ORDER BY s.id LIMIT 1)) AS feed FROM packs p WHERE p.id = ?",
            (pack_id,),
        )
        return row["feed"] if row else None

    def pack_changes(self, pack_id: int, limit: int = 5) -> list[dict[str, Any]]:
        """The latest content changes of a pack, newest first, with their diffs."""
        rows = self.query(
            "SELECT at, feed, fields, diff FROM pack_changes WHERE pack_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (pack_id, limit),
        )
        for row in rows:
            row["fields"] = loads(row["fields"], [])
        return rows

    def touch_sources(self, feed: str, guids: list[str], at: str) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE pack_sources SET last_seen_at = ? WHERE feed = ? AND guid = ?",
                [(at, feed, guid) for guid in guids],
            )

    def set_pack_status(self, pack_ids: list[int], status: PackStatus) -> None:
        self._require_packs(pack_ids)
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE packs SET status = ? WHERE id = ?", [(str(status), i) for i in pack_ids]
            )

    def set_pack_urgent(self, pack_id: int, urgent: bool) -> None:
        self._require_packs([pack_id])
        self.execute("UPDATE packs SET urgent = ? WHERE id = ?", (int(urgent), pack_id))

    def _require_packs(self, pack_ids: list[int]) -> None:
        marks = ", ".join("?" for _ in pack_ids)
        found = {
            r["id"] for r in self.query(f"SELECT id FROM packs WHERE id IN ({marks})", pack_ids)
        }
        missing = [i for i in pack_ids if i not in found]
        if missing:
            raise NotFound(f"pack {missing[0]} not found")

    # -- tags -----------------------------------------------------------------------------------

    def tags_of(self, pack_id: int, include_removed: bool = False) -> list[Tag]:
        sql = "SELECT kind, tag, score, reason, origin, removed FROM pack_tags WHERE pack_id = ?"
        if not include_removed:
            sql += " AND removed = 0"
        rows = self.query(sql + " ORDER BY kind, score DESC, tag", (pack_id,))
        return [Tag(**{**r, "removed": bool(r["removed"])}) for r in rows]

    def replace_rule_tags(self, pack_id: int, tags: list[Tag], *, at: str) -> int:
        """Set the rule-made tags of a pack, keeping every editor decision; returns changes."""
        return self.replace_rule_tags_many([(pack_id, tags)], at=at).get(pack_id, 0)

    def replace_rule_tags_many(
        self, tagged: Sequence[tuple[int, list[Tag]]], *, at: str
    ) -> dict[int, int]:
        """``replace_rule_tags`` for many packs in one pass (a pack given twice keeps its last
        tags); returns the number of changes per pack."""
        wanted = {pack_id: {(t.kind, t.tag): t for t in tags} for pack_id, tags in tagged}
        if not wanted:
            return {}
        changes = dict.fromkeys(wanted, 0)
        deletes: list[tuple[int, str, str]] = []
        upserts: list[tuple[Any, ...]] = []
        with self.transaction() as conn:
            current = self._tag_origins(conn, list(wanted))
            for (pack_id, kind, tag), was in current.items():
                if was == "rule" and (kind, tag) not in wanted[pack_id]:
                    deletes.append((pack_id, kind, tag))
                    changes[pack_id] += 1
            for pack_id, tags in wanted.items():
                for (kind, tag), t in tags.items():
                    origin = current.get((pack_id, kind, tag))
                    if origin == "editor":
                        continue
                    changes[pack_id] += origin is None
                    upserts.append((pack_id, kind, tag, t.score, t.reason, at))
            conn.execute("INSERT INTO pack_tag_sets_held (held) VALUES (1)")
            try:
                conn.executemany(
                    "DELETE FROM pack_tags WHERE pack_id = ? AND kind = ? AND tag = ?", deletes
                )
                conn.executemany(
                    """
                    INSERT INTO pack_tags (pack_id, kind, tag, score, reason, origin, removed,
                                           updated_at)
                    VALUES (?, ?, ?, ?, ?, 'rule', 0, ?)
                    ON CONFLICT (pack_id, kind, tag) DO UPDATE SET
                        score = excluded.score, reason = excluded.reason,
                        updated_at = excluded.updated_at
                    """,
                    upserts,
                )
            finally:  # even if a caller inside a wider transaction goes on after an error
                self._rebuild_tag_sets(conn, list(wanted))
                conn.execute("DELETE FROM pack_tag_sets_held")
        return changes

    @staticmethod
    def _rebuild_tag_sets(conn: Any, pack_ids: list[int]) -> None:
        """Each given pack's ``pack_tag_sets`` row from its tags, in two statements."""
        ids = dumps(pack_ids)
        conn.execute(
            "DELETE FROM pack_tag_sets WHERE pack_id IN (SELECT value FROM json_each(?))", (ids,)
        )
        conn.execute(
            "INSERT INTO pack_tag_sets (pack_id, groups, topics) SELECT j.value,"
            f" {_tag_list('j.value', 'group')}, {_tag_list('j.value', 'topic')}"
            " FROM json_each(?) j",
            (ids,),
        )

    @staticmethod
    def _tag_origins(conn: Any, pack_ids: list[int]) -> dict[tuple[int, str, str], str]:
        """(pack, kind, tag) -> origin of every stored tag of these packs."""
        rows = conn.execute(
            "SELECT pack_id, kind, tag, origin FROM pack_tags"
            " WHERE pack_id IN (SELECT value FROM json_each(?))",
            (dumps(pack_ids),),
        )
        return {(pack_id, kind, tag): origin for pack_id, kind, tag, origin in rows}

    def set_editor_tag(
        self, pack_id: int, kind: str, tag: str, *, removed: bool, who: str, at: str
    ) -> None:
        """An editor adds (or removes) a tag; rules never override this row again."""
        self._require_packs([pack_id])
        reason = f"编辑{'移除' if removed else '添加'}: {who}"
        self.execute(
            """
            INSERT INTO pack_tags (pack_id, kind, tag, score, reason, origin, removed, updated_at)
            VALUES (?, ?, ?, 0, ?, 'editor', ?, ?)
            ON CONFLICT (pack_id, kind, tag) DO UPDATE SET
                reason = excluded.reason, origin = 'editor', removed = excluded.removed,
                updated_at = excluded.updated_at
            """,
            (pack_id, kind, tag, reason, int(removed), at),
        )

    # -- reads ----------------------------------------------------------------------------------

    def get_pack(self, pack_id: int) -> Pack:
        packs = self.list_packs(ids=[pack_id], full=True)
        if not packs:
            raise NotFound(f"pack {pack_id} not found")
        pack = packs[0]
        pack.tags = self.tags_of(pack_id, include_removed=True)
        return pack

    def list_packs(
        self,
        *,
        status: str | None = None,
        group: str | None = None,
        topic: str | None = None,
        ids: list[int] | None = None,
        full: bool = False,
        limit: int | None = None,
    ) -> list[Pack]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("p.status = ?")
            params.append(status)
        for kind, tag in (("group", group), ("topic", topic)):
            if tag:
                where.append(
                    "EXISTS (SELECT 1 FROM pack_tags t WHERE t.pack_id = p.id AND t.kind = ?"
                    " AND t.tag = ? AND t.removed = 0)"
                )
                params += [kind, tag]
        if ids is not None:
            where.append(f"p.id IN ({', '.join('?' for _ in ids)})")
            params += ids
        body = ", p.content_html, p.text" if full else ""
        sql = f"""
            SELECT p.id, p.guid, p.url, p.title, p.summary, p.status, p.urgent, p.content_hash,
                   p.published_at, p.fetched_at, p.updated_at, p.author, p.county, p.source,
                   p.images, p.enclosures, p.categories, p.local_root{body},
                   (SELECT json_group_array(feed) FROM
                        (SELECT DISTINCT feed FROM pack_sources s WHERE s.pack_id = p.id
                         ORDER BY s.id)) AS feeds,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                        AND t.kind = 'group' AND t.removed = 0) AS groups_json,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                        AND t.kind = 'topic' AND t.removed = 0) AS topics_json
            FROM packs p
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY COALESCE(p.published_at, p.fetched_at) DESC, p.id DESC
            {"LIMIT " + str(int(limit)) if limit else ""}
        """
        return [_pack_from_row(r) for r in self.query(sql, params)]

    def pack_titles(self, ids: Sequence[int]) -> dict[int, str]:
        """id -> title of these packs (missing ones left out)."""
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = self.query(f"SELECT id, title FROM packs WHERE id IN ({_marks(chunk)})", chunk)
            out.update((r["id"], r["title"]) for r in rows)
        return out

    def plan_candidates(
        self,
        channel: str,
        *,
        counties: Sequence[str] | None,
        groups: Sequence[str] | None,
        campaigns: Sequence[CampaignTags] = (),
        in_campaign: bool | None = None,
        after: tuple[str, int] | None = None,
        limit: int = 64,
        ids: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Approved, non-urgent packs that may go to ``channel`` and have no live delivery on
        it, in the planner's rank order (freshest first, ties by id), ``limit`` at a time after
        the (rank, id) of the last one read. ``counties``/``groups``: the pack's county (NULL
        is 市级) and one of its groups must be among them (None: any). ``in_campaign``: only
        packs of one of ``campaigns`` (True), only packs of none (False), or either (None).
        ``ids``: only these packs (the ones editors linked to residents' orders).
        Rows: id, county, rank_at (published, else fetched), groups, topics."""
        where = ["p.status = 'approved'", "p.urgent = 0"]
        params: list[Any] = []
        if ids is not None:
            where.append(f"p.id IN ({_marks(ids) if ids else 'NULL'})")
            params += list(ids)
        if after is not None:
            where.append(f"{_RANK} <= ? AND NOT ({_RANK} = ? AND p.id <= ?)")
            params += [after[0], after[0], after[1]]
        if counties is not None:
            where.append(f"coalesce(nullif(p.county, ''), '市级') IN ({_marks(counties)})")
            params += counties
        if groups is not None:
            where.append(_has_tag("group", groups, params))
        where.append(
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.pack_id = p.id AND d.channel = ?"
            " AND d.status != 'cancelled')"
        )
        params.append(channel)
        if in_campaign is not None:
            hot = _campaign_match(campaigns, params)
            where.append(hot if in_campaign else f"NOT ({hot})")
        rows = self.query(
            f"""
            SELECT p.id, p.county, {_RANK} AS rank_at,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                        AND t.kind = 'group' AND t.removed = 0) AS groups_json,
                   (SELECT json_group_array(tag) FROM pack_tags t WHERE t.pack_id = p.id
                        AND t.kind = 'topic' AND t.removed = 0) AS topics_json
            FROM packs p WHERE {" AND ".join(where)}
            ORDER BY {_RANK} DESC, p.id LIMIT ?
            """,
            [*params, int(limit)],
        )
        for row in rows:
            row["groups"] = sorted(loads(row.pop("groups_json"), []))
            row["topics"] = sorted(loads(row.pop("topics_json"), []))
        return rows

    def packs_for_tagging(self, ids: list[int] | None = None) -> list[dict[str, Any]]:
        """What the tagger reads of each pack: text fields, source categories, pack.yaml hints."""
        sql = "SELECT id, title, summary, text, categories, hint_groups, hint_topics FROM packs"
        params: list[Any] = []
        if ids is not None:
            sql += f" WHERE id IN ({', '.join('?' for _ in ids)})"
            params = list(ids)
        rows = self.query(sql + " ORDER BY id", params)
        for row in rows:
            for name in ("categories", "hint_groups", "hint_topics"):
                row[name] = loads(row[name], [])
        return rows

    def count_packs_by_status(self) -> dict[str, int]:
        rows = self.query("SELECT status, count(*) AS n FROM packs GROUP BY status")
        return {r["status"]: r["n"] for r in rows}


def _pack_from_row(row: dict[str, Any]) -> Pack:
    return Pack(
        id=row["id"],
        guid=row["guid"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        status=row["status"],
        urgent=bool(row["urgent"]),
        content_hash=row["content_hash"],
        published_at=row["published_at"],
        fetched_at=row["fetched_at"],
        updated_at=row["updated_at"],
        author=row["author"],
        county=row["county"],
        source=row["source"],
        images=loads(row["images"], []),
        enclosures=loads(row["enclosures"], []),
        categories=loads(row["categories"], []),
        feeds=loads(row["feeds"], []),
        groups=sorted(loads(row["groups_json"], [])),
        topics=sorted(loads(row["topics_json"], [])),
        content_html=row.get("content_html", ""),
        text=row.get("text", ""),
        local_root=row.get("local_root"),
    )


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _has_tag(kind: str, tags: Sequence[str], params: list[Any]) -> str:
    params += [kind, *tags]
    return (
        "EXISTS (SELECT 1 FROM pack_tags t WHERE t.pack_id = p.id AND t.kind = ?"
        f" AND t.tag IN ({_marks(tags)}) AND t.removed = 0)"
    )


def _campaign_match(campaigns: Sequence[CampaignTags], params: list[Any]) -> str:
    """SQL true for a pack of one of ``campaigns`` (planner.campaign_matches, in SQL)."""
    parts = []
    for topics, groups in campaigns:
        if not topics and not groups:
            continue  # a campaign listing neither matches no pack
        cond = [
            _has_tag(kind, tags, params)
            for kind, tags in (("topic", topics), ("group", groups))
            if tags
        ]
        parts.append("(" + " AND ".join(cond) + ")")
    return " OR ".join(parts) if parts else "0"
