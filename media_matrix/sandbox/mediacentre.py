"""A loopback county media-centre CMS that takes signed manuscripts.

``POST <any path ending in /manuscripts>`` (default ``/api/manuscripts``) with headers
``X-MM-Timestamp`` (Unix seconds), ``X-MM-Nonce``, ``X-MM-Signature`` = lowercase hex
HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" + raw body) and ``Idempotency-Key``.

* Missing headers, a timestamp more than 300 s away, a bad signature or a nonce seen in the
  last 300 s: 401.
* No Idempotency-Key: 400. Body not a JSON object: 400. Required fields missing: 422.
* A repeated Idempotency-Key returns the first answer (same status and body) with header
  ``Idempotent-Replayed: true``; it never creates a second manuscript.
* Accepted: 201 ``{"id", "url", "status": "accepted"}``; ``GET /manuscripts/<id>`` shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
from typing import Any

from media_matrix.sandbox.common import Faults, Request, Response, SandboxApp, same_secret

MAX_SKEW = 300


def signature(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class MediaCentreSandbox(SandboxApp):
    name = "mediacentre"
    persistent = ("_ids", "manuscripts", "responses", "hits")
    record_types = {"Response": Response}

    def __init__(
        self,
        *,
        secret: str = "sandbox-secret",
        secrets: dict[str, str] | None = None,
        required: tuple[str, ...] = ("title",),
        faults: Faults | None = None,
    ) -> None:
        super().__init__(faults)
        self.secret = secret
        self.secrets = dict(secrets or {})  # path -> secret, for several CMSes on one server
        self.required = required
        self._ids = itertools.count(1)
        self.manuscripts: dict[str, dict[str, Any]] = {}  # accepted, by Idempotency-Key
        self.responses: dict[str, Response] = {}
        self.hits: dict[str, int] = {}  # requests per Idempotency-Key that passed the signature
        self.rejections: list[tuple[int, str]] = []
        self._nonces: dict[str, float] = {}

    def url(self, path: str = "/api/manuscripts") -> str:
        return self.base_url + path

    def _reject(self, status: int, reason: str) -> Response:
        with self.lock:
            self.rejections.append((status, reason))
        return Response.json({"error": reason}, status)

    def route(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        if req.method == "GET" and path.startswith("/manuscripts/"):
            return self._show(path.rsplit("/", 1)[-1])
        if not path.endswith("/manuscripts"):
            return Response.json({"error": "not found"}, 404)
        if req.method != "POST":
            return Response.json({"error": "method not allowed"}, 405, {"Allow": "POST"})
        ts = req.headers.get("x-mm-timestamp", "")
        nonce = req.headers.get("x-mm-nonce", "")
        sig = req.headers.get("x-mm-signature", "")
        if not (ts and nonce and sig):
            return self._reject(401, "missing signature headers")
        try:
            skew = abs(self.now() - int(ts))
        except ValueError:
            return self._reject(401, "bad timestamp")
        if skew > MAX_SKEW:
            return self._reject(401, "stale timestamp")
        secret = self.secrets.get(path, self.secret)
        if not same_secret(signature(secret, ts, nonce, req.body), sig.lower()):
            return self._reject(401, "bad signature")
        key = req.headers.get("idempotency-key", "")
        with self.lock:
            now = self.now()
            self._nonces = {n: t for n, t in self._nonces.items() if now - t <= MAX_SKEW}
            if nonce in self._nonces:
                self.rejections.append((401, "replayed nonce"))
                return Response.json({"error": "replayed nonce"}, 401)
            self._nonces[nonce] = now
            if not key:
                self.rejections.append((400, "Idempotency-Key required"))
                return Response.json({"error": "Idempotency-Key required"}, 400)
            self.hits[key] = self.hits.get(key, 0) + 1
            first = self.responses.get(key)
            if first is not None:
                return Response(
                    first.status, first.body, {**first.headers, "Idempotent-Replayed": "true"}
                )
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                return Response.json({"error": "body is not JSON"}, 400)
            if not isinstance(body, dict):
                return Response.json({"error": "body must be a JSON object"}, 400)
            missing = [f for f in self.required if not body.get(f)]
            if missing:
                return Response.json({"error": f"missing fields: {missing}"}, 422)
            ms_id = f"ms-{next(self._ids):06d}"
            self.manuscripts[key] = {
                "id": ms_id,
                "path": path,
                "body": body,
                "at": now,
                "user_agent": req.headers.get("user-agent", ""),
            }
            resp = Response.json(
                {"id": ms_id, "url": f"{self.base_url}/manuscripts/{ms_id}", "status": "accepted"},
                201,
            )
            self.responses[key] = resp
            return resp

    def _show(self, ms_id: str) -> Response:
        with self.lock:
            found = next((m for m in self.manuscripts.values() if m["id"] == ms_id), None)
        if found is None:
            return Response(404, b"not found")
        body = found["body"]
        title = html.escape(str(body.get("title", "")))
        page = f"<!DOCTYPE html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>"
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
