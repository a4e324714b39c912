"""The fast paths of clean.py give exactly what the plain formulas they replace gave.

Each reference below is the straightforward version (a regex sub, str.translate, urljoin,
urlsplit, nh3.clean with its options on every call); the shipped code skips work only when a
cheap check proves the result unchanged. Inputs are drawn from an alphabet of the characters
each shortcut turns on: every kind of whitespace, full-width and near-full-width characters,
controls and escapes, block tags, file: in both cases, URLs plain and not.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
from urllib.parse import urljoin, urlsplit

import nh3
import pytest

from media_matrix.ingest.clean import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    DROPPED_WITH_CONTENT,
    IMAGE_SCHEMES,
    LINK_SCHEMES,
    confine_local,
    content_hash,
    html_to_text,
    local_file_inside,
    plain_http_url,
    plain_text,
    safe_url,
    sanitize_html,
    strip_controls,
    summarize,
)
from media_matrix.ingest.vet import url_allowed

_WHITESPACE = re.compile(r"\s+")
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_BLOCK_END = re.compile(r"<br\s*/?>|</(?:p|h[1-6]|li|div|tr|blockquote|section|figure|pre)>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\u3000\xa0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def ref_content_hash(title: str, text: str) -> str:
    normalized = _WHITESPACE.sub("", f"{title}\n{text}").translate(_FULLWIDTH)
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def ref_html_to_text(clean_html: str) -> str:
    text = _BLOCK_END.sub("\n", clean_html)
    text = html.unescape(_TAG.sub("", text))
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def ref_strip_controls(text: str) -> str:
    return _CONTROLS.sub("", _ESCAPES.sub("", text)) if text else text


def ref_summarize(text: str, limit: int = 120) -> str:
    flat = _WHITESPACE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    for mark in "。！？!?；;":
        index = cut.rfind(mark)
        if index >= limit // 2:
            return cut[: index + 1]
    return cut.rstrip() + "…"


def ref_safe_url(url: str | None, base: str | None = None) -> str | None:
    if not url:
        return None
    absolute = urljoin(base, url.strip()) if base else url.strip()
    scheme = urlsplit(absolute).scheme.lower()
    if scheme in {"http", "https"} or (scheme == "file" and (base or "").startswith("file:")):
        return absolute
    return None


def ref_url_allowed(url: str | None, local_root: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    return scheme == "file" and local_file_inside(url, local_root)


def ref_sanitize(fragment: str, base: str) -> str:
    local = base.lower().startswith("file:")
    absolute = bool(urlsplit(base).scheme) and ("://" in base or base.startswith("file:"))
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=LINK_SCHEMES | IMAGE_SCHEMES if local else LINK_SCHEMES,
        url_relative=("rewrite_with_base", base) if absolute else "deny",
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


TEXT_ALPHABET = [
    *" \t\n\r\f\v\u3000\xa0\x1c\x85\u2028\u200b",  # \s (and one that is not: zero-width space)
    *"aZ9，（）Ａｚ０\uff5e\uff5f\uff00。！",  # full-width range edges and beyond
    *"\x00\x07\x1b\x7f\x9f\u202e\u2066\u061c",
    "\x1b[31m",
    "\x1b]0;title\x07",
    "<br/>",
    "<BR >",
    "</p>",
    "<p>",
    "</Li>",
    "&amp;",
    "&nbsp;",
    "&#12288;",
    "<",
    ">",
    "  ",
]


def random_texts(seed: int, count: int = 4000) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(TEXT_ALPHABET, k=rng.randint(0, 30))) for _ in range(count)]


def test_content_hash_equals_the_translate_formula() -> None:
    assert content_hash("标题", "无全角字符的正文") == ref_content_hash("标题", "无全角字符的正文")
    folded = content_hash("ＡＩ　教育", "ＰＭ２．５，（测试）\uff5e")
    assert folded == ref_content_hash("ＡＩ　教育", "ＰＭ２．５，（测试）\uff5e")
    assert folded == content_hash("AI教育", "PM2.5,(测试)~")  # what folding is for
    assert content_hash("x", "\uff5f\uff00") != content_hash("x", "()")  # outside the range
    for text in random_texts(1):
        assert content_hash(text[:5], text) == ref_content_hash(text[:5], text), repr(text)


def test_strip_controls_equals_the_two_subs() -> None:
    assert strip_controls("平常的标题") == "平常的标题"
    assert strip_controls("\x1b[31m红\x1b[0m字\u202e") == "红字"
    assert strip_controls("") == ""
    for text in random_texts(2):
        assert strip_controls(text) == ref_strip_controls(text), repr(text)


def test_html_to_text_equals_the_regex_chain() -> None:
    assert html_to_text("<p>甲  乙</p>\n \n<p>\u3000丙</p>") == "甲 乙\n丙"
    for text in random_texts(3):
        assert html_to_text(text) == ref_html_to_text(text), repr(text)


def test_summary_and_plain_text_fold_whitespace_as_the_regex_did() -> None:
    for text in random_texts(4):
        assert summarize(text, 12) == ref_summarize(text, 12), repr(text)
        assert summarize(text) == ref_summarize(text), repr(text)
        if "<" not in text and "&" not in text:
            assert plain_text(text) == _WHITESPACE.sub(" ", text).strip(), repr(text)


@pytest.mark.parametrize(
    "page",
    [
        '<img src="FILE:///etc/passwd">',
        '<a href="File:///etc/passwd">x</a>',
        '<img src="file:///etc/passwd">',
    ],
)
def test_confine_local_fast_path_does_not_skip_any_case_of_file(page: str) -> None:
    kept, dropped = confine_local(page, None)
    assert dropped and "passwd" not in kept


def test_only_e_and_colon_lower_case_to_e_or_colon() -> None:
    """Why confine_local may look for "e:"/"E:" before lower-casing: over every code point,
    only e, E and : give an e or a colon when lower-cased."""
    givers = {c for c in map(chr, range(0x110000)) if "e" in c.lower() or ":" in c.lower()}
    assert givers == {"e", "E", ":"}


def test_confine_local_without_file_urls_is_unchanged() -> None:
    page = '<a href="https://a.example/x" rel="noopener noreferrer">链接 e: E:</a>'
    assert confine_local(page, None) == (page, [])


def random_urls(seed: int, count: int = 3000) -> list[str]:
    urls = [
        "https://www.kepuchina.cn/a/1",
        "http://h:8080/a/../b/./c",
        "HTTPS://H/x",
        "http://h/a?q=1#f",
        "http://h/a;p",
        "http:///x",
        "http://:80/x",
        " http://h/ ",
        "http://[::1]/x",
        "http://é.cn/x",
        "/relative/path",
        "file:///r/x.png",
        "javascript:alert(1)",
        "//h/x",
    ]
    rng = random.Random(seed)
    parts = ["http://", "https://", "h", "H", "1", ".", "..", "/", "//", ":", "8", "-", "%2e"]
    parts += ["?", "#", ";", "@", " ", "\t", "[", "é", "/../"]
    heads = ["http://h", "https://a.example", ""]  # most links are absolute
    return urls + [
        rng.choice(heads) + "".join(rng.choices(parts, k=rng.randint(1, 9))) for _ in range(count)
    ]


def test_safe_url_equals_urljoin() -> None:
    bases = [None, "", "http://x/a/", "https://h/a/b", "file:///r/p.xml", "HTTP://Q/", "ftp://f/"]
    for url in random_urls(5):
        for base in bases:
            try:
                want = ref_safe_url(url, base)
            except ValueError:
                with pytest.raises(ValueError):
                    safe_url(url, base)
                continue
            assert safe_url(url, base) == want, (url, base)


def test_plain_http_urls_pass_what_urlsplit_checks() -> None:
    """vet.py takes a plain URL without parsing it: urlsplit would find http(s) and a host."""
    plain = 0
    for url in random_urls(6):
        if plain_http_url(url):
            plain += 1
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and parts.hostname, url
            assert urlsplit(url).geturl() == url
        try:
            want = ref_url_allowed(url, "/r")
        except ValueError:
            continue
        assert url_allowed(url, "/r") == want, url
    assert plain > 100  # the generator does make plain URLs


def test_sanitize_html_with_a_cached_cleaner_equals_nh3_clean_per_call() -> None:
    page = (
        '<p onclick="x()">甲<a href="/d/1">详情</a><img src="pic.png"><img src="file:///r/a.png">'
        '<a href="javascript:alert(1)">x</a><script>s()</script><!-- c --></p>'
    )
    for base in ["https://a.example/feed", "http://b.example/x/", "file:///r/pack/", "", "rel/x"]:
        for _ in range(2):  # the second call comes from the cache
            assert sanitize_html(page, base) == ref_sanitize(page, base), base
    assert "https://a.example/d/1" in sanitize_html(page, "https://a.example/feed")
    assert "https://a.example" not in sanitize_html(page, "http://b.example/x/")
