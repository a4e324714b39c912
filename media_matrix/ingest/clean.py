"""Sanitize source HTML to what WeChat articles and screens can show, and derive text.

nh3 (ammonia) does the sanitizing against an allowlist; we add link resolution (relative
URLs made absolute against the item's base) and a scheme check on every URL attribute.
"""

from __future__ import annotations

import hashlib
import html
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "del", "div", "em", "figcaption",
    "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "mark", "ol",
    "p", "pre", "q", "s", "section", "small", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
}
# Removed together with everything inside them.
DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template"}
LINK_SCHEMES = {"http", "https", "mailto"}
IMAGE_SCHEMES = {"http", "https", "file"}

_BLOCK_END = re.compile(r"<br\s*/?>|</(?:p|h[1-6]|li|div|tr|blockquote|section|figure|pre)>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\u3000\xa0]+")
_ODD_SPACES = "\t\r\f\v\u3000\xa0"  # _SPACES but the plain space
_IMG_SRC = re.compile(r'<img\b[^>]*?\ssrc="([^"]*)"', re.I)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Allowlisted, link-resolved HTML; no script, style, handlers or dangerous URLs.

    ammonia (inside nh3) resolves relative URLs against the base and drops every URL whose
    scheme is not allowed, all in Rust: no Python callback per attribute. ``file:`` URLs are
    allowed only when the base itself is a local file (our own resource packs).
    """
    if not fragment:
        return ""
    return _cleaner((base_url or "").strip()).clean(fragment).strip()


@lru_cache(maxsize=64)
def _cleaner(base: str) -> nh3.Cleaner:
    """One compiled sanitizer per base: building the allowlists costs as much per call as
    cleaning a short article, and a feed's items share its base."""
    local = base.lower().startswith("file:")
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=LINK_SCHEMES | IMAGE_SCHEMES if local else LINK_SCHEMES,
        url_relative=("rewrite_with_base", base) if _is_absolute(base) else "deny",
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def _is_absolute(url: str) -> bool:
    return bool(urlsplit(url).scheme) and ("://" in url or url.startswith("file:"))


# Terminal escape sequences (CSI, OSC, other ESC-x), then lone C0 (but \t \n), DEL, C1 and the
# bidirectional overrides/isolates that make a title read differently from what it holds.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """``text`` without terminal escapes, control characters (but tab and newline) or bidi
    overrides: what a stranger typed must print as what it says."""
    if not text or not _CONTROLS.search(text):  # every escape starts with ESC, a control
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def local_file_inside(url: str, root: str | None) -> bool:
    """Whether a file:// URL names a file inside ``root`` once every symlink is resolved."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or not root or parts.netloc not in ("", "localhost"):
        return False
    try:
        path = Path(unquote(parts.path)).resolve()
        return path.is_relative_to(Path(root).resolve())
    except (OSError, ValueError):
        return False


_FILE_IMG = re.compile(r'<img\b[^>]*?\ssrc="(file:[^"]*)"[^>]*>', re.I)
_FILE_HREF = re.compile(r'\shref="(file:[^"]*)"', re.I)


def confine_local(clean_html: str, root: str | None) -> tuple[str, list[str]]:
    """Sanitized HTML without file:// images or links outside ``root`` (all of them when
    ``root`` is None: only local sources may name local files); returns the dropped URLs."""
    # "file:" lower-cased needs an e or E right before a colon: no char else lowers to either,
    # and two finds spare lower-casing the whole page
    if ("e:" not in clean_html and "E:" not in clean_html) or "file:" not in clean_html.lower():
        return clean_html, []
    dropped: list[str] = []

    def check(match: re.Match[str]) -> str:
        url = html.unescape(match.group(1))
        if local_file_inside(url, root):
            return match.group(0)
        dropped.append(url)
        return ""

    return _FILE_HREF.sub(check, _FILE_IMG.sub(check, clean_html)), dropped


def html_to_text(clean_html: str) -> str:
    """Readable plain text from sanitized HTML (blocks become lines)."""
    text = _BLOCK_END.sub("\n", clean_html)
    text = html.unescape(_TAG.sub("", text))
    if "  " in text or any(c in text for c in _ODD_SPACES):  # else _SPACES changes nothing
        text = _SPACES.sub(" ", text)
    # Each whitespace run holding a newline becomes one newline, as ``\s*\n\s*`` -> "\n"
    # would do, without the regex trying ``\s*`` at every character.
    return "\n".join(filter(None, map(str.strip, text.split("\n"))))


def plain_text(fragment: str) -> str:
    """Text of a title-like field that may hold markup or escaped markup, on one line."""
    text = fragment or ""
    if "<" not in text and "&" not in text:
        return " ".join(text.split())
    for _ in range(3):
        stripped = nh3.clean(text, tags=set(), clean_content_tags=DROPPED_WITH_CONTENT)
        stripped = html.unescape(stripped)
        if stripped == text or "<" not in stripped:
            text = stripped
            break
        text = stripped
    if "<" in text:  # still markup-looking after three rounds: drop the brackets
        text = text.replace("<", "‹").replace(">", "›")
    return " ".join(text.split())


def image_urls(clean_html: str) -> list[str]:
    seen: dict[str, None] = {}
    for src in _IMG_SRC.findall(clean_html):
        seen.setdefault(html.unescape(src), None)
    return list(seen)


def summarize(text: str, limit: int = 120) -> str:
    """First sentence-ish span of the text, cut at a sentence end when one is near."""
    flat = " ".join(text.split())  # split() cuts at what re's \s matches, 4x faster than a sub
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    for mark in "。！？!?；;":
        index = cut.rfind(mark)
        if index >= limit // 2:
            return cut[: index + 1]
    return cut.rstrip() + "…"


# Full-width ASCII (Ａ１，) folded to ASCII, the way two sites typing one article differ most.
# Not NFKC: NFKC over every body was a third of the cost of cleaning. Nor str.translate: it
# looks up every character, while Chinese text holds a few distinct full-width marks (，（）)
# now and then: find those, then replace each everywhere.
_FULLWIDTH = re.compile("[\uff01-\uff5e]")
_TO_ASCII = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}


def content_hash(title: str, text: str) -> str:
    """Hash of normalized title and text: the same article from two sources hashes alike
    (whitespace dropped, full-width letters, digits and punctuation folded to ASCII)."""
    normalized = "".join(f"{title}\n{text}".split())
    for char in set(_FULLWIDTH.findall(normalized)):
        normalized = normalized.replace(char, _TO_ASCII[char])
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9_/.~%!$&'()*+,=:@-]*)?")


def plain_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host that urlsplit and urljoin give back
    as is: lower-case scheme, a plain host, ordinary path characters, no params, query or
    fragment. Most links are; they need no parsing to be judged."""
    return _PLAIN_URL.fullmatch(url) is not None


def safe_url(url: str | None, base: str | None = None) -> str | None:
    """An item link or enclosure URL, absolute, http(s) or file only."""
    if not url:
        return None
    url = url.strip()
    if plain_http_url(url):
        return url
    absolute = urljoin(base, url) if base else url
    scheme = urlsplit(absolute).scheme.lower()
    if scheme in {"http", "https"} or (scheme == "file" and (base or "").startswith("file:")):
        return absolute
    return None
