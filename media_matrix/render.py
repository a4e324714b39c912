"""Jinja2 over ``channels/<type>/``: packs -> the rendered parts of one :class:`Message`.

Templates are the deployers' to edit. Every output name is the template name without ``.j2``.
Per channel type (see ``TEMPLATES``):

* ``wechat_mp``   per item: ``article.html``                      (content of each article)
* ``wecom_robot`` message:  ``news.json`` and ``markdown.md``     (the adapter picks by format)
* ``webhook``     message:  ``manuscript.json``                   (the JSON body, before field_map)
* ``outbox``      message:  ``ticker.txt``, ``playlist.json``, ``article.html`` (+ ``qr.png``)
* ``poster``      message:  ``poster.html``                       (printed to PDF by the adapter)

Every context has ``track_url`` (the delivery's tracked link, else the pack's URL; per item also
as ``it.link``) and ``qr`` (its QR code: ``qr.svg``, ``qr.png``, ``qr.png_data_uri``; None when
there is no link).

Escaping: autoescape is on for HTML, XML and JSON templates (JSON values go through ``tojson``,
which is HTML-safe JSON) and off for the plain-text formats (``.txt``, ``.md``) where HTML
entities would show up literally on a screen; markdown templates use the ``md_escape`` filter.
Undefined names raise (StrictUndefined). Any template problem raises :class:`TemplateError`
naming the template file and line.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from media_matrix.config import parse_quiet_hours
from media_matrix.messages import Message, OutgoingItem
from media_matrix.models import GROUPS, TOPICS
from media_matrix.qr import qr_code
from media_matrix.timeutil import as_aware

DEFAULT_COVER = Path(__file__).parent / "assets" / "cover.png"

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "wechat_mp": {"item": ("article.html.j2",), "message": ()},
    "wecom_robot": {"item": (), "message": ("news.json.j2", "markdown.md.j2")},
    "webhook": {"item": (), "message": ("manuscript.json.j2",)},
    "outbox": {"item": (), "message": ("ticker.txt.j2", "playlist.json.j2", "article.html.j2")},
    "poster": {"item": (), "message": ("poster.html.j2",)},
}
QR_FILE = "qr.png"  # the screen playlist's QR image, written beside playlist.json

_PLAIN_SUFFIXES = (".txt.j2", ".md.j2", ".txt", ".md")


class TemplateError(Exception):
    """A channel template is missing, invalid or failed to render; names the file and line."""

    def __init__(self, template: str, lineno: int | None, message: str) -> None:
        where = f"{template}, line {lineno}" if lineno else template
        super().__init__(f"template {where}: {message}")
        self.template = template
        self.lineno = lineno


def default_templates_dir() -> Path:
    """The ``channels/`` folder shipped next to the package in a source checkout."""
    return Path(__file__).resolve().parent.parent / "channels"


def _autoescape(name: str | None) -> bool:
    return not (name or "").endswith(_PLAIN_SUFFIXES)


# -- filters ------------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr"}
        | {"section", "article", "blockquote", "pre", "figure"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def strip_html(value: Any) -> str:
    """Plain text of an HTML fragment, whitespace collapsed (paragraphs become single spaces)."""
    parser = _TextExtractor()
    parser.feed(str(value or ""))
    parser.close()
    return re.sub(r"\s+", " ", "".join(parser.out)).strip()


def shorten(value: Any, limit: int, end: str = "…") -> str:
    """At most ``limit`` characters, ending with ``end`` when cut."""
    text = str(value or "")
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(end))].rstrip() + end


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def md_escape(value: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(value or ""))


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|\n+")


def key_points(pack: Any, limit: int, width: int = 70) -> list[str]:
    """Up to ``limit`` sentences of the pack's text for a poster, the summary's skipped."""
    text = pack.text or strip_html(pack.content_html)
    summary = strip_html(pack.summary)
    points: list[str] = []
    for sentence in _SENTENCE_END.split(text or ""):
        sentence = " ".join(sentence.split())
        if len(sentence) < 6 or sentence in summary or sentence == pack.title:
            continue
        points.append(shorten(sentence, width))
        if len(points) >= limit:
            break
    return points


def _to_datetime(value: Any) -> datetime | None:
    return as_aware(value if isinstance(value, datetime) or value is None else str(value))


# -- environment --------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _environment(templates_dir: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        strip_html=strip_html,
        shorten=shorten,
        md_escape=md_escape,
        group_label=lambda g: GROUPS.get(g, g),
        topic_label=lambda t: TOPICS.get(t, t),
    )
    env.tests["web_url"] = lambda v: str(v or "").startswith(("http://", "https://"))
    env.globals.update(GROUPS=GROUPS, TOPICS=TOPICS)
    return env


def environment(templates_dir: Path | str) -> jinja2.Environment:
    return _environment(str(Path(templates_dir).resolve()))


def _error_line(exc: BaseException, filename: str | None) -> int | None:
    if filename is None:
        return None
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def render_template(
    templates_dir: Path | str, name: str, context: dict[str, Any], *, validate_json: bool = True
) -> str:
    """Render ``channels/<name>``; every failure becomes a TemplateError with file and line."""
    env = environment(templates_dir)
    shown = f"channels/{name}"
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(shown, None, f"not found in {templates_dir}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"channels/{exc.name or name}", exc.lineno, exc.message or "") from None
    try:
        text = template.render(context)
    except jinja2.TemplateSyntaxError as exc:  # from an include
        raise TemplateError(f"channels/{exc.name or name}", exc.lineno, exc.message or "") from None
    except Exception as exc:  # noqa: BLE001 - anything a template can raise while rendering
        line = _error_line(exc, template.filename)
        raise TemplateError(shown, line, f"{type(exc).__name__}: {exc}") from None
    if validate_json and name.endswith(".json.j2"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(
                shown, None, f"output is not valid JSON ({exc.msg} at output line {exc.lineno})"
            ) from None
    return text


# -- per channel context ------------------------------------------------------------------------


def _play(channel: Any, start: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """The screen playlist entry: when, how long, which weekdays, which daily window."""
    window = None
    if getattr(channel, "window", None):
        begin, end = parse_quiet_hours(channel.window)
        window = {"from": begin.strftime("%H:%M"), "to": end.strftime("%H:%M")}
    local_start = start.astimezone(tz)
    return {
        "start": local_start.isoformat(timespec="seconds"),
        "end": (local_start + timedelta(days=channel.play_days)).isoformat(timespec="seconds"),
        "duration": channel.play_seconds,
        "weekdays": list(channel.weekdays),
        "window": window,
        "passers_per_play": channel.passers_per_play,
    }


def _link_context(item: OutgoingItem) -> dict[str, Any]:
    """``track_url`` (the tracked link, else the pack's URL) and its ``qr`` (svg, png,
    png_data_uri; None when there is no link at all)."""
    link = item.link
    return {"track_url": link, "qr": qr_code(link) if link else None}


def _wechat_article_fields(channel: Any, item: OutgoingItem) -> dict[str, Any]:
    pack = item.pack
    digest = strip_html(pack.summary) or strip_html(pack.text or pack.content_html)
    if pack.images:
        cover = pack.images[0]
    elif channel.cover:
        cover = channel.cover
    else:
        cover = DEFAULT_COVER.as_uri()
    return {
        "title": pack.title,
        "author": channel.author or pack.author,
        "digest": digest,
        "content_source_url": item.link,
        "cover": cover,
        "fallback_cover": channel.cover or DEFAULT_COVER.as_uri(),
    }


def render_message(
    channel: Any,
    items: Sequence[OutgoingItem],
    templates_dir: Path | str,
    *,
    timezone: str = "Asia/Shanghai",
    now: datetime | None = None,
) -> Message:
    """Render every template of the channel's type for these items into one Message."""
    kind = channel.type
    if kind not in TEMPLATES:
        raise ValueError(f"no templates for channel type {kind!r}")
    items = list(items)
    if not items:
        raise ValueError("render_message needs at least one item")
    tz = ZoneInfo(timezone)
    now = (now or datetime.now(UTC)).astimezone(tz)
    base = {"channel": channel, "now": now, "tz": timezone, "count": len(items)}
    message = Message(channel=channel.name, type=kind, items=items)

    for index, item in enumerate(items):
        context = {
            **base,
            "item": item,
            "pack": item.pack,
            "urgent": bool(item.pack.urgent),  # a warning: templates say 【预警】, not 【科普】
            "index": index,
            "scheduled_at": _to_datetime(item.scheduled_at) or now,
            **_link_context(item),
        }
        message.item_parts.append(
            {
                name.removesuffix(".j2"): render_template(templates_dir, f"{kind}/{name}", context)
                for name in TEMPLATES[kind]["item"]
            }
        )

    first = items[0]
    start = _to_datetime(first.scheduled_at) or now
    context = {
        **base,
        "items": items,
        "packs": [i.pack for i in items],
        "item": first,
        "pack": first.pack,
        "urgent": any(i.pack.urgent for i in items),
        "index": 0,
        "scheduled_at": start.astimezone(tz),
        **_link_context(first),
    }
    if kind == "outbox":
        context["play"] = _play(channel, start, tz)
        message.fields["play"] = context["play"]
        if context["qr"] is not None:
            context["qr_entry"] = {"file": QR_FILE, "position": channel.qr_position}
            message.parts[QR_FILE] = context["qr"].png
        else:
            context["qr_entry"] = None
    if kind == "poster":
        context["key_points"] = key_points(first.pack, channel.key_points)
    for name in TEMPLATES[kind]["message"]:
        message.parts[name.removesuffix(".j2")] = render_template(
            templates_dir, f"{kind}/{name}", context
        )
    if kind == "wechat_mp":
        message.fields["articles"] = [_wechat_article_fields(channel, i) for i in items]
    return message
