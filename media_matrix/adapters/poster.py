"""Print-ready PDF posters for community bulletin boards (科普宣传栏 / 科普长廊).

Each delivery becomes ``<path>/<delivery uid>.pdf`` (A4 portrait by default, ``paper: A3`` for
the large boards), printed by WeasyPrint from ``channels/poster/poster.html.j2``: title,
summary, key points, the pack's image, source line and the QR code of the tracked link.

Why WeasyPrint: the poster stays an HTML template deployers can edit like every other channel,
and WeasyPrint lays out CJK text with Pango and embeds the (subset) font it used, found through
fontconfig: the WenQuanYi Micro Hei the system already has. Its system libraries (Pango) are
Debian packages installed by ``.ci/run``.

Untrusted input: the only outside resource is the pack's first image, read by the adapter with
the same rules as the outbox (size cap, image sniffing, http(s) or file only) and inlined as a
data: URI; the printer itself may fetch nothing but data: URIs.

Written like the outbox: a temp file in the same folder, fsynced, renamed into place, the
folder fsynced. An existing PDF means the delivery was printed before (``idempotent``).
"""

from __future__ import annotations

import base64
import errno
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup

from media_matrix.adapters.base import (
    AuthError,
    BaseAdapter,
    Checkpoint,
    Message,
    RejectedError,
    RetryableError,
    SendResult,
    load_image,
)
from media_matrix.adapters.outbox import folder_name, fsync_dir, write_synced

_PRINT_LOCK = threading.Lock()  # Pango and fontconfig are not safe to drive from two threads


def print_pdf(html: str) -> bytes:
    """The PDF of a poster page; only data: URIs may be loaded while printing."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    with _PRINT_LOCK:
        fetcher = URLFetcher(allowed_protocols=("data",), timeout=5)
        return HTML(string=html, url_fetcher=fetcher, base_url=None).write_pdf()


class PosterAdapter(BaseAdapter):
    type = "poster"
    idempotent = True
    max_items = 1

    @property
    def root(self) -> Path:
        return Path(self.channel.path)

    def send(
        self,
        message: Message,
        checkpoint: Checkpoint,
        state: Mapping[str, Any] | None = None,
    ) -> SendResult:
        self.check_items(message)
        item = message.items[0]
        final = self.root / f"{folder_name(item.delivery_uid)}.pdf"
        if final.is_file():
            return self._result(final, written=False)
        html = self._inline_image(str(message.parts.get("poster.html", "")), item.pack.local_root)
        try:
            pdf = print_pdf(html)
        except Exception as exc:  # noqa: BLE001 - a page the printer cannot lay out
            raise RejectedError(
                f"poster: cannot print the page: {type(exc).__name__}: {exc}"
            ) from None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".tmp-{final.stem}-{secrets.token_hex(4)}.pdf"
            try:
                write_synced(tmp, pdf)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(self.root)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise AuthError(f"poster {self.root}: {exc}") from None
            raise RetryableError(f"poster {self.root}: {exc}") from None
        return self._result(final, written=True, size=len(pdf))

    def _inline_image(self, html: str, local_root: str | None = None) -> str:
        """Each <img> becomes a data: URI of the image read by the adapter, or is dropped."""
        if "<img" not in html.lower():
            return html
        soup = BeautifulSoup(html, "html.parser")
        for img in soup.find_all("img"):
            image = load_image(
                str(img.get("src") or "").strip(),
                self.session,
                timeout=15.0,
                network=self.network,
                local_root=local_root,
            )
            if image is None:
                img.decompose()
                continue
            data = base64.b64encode(image.data).decode("ascii")
            img["src"] = f"data:{image.content_type};base64,{data}"
            for attr in ("srcset", "data-src"):
                if attr in img.attrs:
                    del img[attr]
        return soup.decode(formatter="minimal")

    def _result(self, path: Path, *, written: bool, size: int | None = None) -> SendResult:
        uri = path.as_uri()
        note = f"wrote {size} bytes" if written else "already present"
        return SendResult(
            "delivered",
            remote_id=path.name,
            url=uri,
            excerpt=f"{note}: {path}",
            item_urls=[uri],
            state={"file": str(path), "written": written},
        )
