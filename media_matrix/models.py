"""Dataclasses and enums every layer shares. Ids here are stable: configs and scripts use them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

CITY = "市级"  # the county value of city-level packs, channels and officers

GROUPS: dict[str, str] = {
    "youth": "青少年",
    "farmers": "农民",
    "workers": "产业工人",
    "seniors": "老年人",
    "officials": "领导干部和公务员",
    "public": "社会公众",
}
KEY_GROUPS = ("youth", "farmers", "workers", "seniors", "officials")

TOPICS: dict[str, str] = {
    "health": "医疗健康",
    "food_safety": "食品安全",
    "ecology": "生态环境",
    "water": "节水",
    "safety": "安全生产",
    "fire": "消防",
    "weather": "气象",
    "disaster": "防灾减灾",
    "agriculture": "农业技术",
    "industry": "技术创新与制造业",
    "digital": "信息素养",
    "frontier": "前沿科技",
}


# 群众点单 (residents' orders) statuses, as people read them (issue 13).
REQUEST_STATUS_LABELS: dict[str, str] = {
    "open": "待接单",
    "accepted": "已接单",
    "declined": "未采纳",
    "escalated": "已提交市级",
    "fulfilled": "已答复",
}

# People-facing (Chinese) names of the stable status ids.
PACK_STATUS_LABELS: dict[str, str] = {
    "new": "待审",
    "approved": "已通过",
    "rejected": "已驳回",
    "archived": "已归档",
}
DELIVERY_STATUS_LABELS: dict[str, str] = {
    "queued": "排队中",
    "sending": "发送中",
    "submitted": "已提交(发布中)",
    "delivered": "已送达",
    "failed": "失败(将重试)",
    "dead": "已放弃",
    "unknown": "状态不明(待人工核实)",
    "cancelled": "已取消",
}

# How an attempt ended, and what kind of attempt it was (the console's attempt table).
ATTEMPT_OUTCOME_LABELS: dict[str, str] = {
    "delivered": "送达",
    "submitted": "已提交",
    "retry": "暂时失败",
    "quota": "配额已满",
    "auth": "认证失败",
    "rejected": "被拒绝",
    "unknown": "状态不明",
    "render": "模板错误",
    "error": "程序错误",
    "interrupted": "中断(进程退出)",
    "lease_lost": "租约已失(发送程序停顿, 已停止)",
}
ATTEMPT_KIND_LABELS: dict[str, str] = {
    "send": "发送",
    "recover": "恢复",
    "poll": "查询",
    "fence": "停止(租约已失)",
}

# Audit actions: stable English ids in the database and --json, Chinese wherever people read
# the log (the CLI's ``audit``, the console's audit, pack and delivery pages).
AUDIT_ACTION_LABELS: dict[str, str] = {
    "approve": "通过",
    "reject": "驳回",
    "reapprove": "自动重新通过",
    "review_again": "来源变更, 退回待审",
    "urgent_on": "标记紧急",
    "urgent_off": "取消紧急",
    "queue": "排期",
    "resend": "重发",
    "unqueue": "撤回投递",
    "queue_auto": "自动排期",
    "edit_text": "修改标题和摘要",
    "add_group": "加人群标签",
    "remove_group": "去人群标签",
    "add_topic": "加主题标签",
    "remove_topic": "去主题标签",
    "retag_all": "按规则重新打标签",
    "delivery.retry": "重新投递",
    "delivery.cancel": "取消投递",
    "channel.paused": "渠道暂停",
    "dispatch_round": "手动投递一轮",
    "officers.import": "导入信息员名册",
    "officer.disable": "停用信息员",
    "feed_fetch": "立即抓取订阅源",
    "user_add": "添加用户",
    "user_passwd": "修改密码",
    "user_disable": "停用用户",
    "user_enable": "启用用户",
    "login": "登录",
    "login_failed": "登录失败",
    "login_locked": "账户锁定",
    "login_refused": "拒绝登录",
    "request_new": "点单",
    "request_accept": "接单",
    "request_decline": "不采纳",
    "request_escalate": "提交市级",
    "request_link": "关联内容",
    "request_fulfilled": "已答复",
}
_FROM_STATUS = re.compile(r"^from ([a-z_]+)\b")


def audit_action_label(action: str) -> str:
    """The Chinese name of an audit action id (unknown ids as they are)."""
    return AUDIT_ACTION_LABELS.get(action, action)


def audit_note_text(note: str | None) -> str:
    """An audit note as people read it: a stored "from queued" prefix becomes 原状态 排队中."""
    if not note:
        return ""
    return _FROM_STATUS.sub(
        lambda m: "原状态 " + DELIVERY_STATUS_LABELS.get(m.group(1), m.group(1)), note
    )


def check_group_ids(ids: Iterable[str]) -> Iterable[str]:
    """``ids`` unchanged when every one is a known group id; else ValueError naming the first."""
    unknown = [g for g in ids if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group id {unknown[0]!r}; expected one of {list(GROUPS)}")
    return ids


class PackStatus(StrEnum):
    NEW = "new"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"  # will retry
    DEAD = "dead"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


# The delivery state machine: the only status changes a delivery may make. Every status write
# in the store goes through it twice: the UPDATE's ``WHERE status IN (...)`` names the allowed
# previous statuses (see ``store/dispatching.py``), and a trigger generated from this table
# refuses any other change, whoever writes it.
_S = DeliveryStatus
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    _S.QUEUED: frozenset({_S.SENDING, _S.CANCELLED}),  # claimed; cancelled by an editor
    _S.SENDING: frozenset(
        # an outcome; or given back unsent (queued / failed keeping its retry time)
        {_S.DELIVERED, _S.SUBMITTED, _S.FAILED, _S.DEAD, _S.UNKNOWN, _S.QUEUED}
    ),
    _S.SUBMITTED: frozenset({_S.DELIVERED, _S.DEAD, _S.UNKNOWN}),  # polled; too old
    _S.FAILED: frozenset({_S.SENDING, _S.QUEUED, _S.CANCELLED}),  # retry due; operator
    _S.DEAD: frozenset({_S.QUEUED, _S.CANCELLED}),  # operator re-sends or cancels
    _S.UNKNOWN: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.CANCELLED: frozenset({_S.QUEUED}),  # operator re-sends
    _S.DELIVERED: frozenset(),  # final: a re-send is a new edition
}
# Went out, or may have: these count against a channel's quota on the day they were claimed.
SENT_STATUSES: tuple[str, ...] = tuple(
    str(s) for s in (_S.SENDING, _S.SUBMITTED, _S.DELIVERED, _S.UNKNOWN)
)
del _S


class InvalidStatusChange(ValueError):
    """A delivery status change the state machine does not allow."""


def can_transition(old: str, new: str) -> bool:
    """True when a delivery may go from ``old`` to ``new`` (unknown names: False)."""
    try:
        return DeliveryStatus(new) in DELIVERY_TRANSITIONS[DeliveryStatus(old)]
    except ValueError:
        return False


def check_transition(old: str, new: str) -> None:
    """Raise :class:`InvalidStatusChange` unless ``old -> new`` is allowed."""
    if not can_transition(old, new):
        raise InvalidStatusChange(f"delivery status {old!r} cannot become {new!r}")


def sources_of(new: str) -> tuple[str, ...]:
    """The statuses from which a delivery may become ``new`` (for an UPDATE's WHERE)."""
    target = DeliveryStatus(new)
    return tuple(str(s) for s, to in DELIVERY_TRANSITIONS.items() if target in to)


class IngestOutcome(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    MERGED = "merged"  # an existing pack gained another source


@dataclass
class Enclosure:
    url: str
    type: str = ""
    length: int | None = None


@dataclass
class Item:
    """One entry as a source delivered it, already cleaned; not yet matched to a pack."""

    guid: str
    title: str
    url: str | None = None
    summary: str = ""
    content_html: str = ""
    text: str = ""
    images: list[str] = field(default_factory=list)
    enclosures: list[Enclosure] = field(default_factory=list)
    author: str = ""
    categories: list[str] = field(default_factory=list)
    published_at: str | None = None
    content_hash: str = ""
    groups: list[str] = field(default_factory=list)  # hints from pack.yaml
    topics: list[str] = field(default_factory=list)
    source: str = ""  # issuing body named by a local pack
    county: str = "市级"  # the county the content is for; 市级 goes everywhere
    label: str = ""  # how a list page showed it (title and date): a change means re-read it
    local_root: str | None = None  # the folder its file:// references must stay in (local only)


@dataclass
class Tag:
    kind: str  # "group" | "topic"
    tag: str
    score: float
    reason: str
    origin: str = "rule"  # "rule" | "editor"
    removed: bool = False


@dataclass
class Pack:
    id: int
    title: str
    url: str | None
    summary: str
    status: str
    content_hash: str
    published_at: str | None
    fetched_at: str
    updated_at: str
    guid: str = ""
    author: str = ""
    content_html: str = ""
    text: str = ""
    images: list[str] = field(default_factory=list)
    enclosures: list[dict[str, Any]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    urgent: bool = False
    county: str = "市级"
    source: str = ""
    groups: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    local_root: str | None = None  # the only folder adapters may read its local files from
    tags: list[Tag] = field(default_factory=list)

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tags")
        if not full:
            data.pop("content_html")
            data.pop("text")
        return data


def pack_subject(pack_id: int) -> str:
    """The audit subject naming a pack (``pack:12``), shared by every service that audits."""
    return f"pack:{pack_id}"
