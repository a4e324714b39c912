"""WeCom group robot: ``POST <webhook_url>`` with a news (1-8 articles) or markdown message.

* Format from the channel (``news`` or ``markdown``); news falls back to markdown when an item
  has no link (a news article needs one). Byte limits held before sending: news title 128 and
  description 512 bytes (cut with "…"), markdown 4096 bytes (cut between whole lines).
* At most 20 messages a minute per robot (fewer if the channel's ``rate_per_minute`` says so),
  enforced here with a process-wide sliding window keyed by the robot key. When the window is
  full the adapter does NOT sleep: it raises :class:`QuotaError` with ``reset_at`` = when the
  oldest message leaves the window, so the dispatcher reschedules instead of parking a worker.
  A 45009 from WeCom (someone else used the robot) is a QuotaError a minute ahead.
* Not idempotent (WeCom has no dedupe key): the adapter checkpoints ``{"step": "post",
  "pending": true}`` before the POST; if the answer is lost the state stays pending, and a later
  ``send`` with that state raises :class:`AmbiguousError` rather than posting twice. A refused
  connection (nothing sent) clears it.
* errcode 93000 (invalid webhook url) -> AuthError; -1 -> retryable; other errcodes -> rejected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from media_matrix.adapters.base import (
    AmbiguousError,
    AuthError,
    BaseAdapter,
    Checkpoint,
    Message,
    NothingSent,
    QuotaError,
    RejectedError,
    RetryableError,
    SendResult,
    SlidingWindowLimiter,
    http_error,
    network_error,
)

PER_MINUTE = 20
TITLE_MAX_BYTES = 128
DESCRIPTION_MAX_BYTES = 512
MARKDOWN_MAX_BYTES = 4096
MARKDOWN_NOTE = "……"
LIMITER = SlidingWindowLimiter(PER_MINUTE, 60.0)


def clip_bytes(text: str, max_bytes: int, end: str = "…") -> str:
    """At most ``max_bytes`` of UTF-8, never splitting a character; ``end`` marks a cut."""
    if len(text.encode()) <= max_bytes:
        return text
    room = max_bytes - len(end.encode())
    out, used = [], 0
    for ch in text:
        size = len(ch.encode())
        if used + size > room:
            break
        out.append(ch)
        used += size
    return "".join(out).rstrip() + end


def clip_markdown(text: str, max_bytes: int = MARKDOWN_MAX_BYTES, note: str = MARKDOWN_NOTE) -> str:
    """Whole lines while they fit in ``max_bytes`` (with ``note`` appended when cut)."""
    text = text.strip()
    if len(text.encode()) <= max_bytes:
        return text
    room = max_bytes - len(("\n" + note).encode())
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        size = len(line.encode()) + (1 if kept else 0)
        if used + size > room:
            if not kept:
                kept.append(clip_bytes(line, room, ""))
            break
        kept.append(line)
        used += size
    return "\n".join(kept).rstrip() + "\n" + note


def _connect_failed(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached the remote."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


class WecomRobotAdapter(BaseAdapter):
    type = "wecom_robot"
    idempotent = False
    max_items = 8
    limiter = LIMITER

    def __init__(self, channel: Any, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        parts = urlsplit(channel.webhook_url)
        key = parse_qs(parts.query).get("key", [""])[-1]
        self.robot = key or channel.webhook_url
        self.per_minute = min(PER_MINUTE, channel.rate_per_minute or PER_MINUTE)
        self.timeout = getattr(channel, "timeout", 10.0)

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body to post, limits applied."""
        if self.channel.format == "news":
            news = json.loads(message.parts["news.json"])
            articles = news.get("news", {}).get("articles") or []
            if articles and all(
                str(a.get("url") or "").startswith(("http://", "https://")) for a in articles
            ):
                clean = []
                for art in articles[:8]:
                    entry = {
                        "title": clip_bytes(str(art.get("title") or ""), TITLE_MAX_BYTES),
                        "description": clip_bytes(
                            str(art.get("description") or ""), DESCRIPTION_MAX_BYTES
                        ),
                        "url": art["url"],
                    }
                    if str(art.get("picurl") or "").startswith(("http://", "https://")):
                        entry["picurl"] = art["picurl"]
                    clean.append(entry)
                return {"msgtype": "news", "news": {"articles": clean}}
        content = clip_markdown(str(message.parts["markdown.md"]))
        if not content:
            raise RejectedError(f"{self.channel.name}: the markdown template rendered nothing")
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def send(
        self,
        message: Message,
        checkpoint: Checkpoint,
        state: Mapping[str, Any] | None = None,
    ) -> SendResult:
        self.check_items(message)
        st: dict[str, Any] = copy.deepcopy(dict(state or {}))
        if st.get("posted"):
            # an earlier attempt was accepted but not recorded (crash): never post twice
            return SendResult("delivered", http_status=200, excerpt="already posted", state=st)
        if st.get("pending"):
            raise AmbiguousError(
                "an earlier post to the robot lost its answer; WeCom cannot tell whether it "
                "went out"
            )
        body = json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8")
        self.limiter.acquire(self.robot, self.per_minute)  # QuotaError when the minute is full
        st.update(step="post", pending=True, uids=message.uids)
        checkpoint(copy.deepcopy(st))
        try:
            resp = self.session.post(
                self.channel.webhook_url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            if _connect_failed(exc):
                self.limiter.release(self.robot)
                st["pending"] = False
                checkpoint(copy.deepcopy(st))
            raise network_error(exc, "wecom robot") from None
        if resp.status_code != 200:
            st["pending"] = False
            checkpoint(copy.deepcopy(st))
            raise http_error(resp, "wecom robot")
        try:
            data = resp.json()
        except ValueError:
            # a 200 whose body we cannot read: the message may have gone out (pending stays)
            raise AmbiguousError(
                "wecom robot: answer is not JSON", http_status=200, excerpt_text=resp.text
            ) from None
        code = int(data.get("errcode") or 0) if isinstance(data, dict) else -1
        st.update(pending=False, posted=code == 0)
        checkpoint(copy.deepcopy(st))
        kw: dict[str, Any] = {"http_status": 200, "excerpt_text": resp.text, "errcode": code}
        errmsg = data.get("errmsg", "") if isinstance(data, dict) else ""
        msg = f"wecom robot: errcode {code} {errmsg}"
        if code == 0:
            return SendResult("delivered", http_status=200, excerpt=resp.text, state=st)
        if code == 45009:
            raise QuotaError(msg, reset_at=datetime.now(UTC) + timedelta(seconds=60), **kw)
        if code == -1:
            raise RetryableError(msg, **kw)
        if code in (93000, 40001, 40014, 42001):
            raise AuthError(msg, **kw)
        raise RejectedError(msg, **kw)

    def reconcile(
        self, state: Mapping[str, Any], checkpoint: Checkpoint | None = None
    ) -> SendResult | None:
        if state.get("posted"):
            return SendResult(
                "delivered", http_status=200, excerpt="already posted", state={**state}
            )
        if state.get("pending"):
            return None  # WeCom offers no way to look a message up
        raise NothingSent("no post was in flight")
