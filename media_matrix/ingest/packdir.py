"""Local resource packs (科普资源包): a folder or .zip holding pack.yaml, a body and media.

Packs are read in place and never moved or deleted. A .zip's files are extracted (safely) to
a media folder beside the database so its images have a stable local address. A bad pack is
reported by name and left exactly where it is.
"""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePosixPath
from typing import Any

import markdown
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from media_matrix.ingest.clean import (
    content_hash,
    html_to_text,
    image_urls,
    plain_text,
    sanitize_html,
    summarize,
)
from media_matrix.ingest.source import SourceError, SourceResult
from media_matrix.models import Item, check_group_ids
from media_matrix.timeutil import to_iso

MANIFEST = "pack.yaml"
BODY_CANDIDATES = ("body.html", "body.md", "index.html", "README.md")
MAX_ZIP_BYTES = 200 * 1024 * 1024


class PackManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    summary: str = ""
    source: str = ""
    published: datetime | None = None
    author: str = ""
    county: str = "市级"
    guid: str | None = None
    url: str | None = None
    groups: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    body: str | None = None
    media: list[str] = Field(default_factory=list)

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, value: list[str]) -> list[str]:
        return check_group_ids(value)  # type: ignore[return-value]


class BadPack(Exception):
    pass


def read_packdir(
    folder: Path, media_root: Path, default_county: str = "市级", tz: tzinfo = UTC
) -> SourceResult:
    """Every pack in ``folder``; ``tz`` is how a ``published`` time without offset is read
    (editors write local time)."""
    if not folder.is_dir():
        raise SourceError(f"pack folder {folder} does not exist")
    result = SourceResult()
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() or entry.suffix.lower() == ".zip"):
            continue
        try:
            pack_dir = _unpacked(entry, media_root) if entry.is_file() else entry
            result.items.append(read_pack(pack_dir, entry.name, default_county, tz))
        except BadPack as exc:
            result.item_errors.append((entry.name, str(exc)))
        except (OSError, zipfile.LargeZipFile) as exc:  # unreadable file, full disk, ...
            result.item_errors.append((entry.name, f"cannot read the pack: {exc}"))
    return result


def read_pack(pack_dir: Path, name: str, default_county: str = "市级", tz: tzinfo = UTC) -> Item:
    manifest = _manifest(pack_dir)
    base = pack_dir.resolve().as_uri() + "/"
    body_path = _body_path(pack_dir, manifest)
    raw = _read_text(body_path)
    if body_path.suffix.lower() == ".md":
        raw = markdown.markdown(raw, extensions=["extra", "sane_lists"])
    clean = sanitize_html(raw, base)
    text = html_to_text(clean)
    title = plain_text(manifest.title)
    images = image_urls(clean)
    for media in manifest.media:
        path = _inside(pack_dir, media)
        if not path.is_file():
            raise BadPack(f"{MANIFEST}: media: file {media!r} is missing")
        if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp"}:
            uri = path.resolve().as_uri()
            if uri not in images:
                images.append(uri)
    published = manifest.published
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=tz)
    return Item(
        guid=manifest.guid or name,
        title=title,
        url=manifest.url,
        summary=plain_text(manifest.summary) or summarize(text),
        content_html=clean,
        text=text,
        images=images,
        author=plain_text(manifest.author),
        categories=[],
        published_at=to_iso(published) if published else None,
        content_hash=content_hash(title, text),
        groups=list(manifest.groups),
        topics=list(manifest.topics),
        source=plain_text(manifest.source),
        county=manifest.county if manifest.county != "市级" else default_county,
    )


def _manifest(pack_dir: Path) -> PackManifest:
    path = pack_dir / MANIFEST
    if not path.is_file():
        raise BadPack(f"{MANIFEST} is missing")
    try:
        data: Any = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise BadPack(f"{MANIFEST} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadPack(f"{MANIFEST} must be a mapping of keys (title, summary, ...)")
    try:
        return PackManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required key is missing"
        elif first["type"] == "extra_forbidden":
            message = "unknown key"
        raise BadPack(f"{MANIFEST}: {key}: {message}") from None


def _body_path(pack_dir: Path, manifest: PackManifest) -> Path:
    if manifest.body:
        path = _inside(pack_dir, manifest.body)
        if not path.is_file():
            raise BadPack(f"{MANIFEST}: body: file {manifest.body!r} is missing")
        return path
    for candidate in BODY_CANDIDATES:
        if (pack_dir / candidate).is_file():
            return pack_dir / candidate
    raise BadPack(f"no body file (expected one of {', '.join(BODY_CANDIDATES)})")


def _inside(pack_dir: Path, relative: str) -> Path:
    path = (pack_dir / relative).resolve()
    if not path.is_relative_to(pack_dir.resolve()):
        raise BadPack(f"{relative!r} points outside the pack")
    return path


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for codec in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise BadPack(f"{path.name} is neither UTF-8 nor GBK text")


def _unpacked(archive: Path, media_root: Path) -> Path:
    """Extract a pack .zip once (keyed by its content hash); refuses unsafe member names."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = media_root / f"{archive.stem}-{digest}"
    if (target / ".complete").exists():
        return _pack_root(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise BadPack(f"archive unpacks to more than {MAX_ZIP_BYTES} bytes")
            for member in members:
                parts = PurePosixPath(member.filename.replace("\\", "/")).parts
                if member.filename.startswith("/") or ".." in parts:
                    raise BadPack(f"archive member {member.filename!r} points outside the pack")
            target.mkdir(parents=True, exist_ok=True)
            zf.extractall(target)
    except zipfile.BadZipFile as exc:
        raise BadPack(f"not a readable zip archive: {exc}") from None
    (target / ".complete").touch()
    return _pack_root(target)


def _pack_root(target: Path) -> Path:
    """The folder holding pack.yaml: the archive root or its single top-level folder."""
    if (target / MANIFEST).is_file():
        return target
    children = [c for c in target.iterdir() if c.is_dir() and not c.name.startswith(".")]
    if len(children) == 1 and (children[0] / MANIFEST).is_file():
        return children[0]
    raise BadPack(f"{MANIFEST} is missing (looked in the archive root and its top folder)")
