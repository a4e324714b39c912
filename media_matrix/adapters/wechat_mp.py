"""WeChat official account: materials -> one draft of up to 8 articles -> publish or mass send.

Publish mode: ``draft/add`` then ``freepublish/submit`` -> ``SendResult("submitted",
remote_id=publish_id)``; ``poll`` calls ``freepublish/get``: 0 delivered (article URLs), 1 still
publishing, 2-6 :class:`RejectedError` with the reason. Mass-send mode: ``draft/add`` then
``message/mass/sendall`` with ``clientmsgid`` = the message key (WeChat dedupes it for 24 h) ->
submitted (msg_id), polled with ``message/mass/get``.

Rules held here:

* Access token cached per (api_base, appid) for the whole process, refreshed early (a fifth of
  its lifetime, at most 5 minutes, before expiry), fetched from ``cgi-bin/stable_token`` and,
  where that endpoint is missing, from ``cgi-bin/token``; one fetch at a time per app, so
  ``cgi-bin/token`` never invalidates a sibling thread's fresh token. 40001/40014/42001 ->
  refresh and retry the call once (a rejected token means the call did not happen).
* Cover: the pack's first image, else the channel's ``cover``, else the shipped default, uploaded
  as permanent material (``thumb`` when it is a JPEG of at most 64 KB, else ``image``) and cached
  by content hash, so the default cover is uploaded once per process.
* Every ``<img>`` of the rendered article is read (file:// from disk, http(s) fetched), uploaded
  with ``media/uploadimg`` and its src rewritten; an image that cannot be read, or is not a
  JPEG/PNG of at most 1 MB, is dropped (WeChat would drop it anyway).
* Fields held to their limits: title 32, author 16, digest 128 characters (cut with "…"), content
  under 20,000 characters, cut between whole blocks (see :func:`truncate_html`).
* Errors: -1, HTTP 5xx/408/429, network -> retryable; 45009 (daily) / 45011 (minute) /
  45028 (mass quota) -> :class:`QuotaError`; 40013/40125/40164/48001... -> :class:`AuthError`;
  any other errcode -> :class:`RejectedError`.

Checkpoint state (JSON-safe; persisted by the dispatcher, passed back on retries):
``mode``, ``uids``, ``thumbs`` {cover source: media_id}, ``images`` {src: WeChat URL},
``titles``, ``step`` ("draft_add" | "submit" | "mass_send") with ``pending: true`` while that call
is in flight, ``draft_media_id``, ``publish_id``, ``msg_data_id``, ``clientmsgid``, ``msg_id``;
after a final poll also ``article_id``, ``urls``, ``publish_status``.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from media_matrix.adapters.base import (
    AdapterError,
    AmbiguousError,
    AuthError,
    BaseAdapter,
    Checkpoint,
    LoadedImage,
    Message,
    NothingSent,
    QuotaError,
    RejectedError,
    RetryableError,
    SendResult,
    http_error,
    load_image,
    network_error,
    next_beijing_midnight,
)
from media_matrix.render import DEFAULT_COVER

TITLE_MAX = 32
AUTHOR_MAX = 16
DIGEST_MAX = 128
CONTENT_MAX = 19999  # "必须少于2万字符"
SOURCE_URL_MAX_BYTES = 1024
UPLOADIMG_MAX = 1024 * 1024
THUMB_MAX = 64 * 1024
TRUNCATION_NOTE = "<p>……（篇幅所限，全文请点击“阅读原文”）</p>"

TOKEN_ERRORS = {40001, 40014, 42001}
AUTH_ERRORS = {40002, 40013, 40125, 40164, 41002, 41004, 48001, 50001, 50002, 61024}
PUBLISH_FAILURES = {
    2: "原创声明失败 (originality check failed)",
    3: "常规失败 (publish failed)",
    4: "平台审核不通过 (refused by platform review)",
    5: "成功后用户删除所有文章 (all articles deleted by the account)",
    6: "成功后系统封禁所有文章 (all articles blocked by the platform)",
}
_DESCEND = {"section", "div", "article", "main", "body", "html", "blockquote", "ul", "ol"}


# -- pure helpers -------------------------------------------------------------------------------


def clip(text: str | None, limit: int, end: str = "…") -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - len(end)].rstrip() + end


def _markup(node: Any) -> str:
    if isinstance(node, Tag):
        return node.decode(formatter="minimal")
    if isinstance(node, NavigableString):
        return node.output_ready(formatter="minimal")
    return str(node)


def _open_tag(tag: Tag) -> str:
    shell = copy.copy(tag)
    shell.clear()
    text = shell.decode(formatter="minimal")
    close = f"</{tag.name}>"
    return text[: -len(close)] if text.endswith(close) else text


def _cut_text(node: NavigableString, room: int) -> str:
    """The longest escaped prefix of a text node that fits, ending at a sentence if one is near."""
    text = str(node)
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix whose escaped form fits
        mid = (lo + hi + 1) // 2
        if len(NavigableString(text[:mid]).output_ready(formatter="minimal")) <= room:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    for i in range(len(cut) - 1, int(len(cut) * 0.6) - 1, -1):
        if cut[i] in "。！？；.!?;":
            cut = cut[: i + 1]
            break
    return NavigableString(cut).output_ready(formatter="minimal")


def _fit(nodes: list[Any], budget: int) -> list[str]:
    """Whole nodes while they fit; at the first that does not, descend into it if it is a
    container (keeping its start and end tag), else stop. Never emits half a tag."""
    out: list[str] = []
    used = 0
    for node in nodes:
        markup = _markup(node)
        if used + len(markup) <= budget:
            out.append(markup)
            used += len(markup)
            continue
        room = budget - used
        if isinstance(node, Tag) and node.name in _DESCEND and node.contents:
            start, end = _open_tag(node), f"</{node.name}>"
            inner = _fit(list(node.contents), room - len(start) - len(end))
            if any(s.strip() for s in inner):
                out.append(start + "".join(inner) + end)
        elif not out and isinstance(node, NavigableString) and not isinstance(node, Comment):
            out.append(_cut_text(node, room))
        break
    return out


def truncate_html(html: str, limit: int = CONTENT_MAX, note: str = TRUNCATION_NOTE) -> str:
    """``html`` if it is at most ``limit`` characters, else the longest run of whole top-level
    blocks that fits (descending into wrapper containers such as <section>/<div>), plus ``note``.
    Every element in the result is complete: no tag is cut, nothing is left open. A last
    top-level element with class ``mm-footer`` (the source line) is kept after the note."""
    if len(html) <= limit:
        return html
    soup = BeautifulSoup(html, "html.parser")
    nodes = list(soup.contents)
    tail = ""
    meaningful = [n for n in nodes if not (isinstance(n, NavigableString) and not n.strip())]
    if meaningful and isinstance(meaningful[-1], Tag):
        last = meaningful[-1]
        if "mm-footer" in (last.get("class") or []):
            footer = _markup(last)
            if len(footer) + len(note) <= limit // 4:
                tail = footer
                nodes = nodes[: next(i for i, n in enumerate(nodes) if n is last)]
    budget = limit - len(note) - len(tail)
    kept = "".join(_fit(nodes, budget))
    if not kept.strip():  # one giant paragraph: fall back to its text
        words = (n.get_text(" ", strip=True) if isinstance(n, Tag) else str(n) for n in nodes)
        text = NavigableString(" ".join(" ".join(words).split()))
        kept = "<p>" + _cut_text(text, budget - len("<p></p>")) + "</p>"
    return kept + note + tail


# -- token cache (process-wide) -----------------------------------------------------------------


@dataclass
class _Token:
    value: str
    refresh_at: float  # time.monotonic()


class _TokenCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self.tokens: dict[tuple[str, str], _Token] = {}
        self.stable_missing: set[str] = set()  # api bases without cgi-bin/stable_token

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def clear(self) -> None:
        with self._lock:
            self.tokens.clear()
            self.stable_missing.clear()


TOKENS = _TokenCache()


def clear_token_cache() -> None:
    TOKENS.clear()


def refresh_margin(expires_in: float) -> float:
    return min(300.0, expires_in / 5)


# -- the adapter --------------------------------------------------------------------------------


class WechatMpAdapter(BaseAdapter):
    type = "wechat_mp"
    idempotent = False
    max_items = 8

    def __init__(self, channel: Any, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        self.api_base = channel.api_base.rstrip("/")
        self.timeout = getattr(channel, "timeout", 15.0)
        self._key = (self.api_base, channel.appid)
        self._lock = threading.Lock()
        self._materials: dict[str, str] = {}  # sha256 -> permanent media_id
        self._uploaded: dict[str, str] = {}  # sha256 -> uploadimg URL
        self.token_source = ""  # "stable_token" | "token", for diagnostics

    # -- tokens ---------------------------------------------------------------------------------

    def access_token(self, rejected: str | None = None) -> str:
        with TOKENS.lock(self._key):
            now = time.monotonic()
            cached = TOKENS.tokens.get(self._key)
            if cached and cached.value != rejected and now < cached.refresh_at:
                return cached.value
            value, expires_in = self._fetch_token(force=False)
            if value == rejected:
                value, expires_in = self._fetch_token(force=True)
            TOKENS.tokens[self._key] = _Token(value, now + expires_in - refresh_margin(expires_in))
            return value

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        creds = {"grant_type": "client_credential", "appid": self.channel.appid}
        if self.api_base not in TOKENS.stable_missing:
            url = f"{self.api_base}/cgi-bin/stable_token"
            body = {**creds, "secret": self.channel.secret, "force_refresh": force}
            try:
                resp = self.session.post(url, json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                raise network_error(exc, "stable_token") from None
            data = self._json(resp)
            if data is not None and "access_token" in data:
                self.token_source = "stable_token"
                return str(data["access_token"]), float(data.get("expires_in", 7200))
            if data is not None and data.get("errcode") not in (None, 0):
                self._raise_token_error(data, resp)
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                raise http_error(resp, "stable_token")
            TOKENS.stable_missing.add(self.api_base)  # 404 or not JSON: fall back to cgi-bin/token
        try:
            resp = self.session.get(
                f"{self.api_base}/cgi-bin/token",
                params={**creds, "secret": self.channel.secret},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise network_error(exc, "token") from None
        if resp.status_code != 200:
            raise http_error(resp, "token")
        data = self._json(resp)
        if data is None:
            raise RetryableError(
                "token: answer is not JSON", http_status=200, excerpt_text=resp.text
            )
        if "access_token" not in data:
            self._raise_token_error(data, resp)
        self.token_source = "token"
        return str(data["access_token"]), float(data.get("expires_in", 7200))

    def _raise_token_error(self, data: dict[str, Any], resp: requests.Response) -> None:
        code = int(data.get("errcode", -1))
        err = self._error(code, data, resp, "access token")
        if isinstance(err, RejectedError):  # an unknown refusal of our credentials
            err = AuthError(
                str(err), http_status=resp.status_code, excerpt_text=resp.text, errcode=code
            )
        raise err

    # -- calls ----------------------------------------------------------------------------------

    @staticmethod
    def _json(resp: requests.Response) -> dict[str, Any] | None:
        try:
            data = resp.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _error(
        self, code: int, data: dict[str, Any], resp: requests.Response, what: str
    ) -> AdapterError:
        msg = f"{what}: errcode {code} {data.get('errmsg', '')}".strip()
        kw: dict[str, Any] = {
            "http_status": resp.status_code,
            "excerpt_text": resp.text,
            "errcode": code,
        }
        if code == -1 or code in TOKEN_ERRORS:
            return RetryableError(msg, **kw)
        if code == 45066:  # same clientmsgid retried too fast
            return RetryableError(msg, retry_after=60.0, **kw)
        if code in (45009, 45028):
            return QuotaError(msg, reset_at=next_beijing_midnight(), **kw)
        if code == 45011:
            return QuotaError(msg, reset_at=datetime.now(UTC) + timedelta(seconds=60), **kw)
        if code in AUTH_ERRORS:
            return AuthError(msg, **kw)
        return RejectedError(msg, **kw)

    def call(
        self,
        endpoint: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> tuple[dict[str, Any], requests.Response]:
        """POST an API call with the token; refresh and retry once on a stale token."""
        rejected = None
        for attempt in (1, 2):
            token = self.access_token(rejected=rejected)
            url = f"{self.api_base}/{endpoint}"
            query = {"access_token": token, **(params or {})}
            try:
                if files is not None:
                    resp = self.session.post(url, params=query, files=files, timeout=self.timeout)
                else:
                    # raw UTF-8, not \uXXXX escapes: WeChat counts an escape as six characters
                    payload = json.dumps(body or {}, ensure_ascii=False).encode("utf-8")
                    resp = self.session.post(
                        url,
                        params=query,
                        data=payload,
                        headers={"Content-Type": "application/json; charset=utf-8"},
                        timeout=self.timeout,
                    )
            except requests.RequestException as exc:
                raise network_error(exc, endpoint) from None
            if resp.status_code != 200:
                raise http_error(resp, endpoint)
            data = self._json(resp)
            if data is None:
                raise RetryableError(
                    f"{endpoint}: answer is not JSON", http_status=200, excerpt_text=resp.text
                )
            code = int(data.get("errcode") or 0)
            if code in TOKEN_ERRORS and attempt == 1:
                rejected = token
                continue
            if code and code not in accept:
                raise self._error(code, data, resp, endpoint)
            return data, resp
        raise AssertionError("unreachable")

    # -- media ----------------------------------------------------------------------------------

    def _upload_material(self, image: LoadedImage) -> str:
        with self._lock:
            cached = self._materials.get(image.sha256)
        if cached:
            return cached
        kind = (
            "thumb"
            if image.content_type == "image/jpeg" and len(image.data) <= THUMB_MAX
            else "image"
        )
        data, _ = self.call(
            "cgi-bin/material/add_material",
            params={"type": kind},
            files={"media": (image.filename, image.data, image.content_type)},
        )
        media_id = str(data["media_id"])
        with self._lock:
            self._materials[image.sha256] = media_id
        return media_id

    def _upload_image(self, image: LoadedImage) -> str:
        with self._lock:
            cached = self._uploaded.get(image.sha256)
        if cached:
            return cached
        data, _ = self.call(
            "cgi-bin/media/uploadimg",
            files={"media": (image.filename, image.data, image.content_type)},
        )
        url = str(data["url"])
        with self._lock:
            self._uploaded[image.sha256] = url
        return url

    def _trusted_covers(self) -> set[str]:
        """Covers the operator chose (config) or shipped: the only local files read outside a
        pack's own folder."""
        return {c for c in (getattr(self.channel, "cover", None), DEFAULT_COVER.as_uri()) if c}

    def _cover(
        self,
        sources: list[str],
        st: dict[str, Any],
        checkpoint: Checkpoint,
        local_root: str | None = None,
    ) -> str:
        thumbs = st.setdefault("thumbs", {})
        for src in [*sources, DEFAULT_COVER.as_uri()]:
            if src in thumbs:
                return thumbs[src]
            image = load_image(
                src,
                self.session,
                timeout=self.timeout,
                network=self.network,
                local_root=local_root,
                trusted=self._trusted_covers(),
            )
            if image is None or image.content_type == "image/webp":
                continue
            try:
                media_id = self._upload_material(image)
            except RejectedError:
                continue  # this picture was refused: try the next candidate
            thumbs[src] = media_id
            checkpoint(copy.deepcopy(st))
            return media_id
        raise RejectedError("no usable cover image, not even the default one")

    def rewrite_images(
        self, html: str, st: dict[str, Any], checkpoint: Checkpoint, local_root: str | None = None
    ) -> str:
        """Upload every <img> through media/uploadimg and point it at WeChat; drop the rest."""
        if "<img" not in html.lower():
            return html
        images = st.setdefault("images", {})
        soup = BeautifulSoup(html, "html.parser")
        changed = False
        for img in soup.find_all("img"):
            src = str(img.get("src") or img.get("data-src") or "").strip()
            url = images.get(src)
            if url is None and src:
                image = load_image(
                    src,
                    self.session,
                    timeout=self.timeout,
                    max_bytes=UPLOADIMG_MAX,
                    network=self.network,
                    local_root=local_root,
                )
                if image is not None and image.content_type in ("image/png", "image/jpeg"):
                    try:
                        url = self._upload_image(image)
                    except RejectedError:
                        url = None
                    if url:
                        images[src] = url
                        checkpoint(copy.deepcopy(st))
            if url:
                img["src"] = url
                for attr in ("data-src", "srcset"):
                    if attr in img.attrs:
                        del img[attr]
            else:
                img.decompose()
            changed = True
        return soup.decode(formatter="minimal") if changed else html

    def build_articles(
        self, message: Message, st: dict[str, Any], checkpoint: Checkpoint
    ) -> list[dict[str, Any]]:
        fields = message.fields.get("articles") or []
        articles = []
        for i, item in enumerate(message.items):
            f = fields[i] if i < len(fields) else {}
            html = message.item_parts[i]["article.html"]
            root = item.pack.local_root
            content = truncate_html(self.rewrite_images(html, st, checkpoint, root))
            source_url = str(f.get("content_source_url") or item.pack.url or "")
            if len(source_url.encode()) > SOURCE_URL_MAX_BYTES:
                source_url = ""
            covers = [c for c in (f.get("cover"), f.get("fallback_cover")) if c]
            articles.append(
                {
                    "title": clip(f.get("title", item.pack.title), TITLE_MAX),
                    "author": clip(f.get("author", item.pack.author), AUTHOR_MAX),
                    "digest": clip(f.get("digest", item.pack.summary), DIGEST_MAX),
                    "content": content,
                    "content_source_url": source_url,
                    "thumb_media_id": self._cover(covers, st, checkpoint, root),
                    "need_open_comment": 0,
                    "only_fans_can_comment": 0,
                }
            )
        return articles

    # -- sending --------------------------------------------------------------------------------

    def _step(
        self, st: dict[str, Any], step: str, checkpoint: Checkpoint, call: Any
    ) -> tuple[dict[str, Any], requests.Response]:
        """Checkpoint before and after a non-idempotent call. An errcode answer is definitive
        (the call was refused), so ``pending`` is cleared; a lost answer leaves it set."""
        st["step"], st["pending"] = step, True
        checkpoint(copy.deepcopy(st))
        try:
            data, resp = call()
        except AdapterError as exc:
            if exc.errcode is not None and exc.errcode != -1:
                st["pending"] = False
                checkpoint(copy.deepcopy(st))
            raise
        st["pending"] = False
        return data, resp

    def send(
        self,
        message: Message,
        checkpoint: Checkpoint,
        state: Mapping[str, Any] | None = None,
    ) -> SendResult:
        self.check_items(message)
        st: dict[str, Any] = copy.deepcopy(dict(state or {}))
        st.setdefault("mode", self.channel.mode)
        st["uids"] = message.uids
        if st.get("publish_id") or st.get("msg_id") or st.get("pending"):
            try:
                result = self.reconcile(st, checkpoint)
            except NothingSent:
                result = None
                st = {"mode": st["mode"], **_reusable(st), "uids": message.uids}
            else:
                if result is None:
                    raise AmbiguousError(
                        f"an earlier attempt ({st.get('step')}) may have reached WeChat and no "
                        f"recorded id (draft {st.get('draft_media_id')}, no publish_id) can "
                        f"tell whether it did; {self._same_titles(st)}. Check the account, "
                        "then retry or cancel"
                    )
                return result
        draft_id = st.get("draft_media_id")
        if draft_id and not self._draft_exists(draft_id):
            st.pop("draft_media_id", None)
            draft_id = None
        if not draft_id:
            articles = self.build_articles(message, st, checkpoint)
            st["titles"] = [a["title"] for a in articles]
            st["source_urls"] = [a["content_source_url"] for a in articles]
            # Each article's 阅读原文 is its delivery's own tracked link: an id we recorded,
            # unique per delivery and edition, that WeChat's publish list shows back.
            st["tracked_sources"] = all(
                item.track_url and a["content_source_url"] == item.track_url
                for a, item in zip(articles, message.items, strict=True)
            )
            data, _ = self._step(
                st,
                "draft_add",
                checkpoint,
                lambda: self.call("cgi-bin/draft/add", body={"articles": articles}),
            )
            draft_id = st["draft_media_id"] = str(data["media_id"])
            checkpoint(copy.deepcopy(st))
        if st["mode"] == "mass_send":
            st["clientmsgid"] = st.get("clientmsgid") or message.key
            return self._mass_send(st, checkpoint)
        return self._submit(st, checkpoint)

    def _submit(self, st: dict[str, Any], checkpoint: Checkpoint) -> SendResult:
        data, resp = self._step(
            st,
            "submit",
            checkpoint,
            lambda: self.call(
                "cgi-bin/freepublish/submit", body={"media_id": st["draft_media_id"]}
            ),
        )
        st["publish_id"] = str(data["publish_id"])
        if data.get("msg_data_id") is not None:
            st["msg_data_id"] = str(data["msg_data_id"])
        checkpoint(copy.deepcopy(st))
        return SendResult(
            "submitted",
            remote_id=st["publish_id"],
            http_status=resp.status_code,
            excerpt=resp.text,
            state=st,
        )

    def _mass_send(self, st: dict[str, Any], checkpoint: Checkpoint) -> SendResult:
        body = {
            "filter": {"is_to_all": True},
            "mpnews": {"media_id": st["draft_media_id"]},
            "msgtype": "mpnews",
            "send_ignore_reprint": 0,
            "clientmsgid": st["clientmsgid"],
        }
        data, resp = self._step(
            st,
            "mass_send",
            checkpoint,
            lambda: self.call("cgi-bin/message/mass/sendall", body=body, accept=frozenset({45065})),
        )
        st["msg_id"] = str(data["msg_id"])
        if data.get("msg_data_id") is not None:
            st["msg_data_id"] = str(data["msg_data_id"])
        checkpoint(copy.deepcopy(st))
        return SendResult(
            "submitted",
            remote_id=st["msg_id"],
            http_status=resp.status_code,
            excerpt=resp.text,
            state=st,
        )

    def _draft_exists(self, media_id: str) -> bool:
        try:
            self.call("cgi-bin/draft/get", body={"media_id": media_id})
        except RejectedError as exc:
            if exc.errcode == 40007:
                return False
            raise
        return True

    # -- asynchronous outcome -------------------------------------------------------------------

    def poll(self, remote_id: str, state: Mapping[str, Any]) -> SendResult:
        st = copy.deepcopy(dict(state))
        if st.get("mode") == "mass_send":
            return self._poll_mass(remote_id, st)
        data, resp = self.call("cgi-bin/freepublish/get", body={"publish_id": remote_id})
        status = int(data.get("publish_status", -1))
        st["publish_status"] = status
        if status == 1:
            return SendResult(
                "submitted",
                remote_id=remote_id,
                http_status=resp.status_code,
                excerpt=resp.text,
                state=st,
            )
        if status == 0:
            detail = (data.get("article_detail") or {}).get("item") or []
            by_idx = {int(i.get("idx", 0)): i.get("article_url") for i in detail}
            count = len(st.get("uids") or []) or len(by_idx)
            urls = [by_idx.get(i) for i in range(1, count + 1)]
            st["article_id"] = data.get("article_id")
            st["urls"] = urls
            st["fail_idx"] = data.get("fail_idx") or []
            return SendResult(
                "delivered",
                remote_id=remote_id,
                url=next((u for u in urls if u), None),
                http_status=resp.status_code,
                excerpt=resp.text,
                item_urls=urls,
                state=st,
            )
        reason = PUBLISH_FAILURES.get(status, f"unknown publish_status {status}")
        raise RejectedError(
            f"publish {remote_id} failed: publish_status {status} {reason}; "
            f"fail_idx {data.get('fail_idx')}",
            http_status=resp.status_code,
            excerpt_text=resp.text,
        )

    def _poll_mass(self, msg_id: str, st: dict[str, Any]) -> SendResult:
        data, resp = self.call("cgi-bin/message/mass/get", body={"msg_id": int(msg_id)})
        status = str(data.get("msg_status", ""))
        st["msg_status"] = status
        if status == "SEND_SUCCESS":
            return SendResult(
                "delivered",
                remote_id=msg_id,
                http_status=resp.status_code,
                excerpt=resp.text,
                state=st,
            )
        if status == "SENDING":
            return SendResult(
                "submitted",
                remote_id=msg_id,
                http_status=resp.status_code,
                excerpt=resp.text,
                state=st,
            )
        raise RejectedError(
            f"mass send {msg_id}: {status or 'unknown status'}",
            http_status=resp.status_code,
            excerpt_text=resp.text,
        )

    def reconcile(
        self, state: Mapping[str, Any], checkpoint: Checkpoint | None = None
    ) -> SendResult | None:
        """Ask WeChat what became of an attempt recorded in ``state``, finishing it when safe.

        publish_id -> freepublish/get; msg_id -> message/mass/get; a mass send in flight ->
        sendall again with the same clientmsgid (WeChat answers 45065 with the first msg_id if it
        went out); a draft whose submit may have happened -> the draft still in the box means it
        was not submitted, so submit it now; a draft gone with no publish_id recorded cannot be
        told by the ids we hold -> None (never matched by title). No draft at all ->
        NothingSent.
        """
        st = copy.deepcopy(dict(state))
        checkpoint = checkpoint or (lambda _state: None)
        if st.get("publish_id"):
            return self.poll(st["publish_id"], st)
        if st.get("msg_id"):
            return self.poll(st["msg_id"], st)
        draft_id = st.get("draft_media_id")
        if not draft_id:
            raise NothingSent("no draft was created: nothing can have been published")
        if st.get("mode") == "mass_send":
            if not st.get("clientmsgid"):
                return None
            return self._mass_send(st, checkpoint)
        if self._draft_exists(draft_id):
            return self._submit(st, checkpoint)
        if st.get("tracked_sources"):
            return self._published_with_our_links(st)
        return None  # submitted (or deleted by hand) and no recorded id says which publish

    def _published_with_our_links(self, st: dict[str, Any]) -> SendResult | None:
        """The finished publish whose articles carry exactly our tracked links (unique per
        delivery), found in freepublish/batchget; None while none does (still publishing,
        failed, or the draft was deleted by hand: an operator decides)."""
        wanted = list(st.get("source_urls") or [])
        for offset in range(0, 200, 20):
            data, resp = self.call(
                "cgi-bin/freepublish/batchget",
                body={"offset": offset, "count": 20, "no_content": 1},
            )
            for entry in data.get("item") or []:
                news = (entry.get("content") or {}).get("news_item") or []
                if wanted and [n.get("content_source_url") for n in news] == wanted:
                    urls = [n.get("url") for n in news]
                    st.update(article_id=entry.get("article_id"), urls=urls, publish_status=0)
                    return SendResult(
                        "delivered",
                        remote_id=str(entry.get("article_id")),
                        url=next((u for u in urls if u), None),
                        http_status=resp.status_code,
                        excerpt=f"found by our tracked links: article {entry.get('article_id')}",
                        item_urls=urls,
                        state=st,
                    )
            if int(data.get("item_count") or 0) < 20:
                break
        return None

    def _same_titles(self, st: Mapping[str, Any]) -> str:
        """For the operator only, never a decision: the published articles whose titles are
        ours (WeChat's lists carry neither the draft's media_id nor our uids, and a re-sent
        edition carries the same titles as the earlier one)."""
        titles = st.get("titles") or []
        hits: list[str] = []
        for offset in range(0, 100, 20):
            data, _ = self.call(
                "cgi-bin/freepublish/batchget",
                body={"offset": offset, "count": 20, "no_content": 1},
            )
            for item in data.get("item") or []:
                news = (item.get("content") or {}).get("news_item") or []
                if titles and [n.get("title") for n in news] == titles:
                    hits.append(str(item.get("article_id")))
            if int(data.get("item_count") or 0) < 20:
                break
        if not hits:
            return "no published article carries these titles yet"
        return (
            f"published articles with the same titles (maybe an earlier edition): {', '.join(hits)}"
        )


def _reusable(st: Mapping[str, Any]) -> dict[str, Any]:
    """What a fresh attempt may keep from an earlier one: uploaded media (never public)."""
    return {k: copy.deepcopy(st[k]) for k in ("thumbs", "images") if k in st}
