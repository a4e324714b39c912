"""Signed JSON POST of a manuscript to a county media-centre CMS.

Body: the channel's ``manuscript.json`` rendered, top-level keys renamed by ``field_map``
(``{our_key: their_key}``; an empty name drops the key), serialized compactly as UTF-8. Headers:

* ``X-MM-Timestamp``: Unix seconds; ``X-MM-Nonce``: 16 random bytes as hex;
* ``X-MM-Signature``: lowercase hex HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" + body);
* ``Idempotency-Key``: the delivery uid, the same on every retry, so resending is safe
  (``idempotent = True``): the CMS answers a repeat with its first answer.

2xx delivered (``id_key``/``url_key`` of the JSON answer, dotted paths allowed, give the remote id
and URL); 408, 429 and 5xx retryable, honouring ``Retry-After``; 401/403 are :class:`AuthError`
(wrong secret or clock: every delivery would fail, so the channel stops); other 4xx rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import requests

from media_matrix.adapters.base import (
    BaseAdapter,
    Checkpoint,
    Message,
    RejectedError,
    SendResult,
    http_error,
    network_error,
)


def sign(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    idempotency_key: str,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-MM-Timestamp": ts,
        "X-MM-Nonce": nonce,
        "X-MM-Signature": sign(secret, ts, nonce, body),
        "Idempotency-Key": idempotency_key,
    }


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class WebhookAdapter(BaseAdapter):
    type = "webhook"
    idempotent = True
    max_items = 1

    def body(self, message: Message) -> bytes:
        try:
            data = json.loads(message.parts["manuscript.json"])
        except (KeyError, ValueError) as exc:
            raise RejectedError(f"{self.channel.name}: no valid manuscript: {exc}") from None
        if not isinstance(data, dict):
            raise RejectedError(f"{self.channel.name}: the manuscript must be a JSON object")
        mapping = self.channel.field_map or {}
        out: dict[str, Any] = {}
        for key, value in data.items():
            target = mapping.get(key, key)
            if target:
                out[target] = value
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def send(
        self,
        message: Message,
        checkpoint: Checkpoint,
        state: Mapping[str, Any] | None = None,
    ) -> SendResult:
        self.check_items(message)
        key = message.items[0].delivery_uid
        body = self.body(message)
        headers = signed_headers(self.channel.secret, body, key)
        try:
            resp = self.session.post(
                self.channel.url, data=body, headers=headers, timeout=self.channel.timeout
            )
        except requests.RequestException as exc:
            raise network_error(exc, "webhook") from None
        if not 200 <= resp.status_code < 300:
            raise http_error(resp, "webhook")
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        remote_id = _dig(answer, self.channel.id_key)
        url = _dig(answer, self.channel.url_key)
        return SendResult(
            "delivered",
            remote_id=str(remote_id) if remote_id is not None else None,
            url=str(url) if url else None,
            http_status=resp.status_code,
            excerpt=resp.text,
            item_urls=[str(url) if url else None],
            state={
                "idempotency_key": key,
                "replayed": resp.headers.get("Idempotent-Replayed") == "true",
            },
        )
