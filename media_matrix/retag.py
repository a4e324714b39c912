"""Tags as a service: rules applied to stored packs, and editors' corrections.

The rules themselves are pure (tagging.py); this module reads packs from the store, applies the
rules or an editor's decision, and writes the result back. Editor decisions (origin "editor")
are never overwritten by rules: not on re-ingest, not after a rule change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from media_matrix.config import Settings
from media_matrix.models import GROUPS, Item, Tag, pack_subject
from media_matrix.store import Store
from media_matrix.tagging import Tagger, tagger_for
from media_matrix.timeutil import now_iso


def item_tagger(settings: Settings) -> Callable[[Item], list[Tag]]:
    """The ingest hook: an item as it is stored -> its rule tags. The rules compile on the
    first item, so a poll that brings nothing new (a 304) costs nothing here."""
    compiled: list[Tagger] = []

    def tag(item: Item) -> list[Tag]:
        if not compiled:
            compiled.append(tagger_for(settings))
        return (
            compiled[0]
            .tag(item.title, item.summary, item.text, item.categories, item.groups, item.topics)
            .tags
        )

    return tag


def _tags_of_row(tagger: Tagger, row: dict[str, Any]) -> list[Tag]:
    return tagger.tag(
        row["title"],
        row["summary"],
        row["text"],
        row["categories"],
        row["hint_groups"],
        row["hint_topics"],
    ).tags


@dataclass
class RetagReport:
    packs: int
    changed_tags: int
    changed_packs: int


def retag_all(
    settings: Settings,
    store: Store,
    ids: list[int] | None = None,
    *,
    by: str | None = None,
    note: str | None = None,
) -> RetagReport:
    """Re-apply the current rules to every pack (or the given ones), keeping editor tags;
    audited when someone (``by``) asked for it."""
    tagger = tagger_for(settings)
    rows = store.packs_for_tagging(ids)
    at = now_iso()
    with store.transaction():
        changes = store.replace_rule_tags_many(
            [(row["id"], _tags_of_row(tagger, row)) for row in rows], at=at
        )
        changed_tags = sum(changes.values())
        changed_packs = sum(1 for n in changes.values() if n)
        if by is not None:
            said = f"{len(rows)} 个内容包, {changed_tags} 个标签变化" + (
                f"; {note}" if note else ""
            )
            store.audit(by, "retag_all", "packs", said)
    return RetagReport(packs=len(rows), changed_tags=changed_tags, changed_packs=changed_packs)


def edit_tags(
    settings: Settings,
    store: Store,
    pack_id: int,
    *,
    add_groups: Sequence[str] = (),
    remove_groups: Sequence[str] = (),
    add_topics: Sequence[str] = (),
    remove_topics: Sequence[str] = (),
    by: str,
    note: str | None = None,
) -> list[str]:
    """An editor's tag changes; returns one line per change, each also written to the audit.

    Raises ValueError for an unknown group or topic id, NotFound for an unknown pack.
    """
    known_topics = set(settings.topics)
    for group in (*add_groups, *remove_groups):
        if group not in GROUPS:
            raise ValueError(f"unknown group id {group!r}; expected one of {list(GROUPS)}")
    for topic in (*add_topics, *remove_topics):
        if topic not in known_topics:
            raise ValueError(f"unknown topic id {topic!r}; expected one of {sorted(known_topics)}")
    store.get_pack(pack_id)  # NotFound before anything is written
    at = now_iso()
    done = []
    changes = [
        *(("group", g, False) for g in add_groups),
        *(("group", g, True) for g in remove_groups),
        *(("topic", t, False) for t in add_topics),
        *(("topic", t, True) for t in remove_topics),
    ]
    with store.transaction():
        for kind, tag, removed in changes:
            store.set_editor_tag(pack_id, kind, tag, removed=removed, who=by, at=at)
            action = f"{'remove' if removed else 'add'}_{kind}"
            store.audit(by, action, pack_subject(pack_id), f"{tag}; {note}" if note else tag)
            done.append(f"{action} {tag}")
    return done
