"""群众点单: residents order topics, counties take the order, the city backs them (issue 13).

Pure decisions first (validating a submitted order, the status table, who may act on which
order, ranking packs that answer an order), then the services that read and write the store.
An order's contact is personal data: it is kept for the county's editors and never leaves
through a public view (:func:`public_view` builds the only dict the public face sees).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media_matrix.config import ConfigError, Settings
from media_matrix.ingest.clean import plain_text, strip_controls
from media_matrix.links import new_code, new_token, track_url
from media_matrix.models import AUDIT_ACTION_LABELS, CITY, GROUPS, REQUEST_STATUS_LABELS, TOPICS
from media_matrix.officers import decode
from media_matrix.store import Store, StoreError
from media_matrix.tagging import Tagger, normalize, tagger_for
from media_matrix.timeutil import local_text

MAX_TEXT = 500
MAX_TOWNSHIP = 40
MAX_CONTACT = 60
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_CSV_ROWS = 20_000

STATUS_LABELS = REQUEST_STATUS_LABELS
SOURCE_LABELS = {"web": "网上点单", "officer": "信息员代点", "paper": "纸质点单"}

# action -> (statuses it may start from, status it leads to; None keeps the status)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "accept": (("open", "escalated"), "accepted"),
    "decline": (("open", "accepted", "escalated"), "declined"),
    "escalate": (("open", "accepted"), "escalated"),
    "link": (("open", "accepted", "escalated"), None),
}
ACTION_LABELS = {"accept": "接单", "decline": "不采纳", "escalate": "提交市级", "link": "关联内容"}
# audit actions of an order, as its history reads (one table: models.AUDIT_ACTION_LABELS)
AUDIT_LABELS = {k: v for k, v in AUDIT_ACTION_LABELS.items() if k.startswith("request_")}

_GROUP_BY_LABEL = {label: gid for gid, label in GROUPS.items()}
HEADERS = {
    "county": ("county", "区县", "县区"),
    "township": ("township", "乡镇", "乡镇社区", "乡镇街道"),
    "text": ("text", "内容", "想了解", "点单内容"),
    "group": ("group", "人群", "对象"),
    "contact": ("contact", "联系方式"),
}


class OrderError(ValueError):
    """An order (or a sheet of them) cannot be taken; ``problems`` says what, by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class OrderDenied(PermissionError):
    """The acting user may not do this to this order (county scope, or the status)."""


# -- pure: validation and tagging ---------------------------------------------------------------


def clean_field(value: Any, what: str, limit: int, problems: list[str], *, required: bool) -> str:
    """One form or CSV field as plain text: markup, escapes and control characters removed;
    empty when required, or longer than ``limit``, is a problem named in Chinese."""
    text = plain_text(strip_controls(str(value or "")))
    if not text and required:
        problems.append(f"{what}为空 (empty {what})")
    elif len(text) > limit:
        problems.append(f"{what}超过 {limit} 字 (longer than {limit} characters)")
    return text


def group_id(value: str) -> str | None:
    """A group id from an id or its Chinese label ('老年人' -> 'seniors'); None if unknown."""
    value = value.strip()
    return value if value in GROUPS else _GROUP_BY_LABEL.get(value)


def validate_order(raw: Mapping[str, Any], counties: Sequence[str]) -> dict[str, Any]:
    """A submitted order checked and cleaned; OrderError lists every problem."""
    problems: list[str] = []
    county = clean_field(raw.get("county"), "区县", 20, problems, required=True)
    if county and counties and county not in counties:
        problems.append(f"未知区县 {county!r} (expected one of {', '.join(counties)})")
    township = clean_field(raw.get("township"), "乡镇或社区", MAX_TOWNSHIP, problems, required=True)
    text = clean_field(raw.get("text"), "点单内容", MAX_TEXT, problems, required=True)
    group_raw = clean_field(raw.get("group"), "人群", 20, problems, required=False)
    group = group_id(group_raw) if group_raw else None
    if group_raw and group is None:
        problems.append(f"未知人群 {group_raw!r} (expected one of {', '.join(GROUPS.values())})")
    contact = clean_field(raw.get("contact"), "联系方式", MAX_CONTACT, problems, required=False)
    if problems:
        raise OrderError(problems)
    return {
        "county": county,
        "township": township,
        "text": text,
        "group_hint": group,
        "contact": contact or None,
    }


def tag_order(tagger: Tagger, order: Mapping[str, Any]) -> dict[str, Any]:
    """Topics and groups of an order by the packs' tagger, each with its reason. The group a
    resident picked counts as a hint, as a pack's own labels do."""
    hints = [order["group_hint"]] if order.get("group_hint") else []
    tagging = tagger.tag(order["text"], hint_groups=hints)
    data = tagging.to_json()
    reasons = {k: v.replace("资源包标注", "点单人选择") for k, v in data["reasons"].items()}
    return {"groups": data["groups"], "topics": data["topics"], "reasons": reasons}


# -- pure: who may do what ----------------------------------------------------------------------


def is_city_user(user: Mapping[str, Any]) -> bool:
    return user.get("role") == "admin" or user.get("county") in (None, "", CITY)


def may_see(user: Mapping[str, Any], order: Mapping[str, Any]) -> bool:
    """County editors see their county's orders; city-level editors and admins see all."""
    return is_city_user(user) or order["county"] == user.get("county")


def check_action(user: Mapping[str, Any] | None, order: Mapping[str, Any], action: str) -> None:
    """OrderDenied unless ``user`` may do ``action`` on ``order`` now (None: the CLI, which
    acts as the office). A county editor acts on open and accepted orders of their county; an
    escalated order belongs to the city level (上级支持) until it answers it."""
    allowed_from, _ = TRANSITIONS[action]
    if order["status"] not in allowed_from:
        now = STATUS_LABELS[order["status"]]
        raise OrderDenied(f"点单 {order['id']} 当前为「{now}」，不能{ACTION_LABELS[action]}")
    if user is None:
        return
    if user.get("role") not in ("admin", "editor"):
        raise OrderDenied("只有编辑和管理员可以处理点单")
    if is_city_user(user):
        if action == "escalate":
            raise OrderDenied("市级编辑无需再提交市级")
        return
    if order["county"] != user.get("county"):
        raise OrderDenied(f"点单 {order['id']} 不属于{user.get('county')}")
    if order["status"] == "escalated":
        raise OrderDenied(f"点单 {order['id']} 已提交市级，由市级编辑处理")


# -- pure: matching -----------------------------------------------------------------------------


@dataclass
class Match:
    pack_id: int
    title: str
    score: float
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack_id": self.pack_id,
            "title": self.title,
            "score": self.score,
            "reasons": self.reasons,
        }


def rank_packs(
    order: Mapping[str, Any], packs: Sequence[Mapping[str, Any]], words: Sequence[str] = ()
) -> list[Match]:
    """Packs answering an order: each shared topic scores 3, a shared key group 1, each of the
    order's keywords (``words``, the tagger's matches in its text) in the pack's title 1, a
    pack of the order's own county 0.5 (else it must be a city pack or the county's). A pack
    sharing no topic does not answer (with no topics on the order, a shared key group does).
    Ties: fresher first, then lower id."""
    topics = set(order["topics"])
    groups = {g for g in order["groups"] if g != "public"}
    found: list[tuple[float, str, int, Match]] = []
    for pack in packs:
        if pack["county"] not in (CITY, order["county"]):
            continue
        shared_t = [t for t in pack["topics"] if t in topics]
        shared_g = [g for g in pack["groups"] if g in groups]
        if not shared_t and (topics or not shared_g):
            continue
        reasons = []
        if shared_t:
            reasons.append("主题相同: " + "、".join(TOPICS.get(t, t) for t in shared_t))
        if shared_g:
            reasons.append("人群相同: " + "、".join(GROUPS.get(g, g) for g in shared_g))
        in_title = [w for w in dict.fromkeys(words) if w in normalize(pack["title"])]
        if in_title:
            reasons.append("标题含点单关键词: " + "、".join(in_title))
        score = 3.0 * len(shared_t) + 1.0 * len(shared_g) + 1.0 * len(in_title)
        if pack["county"] == order["county"]:
            score += 0.5
            reasons.append(f"本县内容: {pack['county']}")
        fresh = str(pack.get("published_at") or pack.get("fetched_at") or "")
        found.append((score, fresh, pack["id"], Match(pack["id"], pack["title"], score, reasons)))
    found.sort(key=lambda x: (-x[0], _desc(x[1]), x[2]))
    return [m for *_, m in found]


def _desc(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


# -- services -----------------------------------------------------------------------------------


def counties_of(settings: Settings) -> list[str]:
    """Counties an order may name: the configured ones and those of channels (no 市级)."""
    names = list(settings.counties) + [c.county for c in settings.channels]
    return [n for n in dict.fromkeys(names) if n != CITY]


def submit(
    settings: Settings,
    store: Store,
    raw: Mapping[str, Any],
    *,
    source: str,
    by: str,
    officer_id: int | None = None,
    tagger: Tagger | None = None,
) -> dict[str, Any]:
    """Validate, tag and store one order; returns it (with its answer token)."""
    order = validate_order(raw, counties_of(settings))
    order.update(tag_order(tagger or tagger_for(settings), order))
    order.update(token=new_token(), source=source, officer_id=officer_id)
    (order_id,) = store.add_requests([order], by=by)
    return store.get_request(order_id)


def parse_sheet(text: str, counties: Sequence[str], tagger: Tagger) -> list[dict[str, Any]]:
    """Orders of a paper sheet (CSV with a header row), validated and tagged; OrderError
    lists every bad row by line and nothing is taken."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise OrderError(["第 1 行: 文件为空 (empty file)"])
    names = [h.strip().lower() for h in header]
    columns = {}
    for key, accepted in HEADERS.items():
        hits = [i for i, h in enumerate(names) if h in accepted]
        if hits:
            columns[key] = hits[0]
    missing = [k for k in ("county", "township", "text") if k not in columns]
    if missing:
        raise OrderError(
            [f"第 1 行: 表头缺少列 {', '.join(missing)} (header needs county, township, text)"]
        )
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) + len(problems) >= MAX_CSV_ROWS:
            problems.append(f"第 {line} 行: 超过 {MAX_CSV_ROWS} 行 (too many rows)")
            break
        cells = {k: record[i] if i < len(record) else "" for k, i in columns.items()}
        try:
            order = validate_order(cells, counties)
        except OrderError as exc:
            problems.extend(f"第 {line} 行: {p}" for p in exc.problems)
            continue
        key = "\n".join((order["county"], order["township"], order["text"], order["contact"] or ""))
        order["paper_key"] = hashlib.sha256(key.encode("utf-8")).hexdigest()
        order.update(tag_order(tagger, order), token=new_token(), source="paper")
        rows.append(order)
    if problems:
        raise OrderError(problems)
    if not rows:
        raise OrderError(["没有任何点单 (no order rows)"])
    return rows


def import_sheet(
    settings: Settings, store: Store, path: Path, *, by: str, note: str | None = None
) -> tuple[int, int]:
    """Import a paper sheet, all or nothing; returns (added, already there)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise OrderError([f"{path}: 无法读取 ({exc.strerror or exc})"]) from None
    if len(data) > MAX_CSV_BYTES:
        raise OrderError([f"{path}: 文件超过 {MAX_CSV_BYTES // 1024 // 1024} MB (file too large)"])
    try:
        text = decode(data)
    except UnicodeDecodeError:
        raise OrderError([f"{path}: 不是 UTF-8 或 GB18030 编码 (unknown encoding)"]) from None
    rows = parse_sheet(text, counties_of(settings), tagger_for(settings))
    added = store.add_requests(rows, by=by, note=note)
    return len(added), len(rows) - len(added)


def import_configured(settings: Settings, store: Store) -> tuple[int, int] | None:
    """The paper sheet named by ``requests:`` in config (run --once); a bad one is a config
    error naming the file and its lines."""
    if settings.requests is None:
        return None
    try:
        return import_sheet(settings, store, settings.requests, by="run-once")
    except OrderError as exc:
        raise ConfigError(f"{settings.path}: requests: {settings.requests}: {exc}") from None


def act(
    store: Store,
    order_id: int,
    action: str,
    *,
    by: str,
    user: Mapping[str, Any] | None = None,
    note: str | None = None,
    pack_id: int | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Accept, decline (a reason required), escalate or link a pack: checked against the status
    table and the user's county, audited. Linking an open order also accepts it; with
    ``settings``, an order whose linked pack was already delivered in its county is fulfilled
    at once."""
    order = store.get_request(order_id)
    check_action(user, order, action)
    note = plain_text(strip_controls(note or ""))[:MAX_TEXT] or None
    if action == "decline" and not note:
        raise OrderError(["不采纳需要填写原因 (a reason is required)"])
    allowed_from, status = TRANSITIONS[action]
    if action == "link":
        if pack_id is None or not store.packs_with_tags([pack_id]):
            raise OrderError([f"内容 {pack_id} 不存在或未通过审核 (pack must be approved)"])
        status = "accepted" if order["status"] == "open" else None
        note = note or f"关联内容 {pack_id}"
    try:
        changed = store.change_request(
            order_id,
            expect=allowed_from,
            status=status,
            by=by,
            action=f"request_{action}",
            note=note,
            pack_id=pack_id,
        )
    except StoreError as exc:  # the status moved under us (another editor)
        raise OrderDenied(f"点单 {order_id} 状态已变化，请刷新 ({exc})") from None
    if (
        action == "link"
        and settings is not None
        and fulfil_delivered(settings, store, order_ids=[order_id], pack_id=pack_id)
    ):
        changed = store.get_request(order_id)
    return changed


def match(settings: Settings, store: Store, order_id: int, limit: int = 10) -> list[Match]:
    """Approved packs that answer the order, best first, with reasons."""
    order = store.get_request(order_id)
    words = tagger_for(settings).matches(order["text"])
    return rank_packs(order, store.packs_with_tags(), words)[:limit]


def fulfil_delivered(
    settings: Settings,
    store: Store,
    *,
    since: str | None = None,
    order_ids: Sequence[int] | None = None,
    pack_id: int | None = None,
) -> list[int]:
    """Orders answered by what has been delivered in their county: called by a dispatch round
    that landed something (``since`` its start) and after a pack is linked (``order_ids``);
    idempotent."""
    return store.fulfil_requests(
        settings.county_channels(),
        by="dispatch",
        since=since,
        request_ids=order_ids,
        pack_id=pack_id,
    )


def public_view(settings: Settings, store: Store, token: str) -> dict[str, Any] | None:
    """What the answer page may show: status, date, county, topics and, once answered, the
    pack's title and tracked link. Never the text, contact, township or officer."""
    order = store.request_by_token(token)
    if order is None:
        return None
    view: dict[str, Any] = {
        "status": order["status"],
        "status_label": STATUS_LABELS[order["status"]],
        "county": order["county"],
        "created_at": local_text(order["created_at"], settings.tz, "%Y-%m-%d"),
        "topics": [TOPICS.get(t, t) for t in order["topics"]],
        "answer": None,
    }
    if order["status"] == "fulfilled" and order["delivery_id"]:
        delivery = store.get_delivery(order["delivery_id"])
        pack = store.get_pack(delivery["pack_id"])
        code = store.delivery_link(order["delivery_id"], new_code)
        view["answer"] = {
            "title": pack.title,
            "url": track_url(settings.public.base_url, code),
        }
    return view
