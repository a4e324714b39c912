"""A pack rendered for one channel exactly as dispatch would render it, and that channel's limits
checked. Nothing is sent and nothing is written (the console's preview page).

The limits are the adapters' own: an adapter cuts a too-long title or digest before sending, so
an editor is warned here that the cut will happen, in words, before it does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from media_matrix.adapters import wechat_mp, wecom_robot
from media_matrix.adapters.base import Message, OutgoingItem
from media_matrix.config import Settings
from media_matrix.models import Pack
from media_matrix.render import render_message, strip_html
from media_matrix.timeutil import utcnow

WEBHOOK_BODY_MAX = 1_000_000  # bytes a county CMS is assumed to take in one manuscript
WECHAT_IMAGES_MAX = 20  # in-article images uploaded one by one (media/uploadimg), a slow send


@dataclass
class Preview:
    channel: str
    type: str
    parts: dict[str, str] = field(default_factory=dict)  # output name -> text
    html_parts: list[str] = field(default_factory=list)  # names shown as a sandboxed page
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _chars(text: str) -> int:
    return len(text)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def check_limits(kind: str, channel: Any, pack: Pack, message: Message) -> list[str]:
    """The channel type's limits, as warnings an editor can act on; pure."""
    warnings: list[str] = []
    if kind == "wechat_mp":
        art = message.fields.get("articles", [{}])[0]
        title, digest = str(art.get("title", "")), str(art.get("digest", ""))
        content = str(message.item_parts[0].get("article.html", "")) if message.item_parts else ""
        if _chars(title) > wechat_mp.TITLE_MAX:
            warnings.append(
                f"标题 {_chars(title)} 字, 超过公众号上限 {wechat_mp.TITLE_MAX} 字, 发送时将被截断"
            )
        if _chars(digest) > wechat_mp.DIGEST_MAX:
            warnings.append(
                f"摘要 {_chars(digest)} 字, 超过上限 {wechat_mp.DIGEST_MAX} 字, 将被截断"
            )
        if _chars(content) > wechat_mp.CONTENT_MAX:
            warnings.append(
                f"正文 {_chars(content)} 字符, 超过上限 {wechat_mp.CONTENT_MAX}, 将在段落处截断"
            )
        if len(pack.images) > WECHAT_IMAGES_MAX:
            warnings.append(
                f"正文图片 {len(pack.images)} 张, 多于 {WECHAT_IMAGES_MAX} 张, 发送会很慢"
            )
        if not pack.images:
            warnings.append("内容包没有图片, 将使用渠道默认封面")
    elif kind == "wecom_robot":
        news = _json(message.parts.get("news.json"))
        for art in (news or {}).get("news", {}).get("articles", []):
            title, desc = str(art.get("title", "")), str(art.get("description", ""))
            if _bytes(title) > wecom_robot.TITLE_MAX_BYTES:
                warnings.append(
                    f"图文标题 {_bytes(title)} 字节, 超过企业微信上限 "
                    f"{wecom_robot.TITLE_MAX_BYTES} 字节, 将被截断"
                )
            if _bytes(desc) > wecom_robot.DESCRIPTION_MAX_BYTES:
                warnings.append(
                    f"图文描述 {_bytes(desc)} 字节, "
                    f"超过上限 {wecom_robot.DESCRIPTION_MAX_BYTES} 字节"
                )
            if not art.get("url"):
                warnings.append("图文消息没有链接, 企业微信会拒收; 将改发 Markdown")
        md = str(message.parts.get("markdown.md", ""))
        if _bytes(md) > wecom_robot.MARKDOWN_MAX_BYTES:
            warnings.append(
                f"Markdown {_bytes(md)} 字节, "
                f"超过上限 {wecom_robot.MARKDOWN_MAX_BYTES} 字节, 将被截断"
            )
    elif kind == "webhook":
        body = str(message.parts.get("manuscript.json", ""))
        if _bytes(body) > WEBHOOK_BODY_MAX:
            warnings.append(f"稿件 {_bytes(body)} 字节, 超过 {WEBHOOK_BODY_MAX} 字节")
        if not strip_html(pack.content_html or pack.text).strip():
            warnings.append("稿件正文为空")
    elif kind == "outbox":
        ticker = str(message.parts.get("ticker.txt", "")).strip()
        limit = getattr(channel, "ticker_max", 60)
        if _chars(ticker) > limit:
            warnings.append(f"滚动字幕 {_chars(ticker)} 字, 超过本屏上限 {limit} 字, 将被截断")
        if not pack.images:
            warnings.append("内容包没有图片, 屏幕只显示文字")
    return warnings


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, json.JSONDecodeError):
        return None


def _readable(name: str, text: str) -> str:
    """JSON parts as a person reads them (characters, not \\u escapes); others as rendered."""
    data = _json(text) if name.endswith(".json") else None
    return text if data is None else json.dumps(data, ensure_ascii=False, indent=2)


def render_preview(
    settings: Settings, pack: Pack, channel_name: str, *, at: datetime | None = None
) -> Preview:
    """Render ``pack`` through the channel's real templates (as of ``at``) and check limits.

    Raises ConfigError for an unknown channel; a template error is reported in ``error``."""
    from media_matrix.render import TemplateError

    channel = settings.channel(channel_name)
    item = OutgoingItem(
        delivery_id=0, delivery_uid="preview", pack=pack, scheduled_at=at or utcnow()
    )
    preview = Preview(channel=channel.name, type=channel.type)
    try:
        message = render_message(
            channel, [item], settings.templates, timezone=settings.timezone, now=at
        )
    except TemplateError as exc:
        preview.error = str(exc)
        return preview
    for name, part in message.parts.items():
        preview.parts[name] = (
            _readable(name, part) if isinstance(part, str) else f"({len(part)} 字节的二进制内容)"
        )
    for index, parts in enumerate(message.item_parts):
        for name, text in parts.items():
            key = name if len(message.item_parts) == 1 else f"{index + 1}/{name}"
            preview.parts[key] = text
    if channel.type == "wechat_mp":
        preview.parts["articles (字段)"] = json.dumps(
            message.fields.get("articles", []), ensure_ascii=False, indent=2
        )
    preview.html_parts = [n for n in preview.parts if n.endswith(".html")]
    preview.warnings = check_limits(channel.type, channel, pack, message)
    return preview
