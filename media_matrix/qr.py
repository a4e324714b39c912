"""QR codes of tracked links (segno): SVG for pages and posters, PNG files for screens.

Error correction M (15%): a printed poster with a scuff or a screen with glare still scans.
Each form is made on first use: a QR code costs milliseconds, and most channels' templates
never show one.
"""

from __future__ import annotations

import io
from functools import cached_property

import segno


class QRCode:
    """One URL's QR code in the forms templates use, each made when first asked for."""

    def __init__(self, url: str, scale: int = 8) -> None:
        self.url = url
        self.scale = scale

    @cached_property
    def _code(self) -> segno.QRCode:
        return segno.make(self.url, error="m", micro=False)

    @cached_property
    def svg(self) -> str:
        """Inline ``<svg>`` markup (no XML declaration)."""
        out = io.BytesIO()
        self._code.save(out, kind="svg", scale=self.scale, xmldecl=False, svgns=True, border=4)
        return out.getvalue().decode("utf-8")

    @cached_property
    def png(self) -> bytes:
        out = io.BytesIO()
        self._code.save(out, kind="png", scale=self.scale, border=4)
        return out.getvalue()

    @cached_property
    def png_data_uri(self) -> str:
        return self._code.png_data_uri(scale=self.scale, border=4)


def qr_code(url: str, scale: int = 8) -> QRCode:
    return QRCode(url, scale)
