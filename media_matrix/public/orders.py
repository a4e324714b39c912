"""The 群众点单 pages of the public face: ``/request`` (the order form), ``/request/{token}``
(the answer page) and ``/o/{token}/request`` (an officer ordering for residents, attributed).

A stranger controls every byte here, so:
* the body is read only up to ``MAX_BODY`` and only as a URL-encoded form of a few fields;
* CSRF: double submit. The form page sets a random ``mm_form`` cookie (HttpOnly,
  SameSite=Strict) and puts ``time.HMAC(secret, cookie.time)`` in the form; a POST needs both,
  matching and fresh. A cross-site page can neither read the cookie nor make the browser send it;
* a hidden honeypot field a person never fills: a filled one is answered like a success and
  nothing is stored;
* two token buckets, per visitor (HMAC of address + agent under the day's salt) and per address
  key (HMAC of the address alone), spent on every POST; in memory, no address kept;
* the answer page is built from :func:`media_matrix.orders.public_view`: never the text,
  the contact, the township or who submitted it.

Editors never pass through here: a flood fills these buckets, not the console's.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from hashlib import sha256
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from media_matrix import orders
from media_matrix.config import Settings
from media_matrix.links import TokenBuckets, valid_token
from media_matrix.models import GROUPS
from media_matrix.public.pages import render
from media_matrix.store import Store

MAX_BODY = 8 * 1024
FORM_TTL = 2 * 3600
COOKIE = "mm_form"
HONEYPOT = "website"
FIELDS = ("county", "township", "text", "group", "contact", "form_token", HONEYPOT)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22}$")
FORM_CSP = (
    "Content-Security-Policy",
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'",
)

# (status line, body, extra headers)
Answer = tuple[str, bytes, list[tuple[str, str]]]


class OrderDesk:
    """Form, submission and answer pages over one store; the app routes to :meth:`handle`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        visitor_key: Callable[[str, str | None], str],
        address_key: Callable[[str], str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.visitor_key = visitor_key
        self.address_key = address_key
        conf = settings.public
        self.visitors = TokenBuckets(
            burst=conf.order_burst, rate=conf.order_burst / conf.order_window
        )
        self.addresses = TokenBuckets(
            burst=conf.order_address_burst, rate=conf.order_address_burst / conf.order_window
        )
        self.secret = store.console_secret("public-order-form").encode()
        self.secure = settings.public.base_url.startswith("https://")
        self.counties = orders.counties_of(settings)

    # -- routing ---------------------------------------------------------------------------------

    def handle(self, environ: dict[str, Any], method: str, path: str) -> Answer | None:
        """The answer to a /request... or /o/{token}/request path; None: the uniform 404."""
        officer = None
        if path.startswith("/o/"):
            token = path[3:].removesuffix("/request")
            officer = self.store.officer_by_token(token) if valid_token(token) else None
            if officer is None:
                return None
        elif path.startswith("/request/"):
            if method != "GET" and method != "HEAD":
                return _not_allowed()
            return self._answer(path.removeprefix("/request/"))
        elif path != "/request":
            return None
        if method in ("GET", "HEAD"):
            return self._form(environ, officer, {}, [])
        if method == "POST":
            return self._submit(environ, officer)
        return _not_allowed()

    # -- pages -----------------------------------------------------------------------------------

    def _form(
        self,
        environ: dict[str, Any],
        officer: dict[str, Any] | None,
        values: dict[str, str],
        problems: list[str],
        status: str = "200 OK",
    ) -> Answer:
        nonce = _cookie(environ) or secrets.token_urlsafe(16)
        if officer and not values:
            values = {"county": officer["county"], "township": officer["township"]}
        body = render(
            "request_form.html.j2",
            counties=self.counties,
            groups=GROUPS,
            values=values,
            problems=problems,
            officer=officer,
            form_token=self._sign(nonce, int(time.time())),
            honeypot=HONEYPOT,
            max_text=orders.MAX_TEXT,
        )
        cookie = f"{COOKIE}={nonce}; Path=/; Max-Age={FORM_TTL}; HttpOnly; SameSite=Strict"
        if self.secure:
            cookie += "; Secure"
        return status, body.encode(), [FORM_CSP, ("Set-Cookie", cookie)]

    def _answer(self, token: str) -> Answer | None:
        if not valid_token(token):
            return None
        view = orders.public_view(self.settings, self.store, token)
        if view is None:
            return None
        body = render("request_answer.html.j2", view=view, statuses=orders.STATUS_LABELS)
        return "200 OK", body.encode(), [FORM_CSP]

    def _submit(self, environ: dict[str, Any], officer: dict[str, Any] | None) -> Answer:
        address = environ.get("REMOTE_ADDR") or ""
        agent = environ.get("HTTP_USER_AGENT")
        if not self._spend(address, agent, officer=officer is not None):
            body = render_message("提交过于频繁", _BUSY)
            return "429 Too Many Requests", body.encode(), [FORM_CSP, ("Retry-After", "600")]
        form = _read_form(environ)
        if isinstance(form, str):
            return form, render_message("无法提交", _BAD).encode(), [FORM_CSP]
        if not self._valid_token(form.get("form_token", ""), _cookie(environ)):
            body = render_message("表单已过期", _EXPIRED)
            return "400 Bad Request", body.encode(), [FORM_CSP]
        if form.get(HONEYPOT):  # a person never sees this field: thank the bot, keep nothing
            return "200 OK", render_message("已收到", _THANKS).encode(), [FORM_CSP]
        try:
            order = orders.submit(
                self.settings,
                self.store,
                form,
                source="officer" if officer else "web",
                officer_id=officer["id"] if officer else None,
                by=f"officer:{officer['id']}" if officer else "public",
            )
        except orders.OrderError as exc:
            values = {k: form.get(k, "")[: orders.MAX_TEXT] for k in FIELDS[:5]}
            return self._form(environ, officer, values, exc.problems, "400 Bad Request")
        return "303 See Other", b"", [("Location", f"/request/{order['token']}")]

    def _spend(self, address: str, agent: str | None, *, officer: bool) -> bool:
        """One token of the visitor's bucket, then of the address's (a visitor already
        refused spends nothing of its address's bucket). An officer ordering for the people
        of a meeting is held by the address bucket only."""
        if not officer and not self.visitors.take(self.visitor_key(address, agent)):
            return False
        return self.addresses.take(self.address_key(address))

    # -- form token ------------------------------------------------------------------------------

    def _sign(self, nonce: str, issued: int) -> str:
        mac = hmac.new(self.secret, f"{nonce}.{issued}".encode(), sha256).hexdigest()[:32]
        return f"{issued}.{mac}"

    def _valid_token(self, token: str, nonce: str | None) -> bool:
        issued, _, _mac = token.partition(".")
        if not nonce or not issued.isdigit() or len(issued) > 12:
            return False
        age = time.time() - int(issued)
        if not -60 <= age <= FORM_TTL:
            return False
        return hmac.compare_digest(self._sign(nonce, int(issued)), token)


_BUSY = "您提交得太频繁了，请过一段时间再试。"
_BAD = "提交的内容无法识别或过长，请返回重新填写。"
_EXPIRED = "表单已过期或浏览器未保存安全凭据 (Cookie)，请刷新页面后重新提交。"
_THANKS = "感谢您的点单，我们会尽快安排。"


def render_message(title: str, message: str) -> str:
    return render("request_message.html.j2", title=title, message=message)


def _not_allowed() -> Answer:
    return "405 Method Not Allowed", b"", [("Allow", "GET, HEAD, POST")]


def _cookie(environ: dict[str, Any]) -> str | None:
    raw = environ.get("HTTP_COOKIE") or ""
    if len(raw) > 4096:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    value = morsel.value if morsel else None
    return value if value and _NONCE.match(value) else None


def _read_form(environ: dict[str, Any]) -> dict[str, str] | str:
    """The posted form's known fields (the first value of each); a status line when the body
    is too large, not a form, or not UTF-8."""
    kind = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return "415 Unsupported Media Type"
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "400 Bad Request"
    if length < 0 or length > MAX_BODY:
        return "413 Payload Too Large"
    data = environ["wsgi.input"].read(length) if length else b""
    try:
        text = data.decode("utf-8")
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=len(FIELDS) + 4)
    except (UnicodeDecodeError, ValueError):
        return "400 Bad Request"
    return {k: v[0] for k, v in parsed.items() if k in FIELDS and v}
