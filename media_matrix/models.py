"""Dataclasses and enums every layer shares. Ids here are stable: configs and scripts use them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

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
}
ATTEMPT_KIND_LABELS: dict[str, str] = {"send": "发送", "recover": "恢复", "poll": "查询"}


def check_group_ids(ids: Iterable[str]) -> Iterable[str]:
    """``ids`` unchanged when every one is a known group id; else ValueError naming the first."""
    unknown = [g for g in ids if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group id {unknown[0]!r}; expected one of {list(GROUPS)}")
    return ids


class FeedKind(StrEnum):
    RSS = "rss"
    HTML = "html"
    PACKDIR = "packdir"


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
    tags: list[Tag] = field(default_factory=list)

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tags")
        if not full:
            data.pop("content_html")
            data.pop("text")
        return data
