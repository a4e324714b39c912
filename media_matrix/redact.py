"""Redaction: a secret never reaches a stored error, a log line or the screen.

Errors carry URLs (requests puts the whole request URL in a connection error), and a WeCom
robot's key, a WeChat access_token or a CMS token travels in the query string. ``redact`` strips
every URL query string and userinfo from free text, masks ``key=…``-style pairs, and replaces
the secret values the loaded config named (``remember``), also percent-encoded. It is applied
where errors are written (the store), where they are printed (CLI, JSON) and in the daemon log.

A leaf module: no imports from the project, so every layer may use it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

MASK = "[已隐藏]"
MIN_SECRET = 6  # shorter values are too likely to be ordinary words or numbers
SENSITIVE_NAMES = (
    "key",
    "access_token",
    "token",
    "secret",
    "appsecret",
    "password",
    "passwd",
    "signature",
    "sign",
    "ticket",
)

# a query string: "?" then name=value pairs, up to whitespace, a quote or a closing bracket
_QUERY = re.compile(r"\?[A-Za-z0-9_.~%\[\]-]+=[^\s#'\"<>(){}\[\]]*")
# user:password@ in a URL
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"<>]+@")
_PAIR = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(" + "|".join(SENSITIVE_NAMES) + r")(\s*[=:]\s*|\"\s*:\s*\")"
    r"([^\s&,;'\"<>(){}]+)"
)

_known: set[str] = set()
_lock = threading.Lock()


def remember(values: Iterable[str | None]) -> None:
    """Values from config to mask wherever they appear (secrets, keys in channel URLs)."""
    with _lock:
        for value in values:
            text = (value or "").strip()
            if len(text) >= MIN_SECRET:
                _known.update({text, quote(text, safe=""), quote_plus(text)})


def url_secrets(url: str | None, *, every_value: bool = True) -> list[str]:
    """Secrets a URL carries: its password and its query values (all of them, or only those of
    sensitive names such as ``key`` and ``access_token``)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=False)
        password = parts.password
    except ValueError:
        return []
    out = [password] if password else []
    out += [v for k, v in pairs if every_value or k.lower() in SENSITIVE_NAMES]
    return out


def redact(text: Any) -> Any:
    """Free text with query strings, userinfo, ``key=value`` secrets and remembered values
    masked; None and non-strings pass through unchanged."""
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _QUERY.sub("?" + MASK, text)
    text = _PAIR.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return redact_known(text)


def redact_url(url: str | None) -> str | None:
    """A configured URL as shown to people: its query string and userinfo masked (a feed or
    channel URL may carry a token there); the rest, where it points, kept."""
    return redact(url) if url else url


def redact_known(value: Any) -> Any:
    """Only the remembered secret values, through dicts and lists: safe on whole outputs
    (pack URLs keep their own query strings)."""
    if isinstance(value, str):
        with _lock:
            known = sorted(_known, key=len, reverse=True)
        for secret in known:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: redact_known(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_known(v) for v in value]
    return value


# keys whose values are error text: fully redacted in any JSON output or log line
ERROR_KEYS = frozenset({"error", "last_error", "errors", "excerpt", "message", "note", "reason"})


def redact_record(value: Any, key: str | None = None) -> Any:
    """A JSON-able structure for output: error fields fully redacted, everything else cleared
    of remembered secrets."""
    if isinstance(value, dict):
        return {k: redact_record(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_record(v, key) for v in value]
    if isinstance(value, str):
        return redact(value) if key in ERROR_KEYS else redact_known(value)
    return value


class RedactingFilter(logging.Filter):
    """Masks a log record's message (and its exception text) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg += f" ({type(exc).__name__}: {redact(str(exc))})"
            record.exc_info = None
            record.exc_text = None
        return True
