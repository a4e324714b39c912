"""The store: WAL, named migrations that upgrade without losing data, packs and tags."""

from __future__ import annotations

import sqlite3

import pytest

from media_matrix.models import Item, PackStatus, Tag
from media_matrix.store import Store, open_store
from media_matrix.store.base import StoreBase


def item(guid: str, title: str = "标题", text: str = "正文" * 20) -> Item:
    return Item(guid=guid, title=title, text=text, content_hash=f"h-{guid}")


def test_wal_and_all_migrations_recorded(tmp_path):
    store = open_store(tmp_path / "a.db")
    mode = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert store.schema_version() == [name for name, _ in Store.migrations]
    assert store.migrate() == []  # idempotent
    store.close()


def test_a_later_migration_upgrades_an_old_database_without_losing_data(tmp_path):
    path = tmp_path / "old.db"

    class OldStore(Store):
        migrations = Store.migrations[:2]  # feeds and packs only: an early release

    old = OldStore(path)
    old.migrate()
    # what the early release wrote (its own code, its own columns)
    pack_id = old.execute(
        "INSERT INTO packs (guid, title, fetched_at, updated_at, content_hash, status)"
        " VALUES ('g1', '标题', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00',"
        " 'h', 'approved')"
    ).lastrowid
    old.close()

    class NewStore(Store):
        migrations = [
            *Store.migrations,
            ("packs_999_reading_level", "ALTER TABLE packs ADD COLUMN reading_level TEXT"),
        ]

    new = NewStore(path)
    applied = new.migrate()
    assert "audit_001_create" in applied and "packs_999_reading_level" in applied
    assert "packs_002_tag_hints" in applied
    upgraded = new.get_pack(pack_id)
    assert (upgraded.title, upgraded.status) == ("标题", "approved")
    assert new.query_one("SELECT reading_level FROM packs")["reading_level"] is None
    new.close()


def test_failed_migration_rolls_back_and_keeps_data(tmp_path):
    path = tmp_path / "x.db"
    store = open_store(path)
    store.insert_pack("kp", item("g1"), at="2026-11-01T00:00:00+00:00", status=PackStatus.NEW)
    store.close()

    class Broken(Store):
        migrations = [*Store.migrations, ("broken_001", "ALTER TABLE packs ADD COLUMN a; NOPE")]

    broken = Broken(path)
    with pytest.raises(sqlite3.OperationalError):
        broken.migrate()
    assert "broken_001" not in broken.schema_version()
    assert "a" not in broken.columns("packs")
    assert len(broken.list_packs()) == 1
    broken.close()


def test_editor_tags_survive_rule_retagging(tmp_path):
    store = open_store(tmp_path / "t.db")
    pid = store.insert_pack("kp", item("g1"), at="2026-11-01T00:00:00+00:00", status=PackStatus.NEW)
    at = "2026-11-01T00:00:00+00:00"
    rule = [Tag("group", "farmers", 3.0, "标题命中 农民"), Tag("topic", "agriculture", 2.0, "x")]
    assert store.replace_rule_tags(pid, rule, at=at) == 2
    store.set_editor_tag(pid, "group", "farmers", removed=True, who="王编辑", at=at)
    store.set_editor_tag(pid, "group", "seniors", removed=False, who="王编辑", at=at)
    # rules run again (e.g. after a rule change): editor decisions stay
    changes = store.replace_rule_tags(pid, [Tag("group", "farmers", 4.0, "y")], at=at)
    assert changes == 1  # agriculture dropped
    pack = store.get_pack(pid)
    assert pack.groups == ["seniors"] and pack.topics == []
    removed = [t for t in pack.tags if t.removed]
    assert [(t.tag, t.origin) for t in removed] == [("farmers", "editor")]
    assert store.list_packs(group="seniors")[0].id == pid
    assert store.list_packs(group="farmers") == []
    store.close()


def test_tag_sets_rebuilt_once_per_pack_agree_with_the_row_triggers(tmp_path):
    store = open_store(tmp_path / "t.db")
    at = "2026-11-01T00:00:00+00:00"
    ids = [store.insert_pack("kp", item(f"g{i}"), at=at, status=PackStatus.NEW) for i in range(4)]
    store.set_editor_tag(ids[1], "group", "seniors", removed=False, who="王编辑", at=at)
    store.set_editor_tag(ids[2], "topic", "health", removed=True, who="王编辑", at=at)

    def sets() -> dict[int, tuple[str | None, str | None]]:
        rows = store.query("SELECT pack_id, groups, topics FROM pack_tag_sets")
        return {
            r["pack_id"]: (r["groups"], r["topics"]) for r in rows if r["groups"] or r["topics"]
        }

    farm = [Tag("group", "farmers", 3.0, "a"), Tag("topic", "agriculture", 2.0, "b")]
    health = [Tag("group", "seniors", 2.0, "c"), Tag("topic", "health", 2.0, "d")]
    changes = store.replace_rule_tags_many(
        [(ids[0], farm), (ids[1], farm), (ids[2], health), (ids[3], farm), (ids[3], health)],
        at=at,
    )
    assert changes == {ids[0]: 2, ids[1]: 2, ids[2]: 1, ids[3]: 2}  # editor rows kept
    batch = sets()
    assert batch == {
        ids[0]: (",farmers,", ",agriculture,"),
        ids[1]: (",farmers,seniors,", ",agriculture,"),
        ids[2]: (",seniors,", None),  # the editor removed health
        ids[3]: (",seniors,", ",health,"),  # given twice: the last tags win
    }
    assert store.query("SELECT * FROM pack_tag_sets_held") == []  # the triggers are back
    # the per-row triggers, one pack at a time, come to the same sets
    store.execute("DELETE FROM pack_tags")
    store.set_editor_tag(ids[1], "group", "seniors", removed=False, who="王编辑", at=at)
    store.set_editor_tag(ids[2], "topic", "health", removed=True, who="王编辑", at=at)
    for pack_id, tags in ((ids[0], farm), (ids[1], farm), (ids[2], health), (ids[3], health)):
        with store.transaction() as conn:
            for t in tags:
                conn.execute(
                    "INSERT INTO pack_tags (pack_id, kind, tag, score, reason, origin, removed,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, 'rule', 0, ?)"
                    " ON CONFLICT (pack_id, kind, tag) DO NOTHING",
                    (pack_id, t.kind, t.tag, t.score, t.reason, at),
                )
    assert sets() == batch
    store.close()


def test_a_failed_batch_inside_a_wider_transaction_leaves_the_triggers_on(tmp_path):
    store = open_store(tmp_path / "t.db")
    at = "2026-11-01T00:00:00+00:00"
    good, other = (
        store.insert_pack("kp", item(f"g{i}"), at=at, status=PackStatus.NEW) for i in range(2)
    )
    bad = [Tag("group", "farmers", 3.0, "a"), Tag("nonsense", "x", 1.0, "b")]  # CHECK fails
    # the caller goes on and commits: the row written before the failure has its set, and
    # no hold stays behind to switch the triggers off for good
    with store.transaction(), pytest.raises(sqlite3.IntegrityError):
        store.replace_rule_tags_many([(good, bad)], at=at)
    assert store.query("SELECT * FROM pack_tag_sets_held") == []
    assert store.query("SELECT pack_id, tag FROM pack_tags") == [
        {"pack_id": good, "tag": "farmers"}
    ]
    sets = store.query("SELECT pack_id, groups FROM pack_tag_sets WHERE groups IS NOT NULL")
    assert sets == [{"pack_id": good, "groups": ",farmers,"}]
    store.set_editor_tag(other, "group", "seniors", removed=False, who="王编辑", at=at)
    row = store.query_one("SELECT groups FROM pack_tag_sets WHERE pack_id = ?", (other,))
    assert row == {"groups": ",seniors,"}  # the per-row triggers still work
    store.close()


def test_status_page_reads_kept_counts_and_partial_indexes(tmp_path):
    store = open_store(tmp_path / "t.db")
    at = "2026-11-01T00:00:00+00:00"
    packs = [
        store.insert_pack("kp", item(f"g{i}"), at=at, status=PackStatus.APPROVED) for i in range(3)
    ]
    ids = [
        store.queue_delivery(p, channel, scheduled_at=f"2026-11-0{i + 2}T00:00:00.000000+00:00")
        for i, p in enumerate(packs)
        for channel in ("wx", "screen")
    ]
    store.execute("UPDATE deliveries SET status = 'cancelled' WHERE id = ?", (ids[0],))
    store.execute("UPDATE deliveries SET channel = 'screen2' WHERE id = ?", (ids[1],))
    store.execute(
        "UPDATE deliveries SET last_error = 'HTTP 500', updated_at = ? WHERE id = ?", (at, ids[2])
    )
    store.conn.execute("PRAGMA foreign_keys=OFF")
    store.execute("DELETE FROM deliveries WHERE id = ?", (ids[3],))
    assert store.delivery_counts() == {
        "wx": {"cancelled": 1, "queued": 2},
        "screen": {"queued": 1},
        "screen2": {"queued": 1},
    }
    assert store.next_queued() == {
        "wx": "2026-11-03T00:00:00.000000+00:00",
        "screen": "2026-11-04T00:00:00.000000+00:00",
        "screen2": "2026-11-02T00:00:00.000000+00:00",
    }
    assert [d["id"] for d in store.recent_delivery_errors()] == [ids[2]]
    # neither index-backed read walks the deliveries table itself (a year of rows took seconds)
    for sql in (
        "SELECT channel, min(scheduled_at) FROM deliveries WHERE status = 'queued'"
        " GROUP BY channel",
        "SELECT id FROM deliveries d WHERE d.last_error IS NOT NULL AND d.last_error != ''"
        " ORDER BY d.updated_at DESC, d.id DESC LIMIT 10",
    ):
        steps = [r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + sql)]
        scans = [d for d in steps if d.startswith("SCAN")]  # SEARCH: by an indexed equality
        partial = ("deliveries_queued_next", "deliveries_with_error")
        assert all(any(name in d for name in partial) for d in scans), steps
    store.close()


def test_statement_splitter_keeps_trigger_bodies():
    from media_matrix.store.base import _statements

    script = "CREATE TABLE a (x); CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END"
    assert len(_statements(script)) == 2
    assert issubclass(Store, StoreBase)
