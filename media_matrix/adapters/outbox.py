"""Atomic folder drop for screen players and CMS folders synced over FTP/SFTP.

Each delivery becomes ``<path>/<delivery uid>/``::

    article.html     the page, its <img> pointing at media/ (images copied; unreadable ones dropped)
    ticker.txt       one line, at most ``ticker_max`` characters
    playlist.json    start, end, duration, weekdays, daily window, the QR image and its position
    qr.png           the QR code of the delivery's tracked link (a scan is a click)
    manifest.json    ids, title, channel, files with sizes and sha256, media sources, play entry
    media/...        the copied images
    DONE             written last: a syncer that copies files one by one knows the set is complete

Written into ``.tmp-<uid>-<random>`` in the same folder, every file fsynced, the folder fsynced,
then renamed into place (atomic on one filesystem) and the parent fsynced. A folder that already
exists with its DONE marker means the delivery was written before: nothing is rewritten, so
writing the same delivery twice leaves one folder (``idempotent = True``). A writer holds an
``flock`` on ``.tmp-...lock`` beside its temp folder while it works; leftover temp folders and
lock files whose lock nobody holds (a writer killed mid-write) are removed before every write,
live ones are left alone. When two writers race, the first rename wins and the other returns
the same result.

Errors: permission problems (EACCES, EPERM, EROFS) are :class:`AuthError` (the channel cannot
work until someone fixes the folder); other OS errors (disk full...) are retryable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup

from media_matrix.adapters.base import (
    AuthError,
    BaseAdapter,
    Checkpoint,
    Message,
    RetryableError,
    SendResult,
    load_image,
)

DONE = "DONE"
MANIFEST = "manifest.json"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,80}$")


def folder_name(uid: str) -> str:
    return uid if _SAFE.match(uid) else hashlib.sha256(uid.encode()).hexdigest()[:32]


def write_synced(path: Path, data: bytes) -> None:
    """Write ``path`` and flush it to disk (before the rename that publishes it)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _lock(path: Path) -> Any:
    """Hold an ``flock`` on ``path`` (created if needed), retrying while a cleaner unlinks the
    file between our open and our flock (we must hold the lock of the name on disk)."""
    while True:
        handle = open(path, "a+b")  # noqa: SIM115 - closed by _unlock
        fcntl.flock(handle, fcntl.LOCK_EX)
        if _same_file(handle, path):
            return handle
        handle.close()


def _try_lock(path: Path) -> Any | None:
    """The lock of ``path`` if nobody holds it (its writer is dead), else None."""
    try:
        handle = open(path, "a+b")  # noqa: SIM115 - closed by the caller
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()  # a live writer holds it
        return None
    if not _same_file(handle, path):
        handle.close()
        return None
    return handle


def _same_file(handle: Any, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except OSError:
        return False


def _unlock(handle: Any) -> None:
    try:
        Path(handle.name).unlink(missing_ok=True)
    finally:
        handle.close()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ticker_text(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class OutboxAdapter(BaseAdapter):
    type = "outbox"
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
        name = folder_name(item.delivery_uid)
        final = self.root / name
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_dead_temps()
            if (final / DONE).is_file():
                return self._result(final, written=False)
            tmp = self.root / f".tmp-{name}-{secrets.token_hex(4)}"
            lock = _lock(tmp.with_name(tmp.name + ".lock"))
            try:
                tmp.mkdir()
                self._fill(tmp, message)
                fsync_dir(tmp)
                if final.exists() and not (final / DONE).is_file():
                    shutil.rmtree(final)  # not ours to trust: a folder without its DONE marker
                try:
                    os.rename(tmp, final)
                except OSError:
                    if (final / DONE).is_file():  # a concurrent writer of the same delivery won
                        return self._result(final, written=False)
                    raise
                fsync_dir(self.root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                _unlock(lock)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise AuthError(f"outbox {self.root}: {exc}") from None
            raise RetryableError(f"outbox {self.root}: {exc}") from None
        return self._result(final, written=True)

    def _remove_dead_temps(self) -> None:
        """Remove what writers killed mid-write left: temp folders and ``.lock`` files (a
        SIGKILL between the lock and its unlink leaves a bare lock file). A leftover is dead
        when nobody holds its lock; a live writer's are left alone."""
        for entry in self.root.glob(".tmp-*"):
            if entry.name.endswith(".lock"):
                folder, lock_path = entry.with_name(entry.name.removesuffix(".lock")), entry
            elif entry.is_dir():
                folder, lock_path = entry, entry.with_name(entry.name + ".lock")
            else:
                continue
            handle = _try_lock(lock_path)
            if handle is None:
                continue
            try:
                shutil.rmtree(folder, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
            finally:
                handle.close()

    def _result(self, folder: Path, *, written: bool) -> SendResult:
        uri = folder.as_uri()
        return SendResult(
            "delivered",
            remote_id=folder.name,
            url=uri,
            excerpt=f"{'wrote' if written else 'already present'}: {folder}",
            item_urls=[uri],
            state={"folder": str(folder), "written": written},
        )

    def _copy_media(
        self, tmp: Path, html: str, extra: list[str], local_root: str | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        media: list[dict[str, Any]] = []
        by_source: dict[str, str] = {}
        timeout = 15.0

        def copy(src: str) -> str | None:
            if src in by_source:
                return by_source[src]
            image = load_image(
                src, self.session, timeout=timeout, network=self.network, local_root=local_root
            )
            if image is None:
                return None
            (tmp / "media").mkdir(exist_ok=True)
            rel = f"media/{len(media) + 1:02d}-{image.filename}"
            write_synced(tmp / rel, image.data)
            media.append(
                {"file": rel, "source": src, "bytes": len(image.data), "sha256": image.sha256}
            )
            by_source[src] = rel
            return rel

        if "<img" in html.lower():
            soup = BeautifulSoup(html, "html.parser")
            for img in soup.find_all("img"):
                rel = copy(str(img.get("src") or "").strip())
                if rel:
                    img["src"] = rel
                    for attr in ("srcset", "data-src"):
                        if attr in img.attrs:
                            del img[attr]
                else:
                    img.decompose()
            html = soup.decode(formatter="minimal")
        for src in extra:
            copy(src)
        return html, media

    def _fill(self, tmp: Path, message: Message) -> None:
        item = message.items[0]
        pack = item.pack
        html, media = self._copy_media(
            tmp, str(message.parts.get("article.html", "")), list(pack.images), pack.local_root
        )
        ticker = ticker_text(str(message.parts.get("ticker.txt", "")), self.channel.ticker_max)
        playlist = json.loads(message.parts["playlist.json"])
        files = {
            "article.html": html.encode("utf-8"),
            "ticker.txt": (ticker + "\n").encode("utf-8"),
            "playlist.json": json.dumps(playlist, ensure_ascii=False, indent=2).encode("utf-8"),
        }
        qr = message.parts.get("qr.png")
        if isinstance(qr, bytes):
            files["qr.png"] = qr
        for fname, data in files.items():
            write_synced(tmp / fname, data)
        scheduled = item.scheduled_at
        manifest = {
            "delivery_id": item.delivery_id,
            "delivery_uid": item.delivery_uid,
            "pack_id": pack.id,
            "title": pack.title,
            "channel": self.channel.name,
            "county": self.channel.county,
            "source": pack.source,
            "original_url": pack.url,
            "scheduled_at": scheduled.isoformat() if isinstance(scheduled, datetime) else scheduled,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ticker": ticker,
            "play": message.fields.get("play", playlist),
            "files": [
                {"file": f, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                for f, d in files.items()
            ],
            "media": media,
            "done_marker": DONE,
        }
        write_synced(
            tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
        )
        if media:
            fsync_dir(tmp / "media")
        write_synced(tmp / DONE, f"{item.delivery_uid}\n".encode())
