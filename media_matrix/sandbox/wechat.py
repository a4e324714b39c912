"""A loopback WeChat official-account API: tokens, media, drafts, publishing, mass send, stats.

Faithful where it matters to the adapter (request shapes, answers, errcodes):

* ``GET cgi-bin/token``: a new token invalidates the previous ``token`` tokens of the app (after
  ``token_grace`` seconds; the real grace is 5 minutes, 0 here by default).
  ``POST cgi-bin/stable_token``: the same token until it expires unless ``force_refresh``, which
  invalidates the previous one; in its last 5 minutes (a fifth of the lifetime when shorter)
  normal mode already hands out the next one. The two families are isolated, as in the API.
  Errors: 40002 bad grant_type, 40013 bad appid, 40125 bad secret; on API calls 41001 missing
  token, 40014 malformed token, 40001 stale/invalidated token, 42001 expired token.
* ``material/add_material`` (multipart ``media``; type image <= 10 MB bmp/png/jpeg/gif, thumb
  <= 64 KB JPEG) and ``media/uploadimg`` (jpg/png <= 1 MB) -> media_id/url; 40004 bad type,
  40005 bad file type, 40009 image too big, 41005 no media.
* ``draft/add`` 1-8 articles: 44003 empty, 45008 more than 8, 45003 title > 32 chars,
  45110 author > 16, 45004 digest > 128, 45002 content >= 20,000 chars or >= 1 MB, 45005
  content_source_url > 1 KB, 40007 unknown thumb_media_id. External <img> are dropped (counted).
  ``draft/get``; a draft leaves the box when submitted or mass-sent.
* ``freepublish/submit`` -> publish_id + msg_data_id; ``freepublish/get`` answers
  publish_status 1 for ``publish_polls`` polls (or until ``publish_seconds`` passed), then the
  final status (0 with article_detail and article_url, or a configured failure 2-6 with
  fail_idx; ``queue_outcomes``); ``freepublish/batchget`` lists finished publishes.
* ``message/mass/sendall`` with ``clientmsgid`` dedupe (45065 + the earlier msg_id) and a daily
  limit (``mass_daily_limit``, 1 like a subscription account; then 45028 no mass quota);
  ``message/mass/get``.
* ``api_daily_limits`` / ``api_minute_limits`` per endpoint -> 45009 / 45011.
* ``stale_next = n``: the next n API calls answer 40001 (another process rotated the token).
* ``datacube/getarticlesummary`` and ``datacube/getarticletotaldetail``: deterministic reads and
  shares for published articles; 61500 bad date format, 61501 when end_date is later than
  yesterday (Beijing) or the span exceeds 1 day.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from media_matrix.sandbox.common import Fault, Faults, Request, Response, SandboxApp, same_secret

BEIJING = ZoneInfo("Asia/Shanghai")
TOKEN_PREFIX = "SBX_"
AUTHED = {
    "material/add_material",
    "media/uploadimg",
    "draft/add",
    "draft/get",
    "freepublish/submit",
    "freepublish/get",
    "freepublish/batchget",
    "message/mass/sendall",
    "message/mass/get",
}
DATACUBE = {"getarticlesummary": 1, "getarticletotaldetail": 1}  # max span in days
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def _err(code: int, msg: str, **extra: Any) -> Response:
    return Response.json({"errcode": code, "errmsg": f"{msg} rid: sandbox", **extra})


def _ok(**data: Any) -> Response:
    return Response.json({"errcode": 0, "errmsg": "ok", **data})


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    return None


@dataclass
class _Token:
    value: str
    appid: str
    kind: str  # "token" | "stable"
    expires_at: float
    revoked_at: float | None = None


@dataclass
class Published:
    """An accepted publish (or mass send): what the public got."""

    publish_id: str
    msg_data_id: str
    article_id: str
    articles: list[dict[str, Any]]
    urls: list[str]
    day: date
    via: str = "freepublish"


@dataclass
class _Publish:
    publish_id: str
    msg_data_id: str
    draft_media_id: str
    articles: list[dict[str, Any]]
    polls_left: int
    final: int
    submitted_at: float = 0.0
    status: int = 1
    article_id: str | None = None
    urls: list[str] = field(default_factory=list)


class WechatSandbox(SandboxApp):
    name = "wechat"
    persistent = (
        "_ids",
        "tokens",
        "materials",
        "images",
        "drafts",
        "all_drafts",
        "publishes",
        "published",
        "mass",
        "clientmsgids",
        "calls",
    )
    record_types = {"_Token": _Token, "Published": Published, "_Publish": _Publish}

    def __init__(
        self,
        *,
        apps: dict[str, str] | None = None,
        token_lifetime: float = 7200.0,
        token_grace: float = 0.0,
        stable_token_enabled: bool = True,
        publish_polls: int = 2,
        publish_seconds: float | None = None,
        default_outcome: int = 0,
        mass_daily_limit: int = 1,
        api_daily_limits: dict[str, int] | None = None,
        api_minute_limits: dict[str, int] | None = None,
        followers: int = 5000,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(faults)
        self.apps = dict(apps or {"wx-sandbox-appid": "sandbox-secret"})
        self.token_lifetime = token_lifetime
        self.token_grace = token_grace
        self.stable_token_enabled = stable_token_enabled
        self.publish_polls = publish_polls
        self.publish_seconds = publish_seconds  # also finish unpolled publishes after this long
        self.default_outcome = default_outcome
        self.outcomes: deque[int] = deque()  # final statuses for the next submits, in order
        self.mass_daily_limit = mass_daily_limit
        self.api_daily_limits = dict(api_daily_limits or {})
        self.api_minute_limits = dict(api_minute_limits or {})
        self.followers = followers
        self._ids = itertools.count(1)
        self.tokens: dict[str, _Token] = {}
        self.stale_next = 0  # the next n API calls answer 40001 whatever the token
        self.token_requests: list[tuple[str, bool]] = []  # (endpoint, force_refresh)
        self.materials: dict[str, dict[str, Any]] = {}
        self.images: dict[str, bytes] = {}  # uploadimg url path -> bytes
        self.drafts: dict[str, dict[str, Any]] = {}
        self.all_drafts: list[dict[str, Any]] = []
        self.publishes: dict[str, _Publish] = {}
        self.published: list[Published] = []  # accepted: what reached the public
        self.mass: dict[str, dict[str, Any]] = {}  # msg_id -> record
        self.clientmsgids: dict[str, str] = {}
        self.calls: dict[tuple[str, str, str], int] = {}  # (appid, endpoint, period) -> count

    # -- test helpers ---------------------------------------------------------------------------

    def queue_outcomes(self, *statuses: int) -> None:
        """Final publish_status for the next submits (0 ok, 2-6 failures)."""
        with self.lock:
            self.outcomes.extend(statuses)

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, self.now())

    def revoke_tokens(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.revoked_at = self.now()

    @property
    def published_titles(self) -> list[str]:
        return [a["title"] for p in self.published for a in p.articles]

    def today(self) -> date:
        return datetime.fromtimestamp(self.now(), BEIJING).date()

    # -- dispatch -------------------------------------------------------------------------------

    def transient_error(self, fault: Fault) -> Response:
        if fault.status:
            return Response.json({"errcode": -1, "errmsg": "system error"}, fault.status)
        return _err(fault.errcode if fault.errcode is not None else -1, "system error")

    def route(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        if req.method == "GET" and path.startswith("/s/"):
            return self._article_page(path[3:])
        if req.method == "GET" and path.startswith("/mmbiz/"):
            data = self.images.get(path)
            if data is None:
                return Response(404, b"not found")
            return Response(200, data, {"Content-Type": f"image/{_image_type(data) or 'png'}"})
        if path == "/cgi-bin/token":
            return self._token(req)
        if path == "/cgi-bin/stable_token":
            if not self.stable_token_enabled:
                return Response(404, b"<html><body>404 Not Found</body></html>")
            return self._stable_token(req)
        if path.startswith("/datacube/"):
            endpoint = path.removeprefix("/datacube/")
            if endpoint not in DATACUBE:
                return Response(404, b"not found")
            return self._authed(req, f"datacube/{endpoint}", self._datacube)
        endpoint = path.removeprefix("/cgi-bin/")
        if endpoint not in AUTHED:
            return Response(404, b"not found")
        if req.method != "POST":
            return _err(43002, "require POST method")
        handler = getattr(self, "_" + endpoint.replace("/", "_"))
        return self._authed(req, endpoint, handler)

    def _authed(self, req: Request, endpoint: str, handler: Any) -> Response:
        value = req.query.get("access_token", "")
        if not value:
            return _err(41001, "access_token missing")
        with self.lock:
            now = self.now()
            token = self.tokens.get(value)
            if token is None:
                if not value.startswith(TOKEN_PREFIX):
                    return _err(40014, "invalid access_token")
                return _err(40001, "invalid credential, access_token is invalid or not latest")
            if token.revoked_at is not None and now >= token.revoked_at:
                return _err(40001, "invalid credential, access_token is invalid or not latest")
            if now >= token.expires_at:
                return _err(42001, "access_token expired")
            if self.stale_next > 0:
                self.stale_next -= 1
                return _err(40001, "invalid credential, access_token is invalid or not latest")
            quota = self._count(token.appid, endpoint, now)
            if quota is not None:
                return quota
        if req.headers.get("content-type", "").startswith("multipart/form-data"):
            return handler(req, token.appid, None)
        try:
            body = req.json() if req.body else {}
        except (ValueError, UnicodeDecodeError):
            return _err(47001, "data format error")
        if not isinstance(body, dict):
            return _err(47001, "data format error")
        return handler(req, token.appid, body)

    def _count(self, appid: str, endpoint: str, now: float) -> Response | None:
        local = datetime.fromtimestamp(now, BEIJING)
        for limits, period, code, msg in (
            (
                self.api_daily_limits,
                local.strftime("%Y-%m-%d"),
                45009,
                "reach max api daily quota limit",
            ),
            (
                self.api_minute_limits,
                local.strftime("%Y-%m-%d %H:%M"),
                45011,
                "api minute-quota reach limit, must slower, retry next minute",
            ),
        ):
            limit = limits.get(endpoint)
            if limit is None:
                continue
            key = (appid, endpoint, period)
            if self.calls.get(key, 0) >= limit:
                return _err(code, msg)
            self.calls[key] = self.calls.get(key, 0) + 1
        return None

    # -- tokens ---------------------------------------------------------------------------------

    def _check_app(self, appid: str, secret: str, grant_type: str) -> Response | None:
        if grant_type != "client_credential":
            return _err(40002, "invalid grant_type")
        if appid not in self.apps:
            return _err(40013, "invalid appid")
        if not same_secret(self.apps[appid], secret):
            return _err(40125, "invalid appsecret")
        return None

    def _issue(self, appid: str, kind: str, now: float, revoke_after: float) -> _Token:
        for old in self.tokens.values():
            if old.appid == appid and old.kind == kind and old.revoked_at is None:
                old.revoked_at = now + revoke_after
        token = _Token(TOKEN_PREFIX + secrets.token_hex(24), appid, kind, now + self.token_lifetime)
        self.tokens[token.value] = token
        return token

    def _token(self, req: Request) -> Response:
        q = req.query
        problem = self._check_app(q.get("appid", ""), q.get("secret", ""), q.get("grant_type", ""))
        if problem:
            return problem
        with self.lock:
            self.token_requests.append(("token", False))
            token = self._issue(q["appid"], "token", self.now(), self.token_grace)
        return Response.json({"access_token": token.value, "expires_in": int(self.token_lifetime)})

    def _stable_token(self, req: Request) -> Response:
        if req.method != "POST":
            return _err(43002, "require POST method")
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            return _err(47001, "data format error")
        problem = self._check_app(
            str(body.get("appid", "")), str(body.get("secret", "")), str(body.get("grant_type", ""))
        )
        if problem:
            return problem
        force = bool(body.get("force_refresh", False))
        with self.lock:
            now = self.now()
            self.token_requests.append(("stable_token", force))
            current = next(
                (
                    t
                    for t in reversed(list(self.tokens.values()))
                    if t.appid == body["appid"]
                    and t.kind == "stable"
                    and t.revoked_at is None
                    and t.expires_at > now
                ),
                None,
            )
            early = min(300.0, self.token_lifetime / 5)
            if current is None or force:
                current = self._issue(body["appid"], "stable", now, 0.0)
            elif current.expires_at - now <= early:
                # normal mode renews early (5 min in the real API); the old one stays valid
                current = self._issue(body["appid"], "stable", now, current.expires_at - now)
            left = max(1, int(current.expires_at - now))
        return Response.json({"access_token": current.value, "expires_in": left})

    # -- materials ------------------------------------------------------------------------------

    def _material_add_material(self, req: Request, appid: str, body: Any) -> Response:
        kind = req.query.get("type", "")
        if kind not in ("image", "thumb", "voice", "video"):
            return _err(40004, "invalid media type")
        media = req.form_files().get("media")
        if not media or not media[1]:
            return _err(41005, "media data missing")
        data = media[1]
        itype = _image_type(data)
        if kind == "thumb":
            if itype != "jpeg":
                return _err(40005, "invalid file type")
            if len(data) > 64 * 1024:
                return _err(40009, "invalid image size")
        elif kind == "image":
            if itype is None:
                return _err(40005, "invalid file type")
            if len(data) > 10 * 1024 * 1024:
                return _err(40009, "invalid image size")
        else:
            return _err(40005, "invalid file type")
        with self.lock:
            n = next(self._ids)
            media_id = f"MAT_{n:06d}_{hashlib.sha1(data).hexdigest()[:12]}"
            url_path = f"/mmbiz/mat_{n:06d}.{itype}"
            self.images[url_path] = data
            self.materials[media_id] = {"type": kind, "size": len(data), "appid": appid}
        return Response.json({"media_id": media_id, "url": self.base_url + url_path})

    def _media_uploadimg(self, req: Request, appid: str, body: Any) -> Response:
        media = req.form_files().get("media")
        if not media or not media[1]:
            return _err(41005, "media data missing")
        data = media[1]
        itype = _image_type(data)
        if itype not in ("png", "jpeg"):
            return _err(40005, "invalid file type")
        if len(data) > 1024 * 1024:
            return _err(40009, "invalid image size")
        with self.lock:
            n = next(self._ids)
            url_path = f"/mmbiz/img_{n:06d}.{itype}"
            self.images[url_path] = data
        return Response.json({"url": self.base_url + url_path})

    # -- drafts ---------------------------------------------------------------------------------

    def _check_article(self, art: Any) -> Response | None:
        if not isinstance(art, dict) or not str(art.get("title") or "").strip():
            return _err(44003, "empty news data")
        if len(str(art["title"])) > 32:
            return _err(45003, "title size out of limit")
        if len(str(art.get("author") or "")) > 16:
            return _err(45110, "author size out of limit")
        if len(str(art.get("digest") or "")) > 128:
            return _err(45004, "description size out of limit")
        content = str(art.get("content") or "")
        if not content.strip():
            return _err(44003, "empty news data")
        if len(content) >= 20000 or len(content.encode()) >= 1024 * 1024:
            return _err(45002, "content size out of limit")
        if len(str(art.get("content_source_url") or "").encode()) > 1024:
            return _err(45005, "url size out of limit")
        if art.get("thumb_media_id") not in self.materials:
            return _err(40007, "invalid media_id")
        return None

    def _filter_images(self, content: str) -> tuple[str, int]:
        dropped = 0

        def keep(match: re.Match[str]) -> str:
            nonlocal dropped
            src_match = _SRC.search(match.group(0))
            src = next((g for g in src_match.groups() if g is not None), "") if src_match else ""
            if src.startswith(self.base_url + "/mmbiz/"):
                return match.group(0)
            dropped += 1
            return ""

        return _IMG.sub(keep, content), dropped

    def _draft_add(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        articles = body.get("articles")
        if not isinstance(articles, list) or not articles:
            return _err(44003, "empty news data")
        if len(articles) > 8:
            return _err(45008, "article size out of limit")
        with self.lock:
            for art in articles:
                problem = self._check_article(art)
                if problem:
                    return problem
            stored, dropped = [], 0
            for art in articles:
                content, lost = self._filter_images(str(art["content"]))
                dropped += lost
                stored.append({**art, "content": content})
            media_id = f"DRAFT_{next(self._ids):06d}_{secrets.token_hex(6)}"
            draft = {"media_id": media_id, "articles": stored, "dropped_images": dropped}
            self.drafts[media_id] = draft
            self.all_drafts.append(draft)
        return Response.json({"media_id": media_id})

    def _draft_get(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        with self.lock:
            draft = self.drafts.get(str(body.get("media_id", "")))
        if draft is None:
            return _err(40007, "invalid media_id")
        return Response.json({"news_item": draft["articles"]})

    # -- publishing -----------------------------------------------------------------------------

    def _freepublish_submit(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        with self.lock:
            draft = self.drafts.pop(str(body.get("media_id", "")), None)
            if draft is None:
                return _err(40007, "invalid media_id")
            n = next(self._ids)
            final = self.outcomes.popleft() if self.outcomes else self.default_outcome
            pub = _Publish(
                publish_id=str(2247480000 + n),
                msg_data_id=str(2247490000 + n),
                draft_media_id=draft["media_id"],
                articles=draft["articles"],
                polls_left=self.publish_polls,
                final=final,
                submitted_at=self.now(),
            )
            self.publishes[pub.publish_id] = pub
        return _ok(publish_id=pub.publish_id, msg_data_id=pub.msg_data_id)

    def _finish(self, pub: _Publish) -> None:
        pub.status = pub.final
        if pub.final != 0:
            return
        pub.article_id = f"ART_{pub.msg_data_id}"
        pub.urls = [
            f"{self.base_url}/s/{pub.msg_data_id}_{i}" for i in range(1, len(pub.articles) + 1)
        ]
        self.published.append(
            Published(
                publish_id=pub.publish_id,
                msg_data_id=pub.msg_data_id,
                article_id=pub.article_id,
                articles=pub.articles,
                urls=pub.urls,
                day=self.today(),
            )
        )

    def _finish_due(self) -> None:
        if self.publish_seconds is None:
            return
        for pub in self.publishes.values():
            if pub.status == 1 and self.now() - pub.submitted_at >= self.publish_seconds:
                self._finish(pub)

    def _freepublish_get(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        with self.lock:
            self._finish_due()
            pub = self.publishes.get(str(body.get("publish_id", "")))
            if pub is None:
                return _err(40007, "invalid publish_id")
            if pub.status == 1:
                if pub.polls_left > 0:
                    pub.polls_left -= 1
                else:
                    self._finish(pub)
            data: dict[str, Any] = {"publish_id": pub.publish_id, "publish_status": pub.status}
            if pub.status == 0:
                data["article_id"] = pub.article_id
                data["article_detail"] = {
                    "count": len(pub.urls),
                    "item": [{"idx": i, "article_url": u} for i, u in enumerate(pub.urls, 1)],
                }
                data["fail_idx"] = []
            elif pub.status == 1:
                data["fail_idx"] = []
            else:
                data["fail_idx"] = list(range(1, len(pub.articles) + 1))
        return Response.json(data)

    def _freepublish_batchget(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        offset = int(body.get("offset", 0) or 0)
        count = max(1, min(20, int(body.get("count", 20) or 20)))
        no_content = bool(body.get("no_content", 0))
        with self.lock:
            self._finish_due()
            rows = [p for p in reversed(self.published) if p.via == "freepublish"]
        items = []
        for pub in rows[offset : offset + count]:
            news = []
            for art, url in zip(pub.articles, pub.urls, strict=False):
                entry = {k: v for k, v in art.items() if not (no_content and k == "content")}
                news.append({**entry, "url": url, "is_deleted": False})
            items.append(
                {"article_id": pub.article_id, "content": {"news_item": news}, "update_time": 0}
            )
        return Response.json({"total_count": len(rows), "item_count": len(items), "item": items})

    def _article_page(self, key: str) -> Response:
        with self.lock:
            for pub in self.published:
                for i, url in enumerate(pub.urls):
                    if url.endswith("/s/" + key):
                        art = pub.articles[i]
                        page = (
                            f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
                            f"<title>{art['title']}</title></head><body><h1>{art['title']}</h1>"
                            f"{art['content']}</body></html>"
                        )
                        return Response(
                            200, page.encode(), {"Content-Type": "text/html; charset=utf-8"}
                        )
        return Response(404, b"not found")

    # -- mass send ------------------------------------------------------------------------------

    def _message_mass_sendall(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        if body.get("msgtype") != "mpnews":
            return _err(40008, "invalid message type")
        if not isinstance(body.get("filter"), dict):
            return _err(47001, "data format error")
        client_id = str(body.get("clientmsgid") or "")
        if len(client_id) > 64:
            return _err(45067, "clientmsgid size out of limit")
        with self.lock:
            now = self.now()
            if client_id and client_id in self.clientmsgids:
                earlier = self.clientmsgids[client_id]
                if now - self.mass[earlier]["at"] < 86400:
                    return _err(45065, "clientmsgid exist", msg_id=int(earlier))
            today = self.today()
            sent_today = sum(1 for m in self.mass.values() if m["day"] == today)
            if sent_today >= self.mass_daily_limit:
                return _err(45028, "has no masssend quota")
            draft = self.drafts.pop(str((body.get("mpnews") or {}).get("media_id", "")), None)
            if draft is None:
                return _err(40007, "invalid media_id")
            n = next(self._ids)
            msg_id, msg_data_id = str(1000000000 + n), str(2247490000 + n)
            self.mass[msg_id] = {
                "msg_id": msg_id,
                "articles": draft["articles"],
                "day": today,
                "at": now,
                "polls_left": self.publish_polls,
            }
            if client_id:
                self.clientmsgids[client_id] = msg_id
            urls = [
                f"{self.base_url}/s/{msg_data_id}_{i}" for i in range(1, len(draft["articles"]) + 1)
            ]
            self.published.append(
                Published(
                    publish_id=msg_id,
                    msg_data_id=msg_data_id,
                    article_id=f"ART_{msg_data_id}",
                    articles=draft["articles"],
                    urls=urls,
                    day=today,
                    via="mass",
                )
            )
        return _err(
            0, "send job submission success", msg_id=int(msg_id), msg_data_id=int(msg_data_id)
        )

    def _message_mass_get(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        with self.lock:
            record = self.mass.get(str(body.get("msg_id", "")))
            if record is None:
                return _err(40007, "invalid msg_id")
            if record["polls_left"] > 0:
                record["polls_left"] -= 1
                status = "SENDING"
            else:
                status = "SEND_SUCCESS"
        return Response.json({"msg_id": int(record["msg_id"]), "msg_status": status})

    # -- datacube -------------------------------------------------------------------------------

    def _reads(self, msgid: str, age: int) -> dict[str, int]:
        """Deterministic plausible numbers for one article on its ``age``-th day (0 = publish)."""
        seed = int(hashlib.sha256(msgid.encode()).hexdigest()[:8], 16)
        base = self.followers * (30 + seed % 70) // 1000  # 3-10 % of followers on day 0
        reads = max(0, base // (1 + age * 2))
        users = reads * 4 // 5
        shares = reads * (3 + seed % 5) // 100
        return {"reads": reads, "users": users, "shares": shares, "favs": reads // 50}

    def _datacube(self, req: Request, appid: str, body: dict[str, Any]) -> Response:
        endpoint = req.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            begin = date.fromisoformat(str(body.get("begin_date", "")))
            end = date.fromisoformat(str(body.get("end_date", "")))
        except ValueError:
            return _err(61500, "date format error")
        yesterday = self.today() - timedelta(days=1)
        if end > yesterday or begin > end or (end - begin).days >= DATACUBE[endpoint]:
            return _err(61501, "date range error")
        with self.lock:
            published = list(self.published)
        rows: list[dict[str, Any]] = []
        if endpoint == "getarticlesummary":
            day = begin
            for pub in published:
                age = (day - pub.day).days
                if not 0 <= age <= 30:
                    continue
                for idx, art in enumerate(pub.articles, 1):
                    msgid = f"{pub.msg_data_id}_{idx}"
                    r = self._reads(msgid, age)
                    rows.append(
                        {
                            "ref_date": day.isoformat(),
                            "msgid": msgid,
                            "title": art["title"],
                            "int_page_read_user": r["users"],
                            "int_page_read_count": r["reads"],
                            "ori_page_read_user": r["users"] // 10,
                            "ori_page_read_count": r["reads"] // 10,
                            "share_user": r["shares"] * 4 // 5,
                            "share_count": r["shares"],
                            "add_to_fav_user": r["favs"],
                            "add_to_fav_count": r["favs"],
                        }
                    )
            return Response.json({"list": rows})
        for pub in published:
            if not begin <= pub.day <= end:
                continue
            for idx, art in enumerate(pub.articles, 1):
                msgid = f"{pub.msg_data_id}_{idx}"
                details = []
                total_reads = total_shares = 0
                for age in range(0, min(30, (yesterday - pub.day).days) + 1):
                    r = self._reads(msgid, age)
                    total_reads += r["users"]
                    total_shares += r["shares"]
                    details.append(
                        {
                            "stat_date": (pub.day + timedelta(days=age)).isoformat(),
                            "read_user": total_reads,
                            "read_user_source": [{"scene_desc": "全部", "user_count": total_reads}],
                            "share_user": total_shares,
                            "zaikan_user": total_reads // 40,
                            "like_user": total_reads // 25,
                            "comment_count": total_reads // 200,
                            "collection_user": total_reads // 50,
                        }
                    )
                rows.append(
                    {
                        "ref_date": pub.day.isoformat(),
                        "msgid": msgid,
                        "title": art["title"],
                        "url": pub.urls[idx - 1],
                        "publish_type": 0,
                        "detail_list": details,
                    }
                )
        return Response.json({"list": rows, "is_delay": False})
