"""Pages of the public face, also written to files by `officers kit` (the same sheet, offline)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from media_matrix.qr import qr_code
from media_matrix.tracking import OfficerEntry

_TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def officer_page(
    officer: dict[str, Any],
    entries: Sequence[OfficerEntry],
    *,
    period: str = "本周",
    order_url: str | None = None,
) -> str:
    """An officer's packs with copy-ready text, personal links and their QR codes (and, served
    live, the link to order topics for residents; a kit file has none)."""
    return render(
        "officer.html.j2",
        officer=officer,
        entries=[(e, qr_code(e.link, 4)) for e in entries],
        period=period,
        order_url=order_url,
    )


def render(template: str, **context: Any) -> str:
    """One page of the public face from its template (autoescaped)."""
    return _env().get_template(template).render(**context)
