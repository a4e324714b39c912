"""科普信息员 (science information officers): reading the roster CSV (pure) and its services.

The CSV has a header row with ``name, county, township, groups`` (or 姓名, 区县, 乡镇, 人群);
groups are ids or Chinese labels separated by ``;`` ``、`` ``|`` or spaces. Every row is checked
before anything is stored: one bad row and nothing is imported, each problem reported by line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media_matrix.config import Settings
from media_matrix.links import new_token
from media_matrix.models import CITY, GROUPS
from media_matrix.store import Store

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 20_000
HEADERS = {
    "name": ("name", "姓名"),
    "county": ("county", "区县", "县区"),
    "township": ("township", "乡镇", "乡镇街道"),
    "groups": ("groups", "人群", "重点人群"),
}
_BY_LABEL = {label: gid for gid, label in GROUPS.items()}
_SPLIT = re.compile(r"[;；、|/\s,，]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RosterError(ValueError):
    """The roster cannot be imported; ``problems`` lists each bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Roster:
    rows: list[dict[str, Any]] = field(default_factory=list)


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM, as Excel writes it), else GB18030 (Excel's Chinese CSV)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def _text(value: str | None, what: str, limit: int, problems: list[str]) -> str:
    text = (value or "").strip()
    if not text:
        problems.append(f"{what}为空 (empty {what})")
    elif len(text) > limit:
        problems.append(f"{what}过长 (longer than {limit} characters)")
    elif _CONTROL.search(text):
        problems.append(f"{what}含控制字符 (control characters)")
    return text


def _groups(value: str | None, problems: list[str]) -> list[str]:
    out: list[str] = []
    for part in _SPLIT.split((value or "").strip()):
        if not part:
            continue
        gid = part if part in GROUPS else _BY_LABEL.get(part)
        if gid is None:
            problems.append(f"未知人群 {part!r} (expected one of {', '.join(GROUPS)})")
        elif gid not in out:
            out.append(gid)
    return out


def parse_roster(text: str, counties: list[str]) -> list[dict[str, Any]]:
    """Rows of the roster CSV, validated; RosterError with every problem by line."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise RosterError(["第 1 行: 文件为空 (empty file)"])
    names = [h.strip().lower() for h in header]
    columns: dict[str, int] = {}
    for key, accepted in HEADERS.items():
        found = [i for i, h in enumerate(names) if h in accepted]
        if found:
            columns[key] = found[0]
    missing = [k for k in HEADERS if k not in columns]
    if missing:
        raise RosterError(
            [
                f"第 1 行: 表头缺少列 {', '.join(missing)} (header needs name, county, township, "
                f"groups)"
            ]
        )
    allowed = set(counties) | {CITY}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) + len(problems) >= MAX_ROWS:
            problems.append(f"第 {line} 行: 超过 {MAX_ROWS} 行 (too many rows)")
            break
        cells = {k: record[i] if i < len(record) else "" for k, i in columns.items()}
        bad: list[str] = []
        name = _text(cells["name"], "姓名", 40, bad)
        county = _text(cells["county"], "区县", 20, bad)
        township = _text(cells["township"], "乡镇", 40, bad)
        groups = _groups(cells["groups"], bad)
        if county and counties and county not in allowed:
            bad.append(f"未知区县 {county!r} (expected one of {', '.join(sorted(allowed))})")
        key = (name, county, township)
        if not bad and key in seen:
            bad.append(f"与第 {seen[key]} 行重复 (duplicate of line {seen[key]})")
        if bad:
            problems.extend(f"第 {line} 行: {p}" for p in bad)
            continue
        seen[key] = line
        rows.append({"name": name, "county": county, "township": township, "groups": groups})
    if problems:
        raise RosterError(problems)
    if not rows:
        raise RosterError(["没有任何信息员 (no officer rows)"])
    return rows


def roster_counties(settings: Settings) -> list[str]:
    """Counties a roster row may name: the configured ones and those of channels."""
    return list(settings.counties) + [c.county for c in settings.channels]


def outside_scope(rows: list[dict[str, Any]], county: str) -> list[str]:
    """Problems for rows of another county than ``county`` (a county-bound console user)."""
    return [
        f"{r['name']}: 区县 {r['county']!r} 不是您所在的 {county} (outside your county)"
        for r in rows
        if r["county"] != county
    ]


def read_roster(
    data: bytes, source: str, counties: list[str], *, scope: str | None = None
) -> list[dict[str, Any]]:
    """The validated rows of a roster file's bytes (``source`` names it in problems); with a
    ``scope``, every row must be of that county."""
    if len(data) > MAX_BYTES:
        raise RosterError([f"{source}: 文件超过 {MAX_BYTES // 1024 // 1024} MB (file too large)"])
    try:
        text = decode(data)
    except UnicodeDecodeError:
        raise RosterError([f"{source}: 不是 UTF-8 或 GB18030 编码 (unknown encoding)"]) from None
    rows = parse_roster(text, counties)
    problems = outside_scope(rows, scope) if scope is not None else []
    if problems:
        raise RosterError(problems)
    return rows


def import_roster(
    store: Store,
    path: Path,
    counties: list[str],
    *,
    by: str | None = None,
    note: str | None = None,
) -> tuple[int, int]:
    """Validate the whole file, then add or update every officer in one transaction; audited
    when someone (``by``) imports it by hand."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    return import_roster_data(store, data, str(path), counties, by=by, note=note)


def import_roster_data(
    store: Store,
    data: bytes,
    source: str,
    counties: list[str],
    *,
    by: str | None = None,
    note: str | None = None,
    scope: str | None = None,
) -> tuple[int, int]:
    """:func:`import_roster` for bytes already read (an upload); ``scope`` limits the rows to
    one county. Nothing is stored unless every row is good."""
    rows = read_roster(data, source, counties, scope=scope)
    added, updated = store.import_officers(rows, new_token)
    if by is not None:
        name = _CONTROL.sub("", Path(source).name)[:80]
        said = f"{name}: 新增 {added}, 更新 {updated}" + (f"; {note}" if note else "")
        store.audit(by, "officers.import", "officers", said)
    return added, updated


def disable_officer(store: Store, officer_id: int, *, by: str, note: str | None = None) -> None:
    """Revoke an officer's page and personal links, audited."""
    with store.transaction():
        store.disable_officer(officer_id)
        store.audit(by, "officer.disable", f"officer:{officer_id}", note)


def safe_file_stem(*parts: str) -> str:
    """A file name from officer fields: letters, digits and CJK kept, anything else '_'."""
    stem = "-".join(parts)
    return re.sub(r"[^\w\u4e00-\u9fff-]+", "_", stem).strip("._")[:80] or "officer"
