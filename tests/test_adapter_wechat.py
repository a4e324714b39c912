"""The WeChat MP adapter against the sandbox, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from media_matrix.adapters import make_adapter, wechat_mp
from media_matrix.adapters.base import (
    AmbiguousError,
    AuthError,
    NothingSent,
    QuotaError,
    RejectedError,
    RetryableError,
    next_beijing_midnight,
)
from media_matrix.adapters.wechat_mp import (
    CONTENT_MAX,
    TRUNCATION_NOTE,
    WechatMpAdapter,
    clip,
    truncate_html,
)
from media_matrix.config import WechatChannel
from media_matrix.sandbox import SandboxServers, WechatSandbox

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import (  # noqa: E402
    JPEG,
    LOOPBACK_POLICY,
    TEMPLATES,
    Checkpoints,
    assert_balanced,
    image_file,
    make_item,
    make_pack,
)

pytest_plugins = ("sandbox_fixtures",)


@pytest.fixture
def wechat() -> WechatSandbox:
    return WechatSandbox(publish_polls=1)


@pytest.fixture
def sb(wechat: WechatSandbox) -> Iterator[SandboxServers]:
    with SandboxServers(wechat=wechat) as servers:
        yield servers


def adapter_for(sb: SandboxServers, **fields: Any) -> WechatMpAdapter:
    settings = {
        "name": "puyang-kexie-wechat",
        "type": "wechat_mp",
        "appid": "wx-sandbox-appid",
        "secret": "sandbox-secret",
        "api_base": sb.urls["wechat"],
        "timeout": 3.0,
        **fields,
    }
    channel = WechatChannel(**settings)
    return make_adapter(channel, templates_dir=TEMPLATES, network=LOOPBACK_POLICY)  # type: ignore[return-value]


def deliver(adapter: WechatMpAdapter, items: list, checkpoint: Any = None) -> Any:
    """send, then poll until final."""
    checkpoint = checkpoint or Checkpoints()
    result = adapter.send(adapter.render(items), checkpoint)
    for _ in range(10):
        if result.status == "delivered":
            return result
        result = adapter.poll(result.remote_id, result.state)
    raise AssertionError("never delivered")


def test_publish_bundle_rewrites_every_image(sb, static, tmp_path):
    local = image_file(tmp_path)
    remote = static.base_url + "/img/photo.jpg"
    packs = [
        make_pack(
            1,
            content_html=f'<p>一</p><p><img src="{local}" alt="a"><img src="{remote}"></p>',
            images=[remote],
            local_root=str(tmp_path),
        ),
        make_pack(
            2,
            content_html=f'<p>二<img src="{local}" srcset="{local} 2x"></p>',
            local_root=str(tmp_path),
        ),
    ]
    adapter = adapter_for(sb)
    checkpoints = Checkpoints()
    result = adapter.send(
        adapter.render([make_item(i, p) for i, p in enumerate(packs, 1)]), checkpoints
    )
    assert result.status == "submitted" and result.remote_id == result.state["publish_id"]
    draft = sb.wechat.all_drafts[0]
    assert draft["dropped_images"] == 0  # every image came through uploadimg
    srcs = re.findall(r'src="([^"]+)"', " ".join(a["content"] for a in draft["articles"]))
    assert len(srcs) == 3 and all(s.startswith(sb.urls["wechat"] + "/mmbiz/img_") for s in srcs)
    assert "srcset" not in draft["articles"][1]["content"]
    assert len(set(srcs)) == 2  # the same local file uploaded once
    # pack 1's own image became its cover as permanent "thumb" material (a small JPEG)
    thumbs = [a["thumb_media_id"] for a in draft["articles"]]
    assert sb.wechat.materials[thumbs[0]]["type"] == "thumb"
    assert sb.wechat.materials[thumbs[1]]["type"] == "image"  # the shipped PNG cover
    steps = [(s.get("step"), s.get("pending")) for s in checkpoints.states]
    assert ("draft_add", True) in steps and ("submit", True) in steps
    assert checkpoints.last["publish_id"] == result.remote_id  # recorded after the call
    while result.status == "submitted":
        result = adapter.poll(result.remote_id, result.state)
    assert result.status == "delivered"
    assert result.item_urls == [p.urls[i] for p in sb.wechat.published for i in range(2)]
    assert result.url == result.item_urls[0]
    assert sb.wechat.published_titles == [p.title for p in packs]


def test_unreadable_images_are_dropped_not_fatal(sb, static, tmp_path):
    html = (
        f'<p>图<img src="{tmp_path}/missing.png"><img src="{static.base_url}/img/nope.png">'
        f'<img src="{static.base_url}/img/anim.gif"><img src="data:image/png;base64,xx"></p>'
    )
    adapter = adapter_for(sb)
    deliver(adapter, [make_item(1, make_pack(1, content_html=html))])
    content = sb.wechat.published[0].articles[0]["content"]
    assert "<img" not in content and "图" in content


def test_default_cover_uploaded_once_per_process(sb, tmp_path):
    adapter = adapter_for(sb)
    deliver(adapter, [make_item(1)])
    deliver(adapter, [make_item(2)])
    assert len(sb.wechat.materials) == 1
    other = adapter_for(sb, cover=str(tmp_path / "cover.jpg"))
    (tmp_path / "cover.jpg").write_bytes(JPEG)
    deliver(other, [make_item(3)])
    assert [m["type"] for m in sb.wechat.materials.values()] == ["image", "thumb"]


def test_fields_are_held_to_their_limits(sb):
    pack = make_pack(1, title="标" * 50, author="作" * 30, summary="摘要" * 200)
    adapter = adapter_for(sb)
    deliver(adapter, [make_item(1, pack)])
    art = sb.wechat.published[0].articles[0]
    assert len(art["title"]) == 32 and art["title"].endswith("…")
    assert len(art["author"]) == 16 and art["author"].endswith("…")
    assert len(art["digest"]) == 128
    assert clip("短标题", 32) == "短标题"


def test_long_content_is_cut_between_blocks_never_inside_a_tag(sb):
    paragraphs = "".join(
        f'<p>第{i}段：<a href="https://kepu.example/{i}">科普</a>知识<strong>重点</strong>。</p>'
        for i in range(600)
    )
    html = f"<div><h2>标题</h2>{paragraphs}<table><tr><td>表</td></tr></table></div>"
    assert len(html) > 40000
    adapter = adapter_for(sb)
    deliver(adapter, [make_item(1, make_pack(1, content_html=html))])
    content = sb.wechat.published[0].articles[0]["content"]
    assert len(content) < 20000
    assert_balanced(content)
    assert TRUNCATION_NOTE in content
    assert "来源: 科普中国" in content  # the footer survives the cut
    assert "第0段" in content and "第599段" not in content


def test_truncate_html_rules():
    short = "<p>短</p>"
    assert truncate_html(short) == short
    blocks = "".join(f"<p>段落{i}{'字' * 50}</p>" for i in range(100))
    cut = truncate_html(blocks, limit=1000)
    assert len(cut) <= 1000 and cut.endswith(TRUNCATION_NOTE)
    assert_balanced(cut)
    assert re.fullmatch(r"(<p>段落\d+字{50}</p>)+" + re.escape(TRUNCATION_NOTE), cut)
    nested = "<section><div>" + blocks + "</div></section><p>尾</p>"
    cut = truncate_html(nested, limit=1000)
    assert cut.startswith("<section><div><p>段落0") and "</div></section>" in cut
    assert_balanced(cut)
    giant = "<p>" + "很长的一段话。" * 500 + "</p>"
    cut = truncate_html(giant, limit=600)
    assert len(cut) <= 600 and cut.startswith("<p>") and cut.endswith(TRUNCATION_NOTE)
    assert_balanced(cut)
    escaped = "<p>" + "a&lt;b&amp;c " * 300 + "</p>"
    cut = truncate_html(escaped, limit=500)
    assert len(cut) <= 500 and "&amp" in cut and not re.search(r"&[a-z]*<", cut)
    assert len(truncate_html("<p>x</p>" * 5000)) <= CONTENT_MAX


def test_stale_token_refreshes_and_retries_once(sb):
    adapter = adapter_for(sb)
    assert adapter.access_token()
    before = len(sb.wechat.token_requests)
    sb.wechat.stale_next = 1
    deliver(adapter, [make_item(1)])
    assert sb.wechat.token_requests[before:] == [
        ("stable_token", False),
        ("stable_token", True),  # normal mode gave the rejected one back: force
    ]
    assert len(sb.wechat.published) == 1
    sb.wechat.stale_next = 2
    with pytest.raises(RetryableError) as info:
        adapter.call("cgi-bin/draft/get", body={"media_id": "x"})
    assert info.value.errcode == 40001 and sb.wechat.stale_next == 0  # exactly two calls


def test_token_rotated_elsewhere_is_picked_up(sb):
    adapter = adapter_for(sb)
    old = adapter.access_token()
    rotated = requests.post(
        sb.urls["wechat"] + "/cgi-bin/stable_token",
        json={
            "grant_type": "client_credential",
            "appid": "wx-sandbox-appid",
            "secret": "sandbox-secret",
            "force_refresh": True,
        },
        timeout=5,
    ).json()["access_token"]
    deliver(adapter, [make_item(1)])
    assert adapter.access_token() == rotated != old
    assert sb.wechat.token_requests[-1] == ("stable_token", False)  # no force needed


def test_expired_token_42001_refreshes(sb):
    adapter = adapter_for(sb)
    token = adapter.access_token()
    sb.wechat.expire_tokens()
    deliver(adapter, [make_item(1)])
    assert adapter.access_token() != token
    assert len(sb.wechat.published) == 1


def test_token_cached_and_refreshed_early():
    with SandboxServers(wechat=WechatSandbox(token_lifetime=1000, publish_polls=0)) as sb:
        adapter = adapter_for(sb)
        first = adapter.access_token()
        assert adapter.access_token() == first and len(sb.wechat.token_requests) == 1
        # the cache refreshes a fifth of the lifetime early; the sandbox renews in that window
        wechat_mp.TOKENS.tokens[adapter._key].refresh_at = 0
        sb.wechat.advance(850)
        assert adapter.access_token() != first
        assert len(sb.wechat.token_requests) == 2


def test_falls_back_to_cgi_bin_token(tmp_path):
    with SandboxServers(wechat=WechatSandbox(stable_token_enabled=False, publish_polls=0)) as sb:
        adapter = adapter_for(sb)
        deliver(adapter, [make_item(1)])
        assert adapter.token_source == "token"
        requests.get(  # another process takes a token: ours is invalidated
            sb.urls["wechat"] + "/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": "wx-sandbox-appid",
                "secret": "sandbox-secret",
            },
            timeout=5,
        )
        deliver(adapter, [make_item(2)])
        assert [e for e, _ in sb.wechat.token_requests] == ["token", "token", "token"]
        assert len(sb.wechat.published) == 2


def test_bad_credentials_are_auth_errors(sb):
    with pytest.raises(AuthError) as info:
        adapter_for(sb, secret="wrong").access_token()
    assert info.value.errcode == 40125
    adapter = adapter_for(sb, appid="wx-other")
    with pytest.raises(AuthError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert info.value.errcode == 40013


def test_publish_failure_status_is_rejected_with_reason(sb):
    sb.wechat.queue_outcomes(4)
    adapter = adapter_for(sb)
    result = adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert adapter.poll(result.remote_id, result.state).status == "submitted"  # status 1
    with pytest.raises(RejectedError, match="审核"):
        adapter.poll(result.remote_id, result.state)
    assert sb.wechat.published == []


def test_daily_quota_is_a_quota_error_and_the_draft_is_reused():
    wechat = WechatSandbox(publish_polls=0, api_daily_limits={"freepublish/submit": 1})
    with SandboxServers(wechat=wechat) as sb:
        adapter = adapter_for(sb)
        deliver(adapter, [make_item(1)])
        checkpoints = Checkpoints()
        message = adapter.render([make_item(2)])
        with pytest.raises(QuotaError) as info:
            adapter.send(message, checkpoints)
        assert info.value.errcode == 45009
        assert info.value.reset_at == next_beijing_midnight()
        state = checkpoints.last
        assert state["draft_media_id"] and state["pending"] is False  # refused, not in flight
        sb.wechat.advance(86400)  # a new day (our cached token expired meanwhile: 42001)
        result = adapter.send(message, checkpoints, state=state)
        assert len(sb.wechat.all_drafts) == 2  # the draft was reused, not made again
        assert adapter.poll(result.remote_id, result.state).status == "delivered"


def test_minute_quota_resets_in_a_minute():
    with SandboxServers(wechat=WechatSandbox(api_minute_limits={"draft/add": 0})) as sb:
        adapter = adapter_for(sb)
        with pytest.raises(QuotaError) as info:
            adapter.send(adapter.render([make_item(1)]), Checkpoints())
        assert info.value.errcode == 45011
        wait = info.value.reset_at - datetime.now(UTC)
        assert timedelta(seconds=50) < wait <= timedelta(seconds=61)


def test_system_busy_and_5xx_are_retryable_and_uploads_reused(sb):
    adapter = adapter_for(sb)
    checkpoints = Checkpoints()
    message = adapter.render(
        [make_item(1, make_pack(1, content_html='<p><img src="file:///nonexistent"></p>'))]
    )
    arm = {"on": True}

    def fail_draft(state: dict) -> None:
        if state.get("step") == "draft_add" and state.get("pending") and arm.pop("on", None):
            sb.wechat.faults.fail_next(1, errcode=-1)

    checkpoints.hook = fail_draft
    with pytest.raises(RetryableError) as info:
        adapter.send(message, checkpoints)
    assert info.value.errcode == -1
    uploads = len(sb.wechat.materials)
    sb.wechat.faults.fail_next(1, status=503)
    adapter2 = adapter_for(sb)  # a new process: no in-memory cache, only the recorded state
    with pytest.raises(RetryableError) as info:
        adapter2.send(message, checkpoints, state=checkpoints.last)
    assert info.value.http_status == 503
    result = adapter2.send(message, checkpoints, state=checkpoints.last)
    assert len(sb.wechat.materials) == uploads  # the cover was not uploaded again
    assert result.status == "submitted"


def test_lost_submit_answer_is_reconciled_not_resent():
    wechat = WechatSandbox(publish_polls=0, publish_seconds=0)
    with SandboxServers(wechat=wechat) as sb:
        adapter = adapter_for(sb, timeout=0.5)

        def lose_submit_answer(state: dict) -> None:
            if state.get("step") == "submit" and state.get("pending"):
                sb.wechat.faults.hang_next(1, seconds=1.5, after=True)

        checkpoints = Checkpoints(lose_submit_answer)
        message = adapter.render([make_item(1), make_item(2)])
        with pytest.raises(RetryableError):
            adapter.send(message, checkpoints)
        state = checkpoints.last
        assert state["pending"] and "publish_id" not in state
        checkpoints.hook = None
        # the retry: the draft is gone and no publish_id was recorded; titles prove nothing
        # (a re-sent edition carries the same), so an operator decides -- never a second submit
        with pytest.raises(AmbiguousError) as lost:
            adapter.send(message, checkpoints, state=state)
        assert len(sb.wechat.publishes) == 1 and len(sb.wechat.published) == 1
        assert sb.wechat.published[0].article_id in str(lost.value)  # named for the operator


def test_lost_submit_answer_is_found_by_our_tracked_links():
    """Each article's 阅读原文 is its delivery's own tracked link: WeChat's publish list shows it
    back, so a lost submit answer is settled by that recorded id, never by titles."""
    wechat = WechatSandbox(publish_polls=0, publish_seconds=0)
    with SandboxServers(wechat=wechat) as sb:
        adapter = adapter_for(sb, timeout=0.5)

        def lose_submit_answer(state: dict) -> None:
            if state.get("step") == "submit" and state.get("pending"):
                sb.wechat.faults.hang_next(1, seconds=1.5, after=True)

        items = [make_item(1), make_item(2)]
        for item in items:
            item.track_url = f"https://kp.example.cn/s/code{item.delivery_id}"
        # an earlier edition of the same packs, already published, carries the same titles
        earlier = [make_item(1, uid="e" * 32), make_item(2, uid="f" * 32)]
        for item in earlier:
            item.track_url = f"https://kp.example.cn/s/old{item.delivery_id}"
        first = adapter.send(adapter.render(earlier), Checkpoints())
        assert first.status in ("submitted", "delivered")
        checkpoints = Checkpoints(lose_submit_answer)
        message = adapter.render(items)
        with pytest.raises(RetryableError):
            adapter.send(message, checkpoints)
        state = checkpoints.last
        assert state["pending"] and "publish_id" not in state and state["tracked_sources"]
        checkpoints.hook = None
        result = adapter.send(message, checkpoints, state=state)
        assert result.status == "delivered"
        assert len(sb.wechat.publishes) == 2  # the earlier edition and ours: never a third
        ours = sb.wechat.published[-1]
        assert result.remote_id == str(ours.article_id) and result.item_urls == ours.urls
        assert [a["content_source_url"] for a in ours.articles] == [i.track_url for i in items]


def test_reconcile_outcomes(sb):
    adapter = adapter_for(sb)
    with pytest.raises(NothingSent):
        adapter.reconcile({"step": "draft_add", "pending": True})
    # a draft whose submit never left: reconcile submits that draft, no new one
    checkpoints = Checkpoints()

    def crash_before_submit(state: dict) -> None:
        if state.get("step") == "submit":
            raise KeyboardInterrupt  # the process dies right after recording intent

    checkpoints.hook = crash_before_submit
    message = adapter.render([make_item(1)])
    with pytest.raises(KeyboardInterrupt):
        adapter.send(message, checkpoints)
    checkpoints.hook = None
    recorded = checkpoints.states[-1]
    assert recorded["step"] == "submit" and recorded["pending"]
    result = adapter.reconcile(recorded, checkpoints)
    assert result.status == "submitted" and len(sb.wechat.all_drafts) == 1
    # with the publish id recorded, reconcile (and send) only look it up
    assert adapter.reconcile(result.state).status in ("submitted", "delivered")
    again = adapter.send(message, checkpoints, state=result.state)
    assert again.remote_id == result.remote_id and len(sb.wechat.publishes) == 1


def test_ambiguous_when_wechat_cannot_tell(sb):
    adapter = adapter_for(sb, timeout=0.5)

    def lose(state: dict) -> None:
        if state.get("step") == "submit" and state.get("pending"):
            sb.wechat.faults.hang_next(1, seconds=1.5, after=True)

    checkpoints = Checkpoints(lose)
    message = adapter.render([make_item(1)])
    with pytest.raises(RetryableError):
        adapter.send(message, checkpoints)
    checkpoints.hook = None
    # submitted but still publishing (not listed yet): nobody can tell, so no second publish
    assert adapter.reconcile(checkpoints.last) is None
    with pytest.raises(AmbiguousError):
        adapter.send(message, checkpoints, state=checkpoints.last)
    assert len(sb.wechat.publishes) == 1


def test_mass_send_mode_with_daily_quota_and_clientmsgid():
    with SandboxServers(wechat=WechatSandbox(publish_polls=1, mass_daily_limit=1)) as sb:
        adapter = adapter_for(sb, mode="mass_send", timeout=0.5)

        def lose(state: dict) -> None:
            if state.get("step") == "mass_send" and state.get("pending"):
                sb.wechat.faults.hang_next(1, seconds=1.5, after=True)

        checkpoints = Checkpoints(lose)
        message = adapter.render([make_item(1)])
        with pytest.raises(RetryableError):
            adapter.send(message, checkpoints)
        checkpoints.hook = None
        result = adapter.send(message, checkpoints, state=checkpoints.last)
        assert result.status == "submitted"
        assert result.state["clientmsgid"] == message.key == "0" * 31 + "1"
        assert len(sb.wechat.mass) == 1  # the retry was deduped by clientmsgid
        result = adapter.poll(result.remote_id, result.state)
        result = adapter.poll(result.remote_id, result.state)
        assert result.status == "delivered"
        with pytest.raises(QuotaError) as info:
            adapter.send(adapter.render([make_item(2)]), Checkpoints())
        assert info.value.errcode == 45028
        assert info.value.reset_at == next_beijing_midnight()


def test_too_many_items_rejected(sb):
    adapter = adapter_for(sb)
    message = adapter.render([make_item(i) for i in range(1, 10)])
    with pytest.raises(RejectedError, match="at most 8"):
        adapter.send(message, Checkpoints())
