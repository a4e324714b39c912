"""An editor's title and summary for sending (the original kept, every edit audited)."""

from __future__ import annotations

import unicodedata

from media_matrix.models import pack_subject
from media_matrix.store import Store, StoreError
from media_matrix.timeutil import now_iso

TITLE_MAX = 200
SUMMARY_MAX = 1000


class TextEditError(StoreError):
    """The new title or summary is not acceptable (nothing was changed)."""


def clean_line(text: str) -> str:
    """One line of text: control and format characters dropped, whitespace collapsed."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    return " ".join(kept.split())


def edit_text(
    store: Store, pack_id: int, title: str, summary: str, *, by: str, note: str | None = None
) -> bool:
    """Replace the title and summary used for sending; returns whether anything changed."""
    title, summary = clean_line(title), clean_line(summary)
    if not title:
        raise TextEditError("标题不能为空 (title is empty); 未做任何更改")
    if len(title) > TITLE_MAX or len(summary) > SUMMARY_MAX:
        raise TextEditError(
            f"标题最多 {TITLE_MAX} 字, 摘要最多 {SUMMARY_MAX} 字 (too long); 未做任何更改"
        )
    with store.transaction():
        changed = store.edit_pack_text(pack_id, title, summary, who=by, at=now_iso())
        if changed:
            said = f"标题: {title}" + (f"; {note}" if note else "")
            store.audit(by, "edit_text", pack_subject(pack_id), said)
    return changed
