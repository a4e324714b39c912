"""QR codes of tracked links (segno): SVG for pages and posters, PNG files for screens.

Error correction M (15%): a printed poster with a scuff or a screen with glare still scans.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import segno


@dataclass(frozen=True)
class QRCode:
    """One URL's QR code in the forms templates use."""

    url: str
    svg: str  # inline <svg> markup (no XML declaration)
    png: bytes  # PNG file bytes
    png_data_uri: str


@lru_cache(maxsize=256)
def qr_code(url: str, scale: int = 8) -> QRCode:
    code = segno.make(url, error="m", micro=False)
    svg = io.BytesIO()
    code.save(svg, kind="svg", scale=scale, xmldecl=False, svgns=True, border=4)
    png = io.BytesIO()
    code.save(png, kind="png", scale=scale, border=4)
    return QRCode(
        url=url,
        svg=svg.getvalue().decode("utf-8"),
        png=png.getvalue(),
        png_data_uri=code.png_data_uri(scale=scale, border=4),
    )
