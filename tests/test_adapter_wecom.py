"""The WeCom robot adapter against the sandbox, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from media_matrix.adapters import make_adapter
from media_matrix.adapters.base import (
    AmbiguousError,
    AuthError,
    NothingSent,
    QuotaError,
    RejectedError,
    RetryableError,
    SlidingWindowLimiter,
)
from media_matrix.adapters.wecom_robot import (
    MARKDOWN_NOTE,
    WecomRobotAdapter,
    clip_bytes,
    clip_markdown,
)
from media_matrix.config import WecomChannel
from media_matrix.sandbox import SandboxServers, WecomSandbox

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import TEMPLATES, Checkpoints, make_item, make_pack  # noqa: E402

pytest_plugins = ("sandbox_fixtures",)


@pytest.fixture
def sb() -> Iterator[SandboxServers]:
    with SandboxServers(wecom=WecomSandbox(per_minute=1000)) as servers:
        yield servers


def robot(sb: SandboxServers, key: str = "robot-1", **fields: Any) -> WecomRobotAdapter:
    channel = WecomChannel(
        name=f"wecom-{key}",
        type="wecom_robot",
        webhook_url=sb.wecom.url(key),
        timeout=fields.pop("timeout", 3.0),
        **fields,
    )
    return make_adapter(channel, templates_dir=TEMPLATES)  # type: ignore[return-value]


def test_news_message_within_byte_limits(sb):
    pack = make_pack(
        1,
        title="长标题" * 40,
        summary="摘要内容" * 100,
        images=["file:///local.png", "https://img.kepu.example/a.png"],
    )
    adapter = robot(sb)
    result = adapter.send(adapter.render([make_item(1, pack)]), Checkpoints())
    assert result.status == "delivered" and result.http_status == 200
    sent = sb.wecom.messages[0]["payload"]
    assert sent["msgtype"] == "news"
    art = sent["news"]["articles"][0]
    assert len(art["title"].encode()) <= 128 and art["title"].endswith("…")
    assert len(art["description"].encode()) <= 512
    assert art["url"] == pack.url and art["picurl"] == "https://img.kepu.example/a.png"


def test_news_carries_up_to_eight_and_falls_back_to_markdown_without_links(sb):
    adapter = robot(sb)
    adapter.send(adapter.render([make_item(i) for i in range(1, 9)]), Checkpoints())
    assert len(sb.wecom.messages[0]["payload"]["news"]["articles"]) == 8
    with pytest.raises(RejectedError):
        adapter.send(adapter.render([make_item(i) for i in range(1, 10)]), Checkpoints())
    adapter.send(adapter.render([make_item(1, make_pack(1, url=None))]), Checkpoints())
    sent = sb.wecom.messages[-1]["payload"]
    assert sent["msgtype"] == "markdown" and "### 秋冬季流感防护指南" in sent["markdown"]["content"]


def test_markdown_format_cut_between_lines(sb):
    adapter = robot(sb, format="markdown")
    packs = [make_pack(i, summary="要点" * 90, title=f"标题[{i}]*重点*") for i in range(1, 9)]
    message = adapter.render([make_item(i, p) for i, p in enumerate(packs, 1)])
    assert len(str(message.parts["markdown.md"]).encode()) > 4096
    adapter.send(message, Checkpoints())
    content = sb.wecom.messages[0]["payload"]["markdown"]["content"]
    assert len(content.encode()) <= 4096 and content.endswith(MARKDOWN_NOTE)
    assert r"标题\[1\]\*重点\*" in content  # markdown specials escaped
    assert "来源: 科普中国" in content


def test_clip_helpers_never_split_characters():
    assert clip_bytes("科普" * 100, 10) == "科普…"
    assert len(clip_bytes("a" * 600, 512).encode()) <= 512
    assert clip_markdown("短") == "短"
    cut = clip_markdown("\n".join(["行" * 100] * 50), 1000)
    assert len(cut.encode()) <= 1000 and all(
        line in ("行" * 100, MARKDOWN_NOTE) for line in cut.split("\n")
    )
    assert len(clip_markdown("字" * 5000, 100).encode()) <= 100


def test_twenty_a_minute_enforced_on_our_side(sb):
    adapter = robot(sb)
    message = adapter.render([make_item(1)])
    for _ in range(20):
        adapter.send(message, Checkpoints())
    before = sb.wecom.requests
    with pytest.raises(QuotaError) as info:
        adapter.send(message, Checkpoints())
    assert sb.wecom.requests == before  # refused locally, no request made
    wait = info.value.reset_at - datetime.now(UTC)
    assert timedelta(seconds=55) < wait <= timedelta(seconds=60)
    assert len(sb.wecom.messages) == 20
    other = robot(sb, key="robot-2")  # the window is per robot
    other.send(other.render([make_item(1)]), Checkpoints())
    slower = robot(sb, key="robot-3", rate_per_minute=2)
    slower.send(message, Checkpoints())
    slower.send(message, Checkpoints())
    with pytest.raises(QuotaError):
        slower.send(message, Checkpoints())


def test_rate_limit_is_thread_safe(sb):
    adapter = robot(sb)
    message = adapter.render([make_item(1)])
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            try:
                adapter.send(message, Checkpoints())
                outcome = "sent"
            except QuotaError:
                outcome = "quota"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("sent") == 20 and outcomes.count("quota") == 20
    assert len(sb.wecom.messages) == 20


def test_limiter_window_slides():
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 60.0, clock=lambda: now[0])
    limiter.acquire("k")
    now[0] = 30.0
    limiter.acquire("k")
    with pytest.raises(QuotaError) as info:
        limiter.acquire("k")
    wait = (info.value.reset_at - datetime.now(UTC)).total_seconds()
    assert 29 < wait <= 30  # when the first event leaves the window
    now[0] = 60.0
    limiter.acquire("k")


def test_server_side_45009_is_a_quota_error():
    with SandboxServers(wecom=WecomSandbox(per_minute=1)) as sb:
        adapter = robot(sb)  # someone else already used this robot's minute
        message = adapter.render([make_item(1)])
        adapter.send(message, Checkpoints())
        with pytest.raises(QuotaError) as info:
            adapter.send(message, Checkpoints())
        assert info.value.errcode == 45009


def test_invalid_key_is_auth_and_bad_payload_rejected():
    with SandboxServers(wecom=WecomSandbox(keys={"good"})) as sb:
        adapter = robot(sb, key="bad")
        with pytest.raises(AuthError) as info:
            adapter.send(adapter.render([make_item(1)]), Checkpoints())
        assert info.value.errcode == 93000
        good = robot(sb, key="good")
        message = good.render([make_item(1)])
        message.parts["news.json"] = '{"news": {"articles": []}}'
        message.parts["markdown.md"] = "   "
        with pytest.raises(RejectedError):
            good.send(message, Checkpoints())


def test_lost_answer_is_never_posted_twice(sb):
    adapter = robot(sb, timeout=0.4)
    message = adapter.render([make_item(1)])
    sb.wecom.faults.hang_next(1, seconds=1.2, after=True)
    checkpoints = Checkpoints()
    with pytest.raises(RetryableError):
        adapter.send(message, checkpoints)
    assert checkpoints.last["pending"] is True
    assert adapter.reconcile(checkpoints.last) is None
    with pytest.raises(AmbiguousError):
        adapter.send(message, checkpoints, state=checkpoints.last)
    assert len(sb.wecom.messages) == 1


def test_errors_before_posting_are_safe_to_retry(sb):
    adapter = robot(sb)
    message = adapter.render([make_item(1)])
    checkpoints = Checkpoints()
    sb.wecom.faults.fail_next(1, status=503)
    with pytest.raises(RetryableError) as info:
        adapter.send(message, checkpoints)
    assert info.value.http_status == 503 and checkpoints.last["pending"] is False
    with pytest.raises(NothingSent):
        adapter.reconcile(checkpoints.last)
    sb.wecom.faults.fail_next(1, errcode=-1)
    with pytest.raises(RetryableError) as info:
        adapter.send(message, checkpoints, state=checkpoints.last)
    assert info.value.errcode == -1 and checkpoints.last["pending"] is False
    assert adapter.send(message, checkpoints, state=checkpoints.last).status == "delivered"
    assert len(sb.wecom.messages) == 1
    dead = robot(sb)
    dead.channel.webhook_url = "http://127.0.0.1:9/cgi-bin/webhook/send?key=x"
    with pytest.raises(RetryableError):
        dead.send(message, checkpoints)
    assert checkpoints.last["pending"] is False  # connection refused: nothing went out


def test_a_recorded_post_is_never_repeated_after_a_crash(sb):
    """The answer arrived and was checkpointed, then the process died before the dispatcher
    recorded the outcome: recovery must report delivered without posting again."""
    adapter = robot(sb)
    message = adapter.render([make_item(1)])
    checkpoints = Checkpoints()
    adapter.send(message, checkpoints)
    recorded = checkpoints.last
    assert recorded["posted"] is True and recorded["pending"] is False
    assert adapter.reconcile(recorded).status == "delivered"
    assert adapter.send(message, checkpoints, state=recorded).status == "delivered"
    assert len(sb.wecom.messages) == 1
