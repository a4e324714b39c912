"""The signed webhook adapter against the sandbox media centre, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from media_matrix.adapters import make_adapter
from media_matrix.adapters.base import (
    AuthError,
    NothingSent,
    RejectedError,
    RetryableError,
    parse_retry_after,
)
from media_matrix.adapters.webhook import WebhookAdapter, sign, signed_headers
from media_matrix.config import WebhookChannel
from media_matrix.sandbox import MediaCentreSandbox, SandboxServers

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import TEMPLATES, Checkpoints, make_item, make_pack  # noqa: E402

pytest_plugins = ("sandbox_fixtures",)


@pytest.fixture
def sb() -> Iterator[SandboxServers]:
    with SandboxServers() as servers:
        yield servers


def hook(sb: SandboxServers, **fields: Any) -> WebhookAdapter:
    settings = {
        "name": "qingfeng-media-centre",
        "type": "webhook",
        "url": sb.mediacentre.url(),
        "secret": "sandbox-secret",
        "timeout": 2.0,
        **fields,
    }
    return make_adapter(WebhookChannel(**settings), templates_dir=TEMPLATES)  # type: ignore[return-value]


def test_signature_is_hmac_over_timestamp_nonce_body():
    body = '{"title":"科普"}'.encode()
    headers = signed_headers("s3cret", body, "uid-1", timestamp=1700000000, nonce="ab12")
    expected = hmac.new(b"s3cret", b"1700000000\nab12\n" + body, hashlib.sha256).hexdigest()
    assert headers["X-MM-Signature"] == expected == sign("s3cret", "1700000000", "ab12", body)
    assert headers["X-MM-Timestamp"] == "1700000000" and headers["Idempotency-Key"] == "uid-1"
    fresh = signed_headers("s3cret", body, "uid-1")
    assert len(fresh["X-MM-Nonce"]) == 32 and int(fresh["X-MM-Nonce"], 16) >= 0
    assert fresh["X-MM-Signature"] == fresh["X-MM-Signature"].lower()


def test_delivered_with_remote_id_and_url(sb):
    adapter = hook(sb)
    item = make_item(7)
    result = adapter.send(adapter.render([item]), Checkpoints())
    assert result.status == "delivered" and result.http_status == 201
    stored = sb.mediacentre.manuscripts[item.delivery_uid]
    assert result.remote_id == stored["id"] and result.url.endswith(stored["id"])
    body = stored["body"]
    assert body["title"] == item.pack.title and body["idempotency_key"] == item.delivery_uid
    assert (
        body["group_labels"] == ["老年人", "社会公众"] and body["source_note"] == "来源: 科普中国"
    )
    assert body["content_html"] == item.pack.content_html
    assert stored["user_agent"].startswith("media-matrix/")  # not python-requests


def test_same_idempotency_key_across_retries_delivers_once(sb):
    adapter = hook(sb, timeout=0.4)
    item = make_item(1)
    message = adapter.render([item])
    sb.mediacentre.faults.fail_next(1, status=503)
    with pytest.raises(RetryableError):
        adapter.send(message, Checkpoints())
    sb.mediacentre.faults.hang_next(1, seconds=1.0, after=True)  # accepted, answer lost
    with pytest.raises(RetryableError, match="timed out"):
        adapter.send(message, Checkpoints())
    result = adapter.send(message, Checkpoints())
    assert result.status == "delivered" and result.state["replayed"] is True
    assert len(sb.mediacentre.manuscripts) == 1
    assert sb.mediacentre.hits[item.delivery_uid] == 2  # the same key both times
    assert adapter.idempotent
    with pytest.raises(NothingSent):
        adapter.reconcile({})


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_5xx_are_retryable(sb, status):
    adapter = hook(sb)
    sb.mediacentre.faults.fail_next(1, status=status)
    with pytest.raises(RetryableError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert info.value.http_status == status and info.value.retry_after is None
    assert sb.mediacentre.manuscripts == {}


def test_retry_after_is_honoured(sb):
    adapter = hook(sb)
    sb.mediacentre.faults.fail_next(1, status=429, retry_after="7")
    with pytest.raises(RetryableError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert info.value.retry_after == 7.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    sb.mediacentre.faults.fail_next(1, status=503, retry_after=when)
    with pytest.raises(RetryableError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert 100 < info.value.retry_after <= 120
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_other_4xx_are_rejected(sb):
    adapter = hook(sb, field_map={"title": "headline"})  # the CMS requires "title": 422
    with pytest.raises(RejectedError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert info.value.http_status == 422 and "missing fields" in info.value.excerpt
    wrong_path = hook(sb, url=sb.mediacentre.base_url + "/api/nothing")
    with pytest.raises(RejectedError) as info:
        wrong_path.send(wrong_path.render([make_item(1)]), Checkpoints())
    assert info.value.http_status == 404
    sb.mediacentre.faults.fail_next(1, status=400)
    with pytest.raises(RejectedError):
        adapter.send(adapter.render([make_item(2)]), Checkpoints())


def test_bad_secret_or_clock_is_an_auth_error(sb):
    adapter = hook(sb, secret="not-the-secret")
    with pytest.raises(AuthError) as info:
        adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert info.value.http_status == 401
    sb.mediacentre.advance(400)  # the CMS clock is 400 s ahead: our timestamp is stale
    with pytest.raises(AuthError, match="401"):
        hook(sb).send(hook(sb).render([make_item(1)]), Checkpoints())
    assert [r for _, r in sb.mediacentre.rejections] == ["bad signature", "stale timestamp"]


def test_field_map_renames_and_drops():
    app = MediaCentreSandbox(required=("headline", "body"))
    with SandboxServers(mediacentre=app) as sb:
        adapter = hook(sb, field_map={"title": "headline", "content_html": "body", "text": ""})
        item = make_item(1, make_pack(1, title='标题 "引号" <b>'))
        adapter.send(adapter.render([item]), Checkpoints())
        body = sb.mediacentre.manuscripts[item.delivery_uid]["body"]
        assert body["headline"] == '标题 "引号" <b>'
        assert "title" not in body and "text" not in body and body["body"]


def test_response_id_and_url_keys_configurable(sb):
    adapter = hook(sb, id_key="status", url_key="nope.deeper")
    result = adapter.send(adapter.render([make_item(1)]), Checkpoints())
    assert result.remote_id == "accepted" and result.url is None


def test_network_errors_are_retryable(sb):
    adapter = hook(sb, url="http://127.0.0.1:9/api/manuscripts")
    with pytest.raises(RetryableError, match="network error"):
        adapter.send(adapter.render([make_item(1)]), Checkpoints())


def test_one_manuscript_per_message(sb):
    adapter = hook(sb)
    with pytest.raises(RejectedError, match="at most 1"):
        adapter.send(adapter.render([make_item(1), make_item(2)]), Checkpoints())
    message = adapter.render([make_item(1)])
    message.parts["manuscript.json"] = "[1, 2]"
    with pytest.raises(RejectedError, match="JSON object"):
        adapter.send(message, Checkpoints())
    assert json.loads(adapter.body(adapter.render([make_item(3)])))["title"]
