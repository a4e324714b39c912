"""Tracked links: pure decisions (codes, user-agent classes, visitor keys, redirect targets).

A tracked link is ``{public.base_url}/s/{code}``; the public face (``media_matrix.public``)
resolves it, records a hit and redirects. Nothing here touches the store or the network.

Privacy (个人信息保护法): a hit keeps its day, its link, a user-agent *class* and a visitor key
``HMAC-SHA256(daily salt, address + user agent)``. The salt is random per local day and deleted
once the day is over, so a key can be compared within its day (unique visitors) but can never be
recomputed from an address afterwards. The address itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CODE_BYTES = 9  # 72 random bits -> 12 URL-safe characters
TOKEN_BYTES = 18  # officer page tokens: 144 bits -> 24 characters
_CODE = re.compile(r"^[A-Za-z0-9_-]{12}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{24}$")

# Crawlers, link-preview fetchers and scripted clients (lower case substrings). A preview fetch
# (a chat app unfurling the link) is not a person opening it.
_BOT_MARKERS = (
    "bot",
    "spider",
    "crawl",
    "slurp",
    "preview",
    "facebookexternalhit",
    "facebot",
    "whatsapp",
    "telegram",
    "skypeuripreview",
    "embedly",
    "quora link",
    "pinterest",
    "vkshare",
    "w3c_validator",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "headlesschrome",
    "phantomjs",
    "bytespider",
    "yisouspider",
    "sogou",
    "360spider",
    "haosouspider",
    "google-pagerenderer",
    "mediapartners",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
)
_MOBILE_MARKERS = ("mobile", "android", "iphone", "ipad", "ipod", "harmonyos", "windows phone")


def new_code() -> str:
    """A short unguessable link code."""
    return secrets.token_urlsafe(CODE_BYTES)


def new_token() -> str:
    """An unguessable officer page token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def valid_code(text: str) -> bool:
    return bool(_CODE.match(text))


def valid_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def track_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/s/{code}"


def officer_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/o/{token}"


def classify_agent(user_agent: str | None, method: str = "GET") -> str:
    """The user-agent class of a request: wechat, mobile, desktop or bot.

    HEAD requests, empty agents and known crawlers or preview fetchers are bots. The WeChat
    (and WeCom) in-app browser says ``MicroMessenger``; it is checked before the bot markers
    because its agent may carry other products' names.
    """
    if method.upper() not in ("GET", "POST"):
        return "bot"
    ua = (user_agent or "").strip().lower()
    if not ua:
        return "bot"
    if "micromessenger" in ua or "wxwork" in ua:
        return "wechat"
    if any(marker in ua for marker in _BOT_MARKERS):
        return "bot"
    if any(marker in ua for marker in _MOBILE_MARKERS):
        return "mobile"
    return "desktop"


def counted(ua_class: str) -> bool:
    """Whether a hit of this class is a click (bots and previews are logged, not counted)."""
    return ua_class != "bot"


def visitor_key(salt: bytes, address: str, user_agent: str | None) -> str:
    """HMAC of address and agent under the day's salt: comparable within the day only."""
    message = f"{address}\n{user_agent or ''}".encode("utf-8", "replace")
    return hmac.new(salt, message, hashlib.sha256).hexdigest()[:32]


def new_salt() -> bytes:
    return secrets.token_bytes(32)


def is_web_url(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class PublicCopy:
    """Where a pack is publicly readable: a delivered copy on a channel of some type."""

    channel_type: str
    url: str | None
    delivered_at: str | None = None


# Preference among delivered copies: the WeChat article first, then a media centre's page.
_PREFERENCE = ("wechat_mp", "webhook")


def best_public_url(copies: Iterable[PublicCopy], source_url: str | None) -> str | None:
    """The pack's best public URL: the published WeChat article, else the media centre's URL
    when its CMS returned one, else the source article. Only http(s) URLs qualify (an outbox
    folder's file:// address is not public). The earliest copy of a kind wins, so the target
    of a printed QR code does not move when the pack is sent again."""
    usable = [c for c in copies if is_web_url(c.url)]
    for kind in _PREFERENCE:
        found = sorted(
            (c for c in usable if c.channel_type == kind), key=lambda c: c.delivered_at or "~"
        )
        if found:
            return found[0].url
    return source_url if is_web_url(source_url) else None


class TokenBuckets:
    """In-memory token buckets per key (thread-safe, bounded in keys: oldest forgotten first).

    ``take(key)`` spends one token and says whether one was there; ``allowed(key)`` only looks.
    A key refills ``rate`` tokens per second up to ``burst``.
    """

    def __init__(
        self,
        burst: float = 20,
        rate: float = 0.5,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def allowed(self, key: str) -> bool:
        with self._lock:
            return self._level(key, self.clock()) >= 1

    def take(self, key: str) -> bool:
        with self._lock:
            now = self.clock()
            tokens = self._level(key, now)
            ok = tokens >= 1
            self._buckets[key] = (tokens - 1 if ok else tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return ok
