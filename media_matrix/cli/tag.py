"""`tag`: dry-run tagging for rule tuning. JSON Lines in, JSON Lines out; the database is never
opened, only the config (for the rules).

    echo '{"title": "小麦春季田间管理", "summary": "...", "content": "<p>...</p>"}' \\
        | media-matrix tag

Each input line is an object with ``title`` and, optionally, ``summary``, ``content`` (plain text
or HTML), ``categories`` (source column labels) and ``hint_groups`` / ``hint_topics`` (as a
pack.yaml gives them). Each output line is ``{"groups": [...], "topics": [...], "reasons":
{id: reason}}`` (with ``--scores``, also ``"scores": {id: score}``), in input order. Blank lines
are skipped. A bad line stops the run with a message naming its line number, exit 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from media_matrix.cli.common import AppContext, UsageFailure, pass_app
from media_matrix.ingest.clean import html_to_text, plain_text, sanitize_html
from media_matrix.tagging import Tagger, tagger_for


def _strings(value: Any, key: str, line_no: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UsageFailure(f"stdin line {line_no}: {key!r} must be a string or a list of strings")


def tag_line(tagger: Tagger, line: str, line_no: int, *, scores: bool = False) -> dict[str, Any]:
    """One input line -> one output object; UsageFailure (exit 2) for a bad line."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageFailure(f"stdin line {line_no}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageFailure(f"stdin line {line_no}: expected a JSON object with a title")
    fields: dict[str, str] = {}
    for key in ("title", "summary", "content"):
        value = data.get(key)
        if value is None:
            if key == "title":
                raise UsageFailure(f"stdin line {line_no}: 'title' is missing")
            value = ""
        if not isinstance(value, str):
            raise UsageFailure(f"stdin line {line_no}: {key!r} must be a string")
        fields[key] = value
    result = tagger.tag(
        plain_text(fields["title"]),
        plain_text(fields["summary"]),
        html_to_text(sanitize_html(fields["content"])),  # exactly what ingest stores
        categories=_strings(data.get("categories"), "categories", line_no),
        hint_groups=_strings(data.get("hint_groups"), "hint_groups", line_no),
        hint_topics=_strings(data.get("hint_topics"), "hint_topics", line_no),
    )
    out = result.to_json()
    if scores:
        out["scores"] = {t.tag: t.score for t in result.tags}
    return out


@click.command("tag")
@click.option("--scores", is_flag=True, help="同时打印每个标签的分数")
@pass_app
def tag_command(app: AppContext, scores: bool) -> None:
    """试标注 (dry run): JSON Lines on stdin -> groups, topics and reasons on stdout."""
    settings = app.settings  # rules only: the database is not opened
    tagger = tagger_for(settings)
    stdin = sys.stdin.buffer
    out = sys.stdout.buffer
    for line_no, raw in enumerate(stdin, 1):
        try:
            line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise UsageFailure(f"stdin line {line_no}: not UTF-8: {exc}") from None
        if not line.strip():
            continue
        result = tag_line(tagger, line, line_no, scores=scores)
        out.write(json.dumps(result, ensure_ascii=False).encode("utf-8") + b"\n")
        out.flush()


def register(cli: click.Group) -> None:
    cli.add_command(tag_command)
