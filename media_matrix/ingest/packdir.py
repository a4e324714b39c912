"""Local resource packs (科普资源包): a folder or .zip holding pack.yaml, a body and media.

Packs are read in place and never moved or deleted. A .zip's files are extracted (safely) to
a media folder beside the database so its images have a stable local address. A bad pack is
reported by name and left exactly where it is.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePosixPath
from typing import Any

import markdown
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from media_matrix.config import load_yaml
from media_matrix.ingest.clean import (
    confine_local,
    content_hash,
    html_to_text,
    image_urls,
    plain_text,
    sanitize_html,
    summarize,
)
from media_matrix.ingest.source import SourceError, SourceResult
from media_matrix.ingest.vet import ID_PATTERN
from media_matrix.models import CITY, Item, check_group_ids
from media_matrix.timeutil import to_iso

MANIFEST = "pack.yaml"
BODY_CANDIDATES = ("body.html", "body.md", "index.html", "README.md")


@dataclass(frozen=True)
class PackCaps:
    """Limits on one pack (config ``ingest.pack_max_*``); a pack over any is refused, by name."""

    max_body_bytes: int = 5 * 1024 * 1024
    max_files: int = 500
    max_bytes: int = 200 * 1024 * 1024


class PackManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    summary: str = ""
    source: str = ""
    published: datetime | None = None
    author: str = ""
    county: str = CITY
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

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: list[str]) -> list[str]:
        # the vocabulary is the configured rules' (checked at ingest); the form is checked here
        bad = [t for t in value if not ID_PATTERN.match(t)]
        if bad:
            raise ValueError(f"topic id {bad[0]!r} is not an id like food_safety ([a-z][a-z0-9_]*)")
        return value


class BadPack(Exception):
    pass


def read_packdir(
    folder: Path,
    media_root: Path,
    default_county: str = CITY,
    tz: tzinfo = UTC,
    caps: PackCaps | None = None,
) -> SourceResult:
    """Every pack in ``folder``; ``tz`` is how a ``published`` time without offset is read
    (editors write local time). A pack that is a symlink, names a file outside itself or is
    over a cap is reported by name and skipped."""
    caps = caps or PackCaps()
    if not folder.is_dir():
        raise SourceError(f"pack folder {folder} does not exist")
    result = SourceResult()
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() or entry.suffix.lower() == ".zip"):
            continue
        try:
            if entry.is_symlink():
                raise BadPack("the pack is a symbolic link; packs must be real folders or files")
            if entry.is_file():
                pack_dir = _unpacked(entry, media_root, caps)
            else:
                _check_folder(entry, caps)
                pack_dir = entry
            result.items.append(read_pack(pack_dir, entry.name, default_county, tz, caps))
        except BadPack as exc:
            result.item_errors.append((entry.name, str(exc)))
        except (OSError, zipfile.LargeZipFile) as exc:  # unreadable file, full disk, ...
            result.item_errors.append((entry.name, f"cannot read the pack: {exc}"))
    return result


def _check_folder(pack_dir: Path, caps: PackCaps) -> None:
    """Refuse a folder holding too many files or too many bytes (symlinks are not followed)."""
    files, total = 0, 0
    for root, dirs, names in os.walk(pack_dir, followlinks=False):
        files += len(names) + len(dirs)
        if files > caps.max_files:
            raise BadPack(f"the pack holds more than {caps.max_files} files")
        for name in names:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
        if total > caps.max_bytes:
            raise BadPack(f"the pack holds more than {caps.max_bytes} bytes")


def read_pack(
    pack_dir: Path,
    name: str,
    default_county: str = CITY,
    tz: tzinfo = UTC,
    caps: PackCaps | None = None,
) -> Item:
    caps = caps or PackCaps()
    manifest = _manifest(pack_dir)
    root = pack_dir.resolve()
    base = root.as_uri() + "/"
    body_path = _body_path(pack_dir, manifest)
    if body_path.stat().st_size > caps.max_body_bytes:
        raise BadPack(f"{body_path.name} is over the {caps.max_body_bytes}-byte body cap")
    raw = _read_text(body_path)
    if body_path.suffix.lower() == ".md":
        raw = markdown.markdown(raw, extensions=["extra", "sane_lists"])
    clean, dropped = confine_local(sanitize_html(raw, base), str(root))
    if dropped:
        raise BadPack(f"the body names a file outside the pack: {dropped[0][:200]!r}")
    text = html_to_text(clean)
    title = plain_text(manifest.title)
    images = image_urls(clean)
    for media in manifest.media:
        path = _inside(pack_dir, media)
        if not path.is_file():
            raise BadPack(f"{MANIFEST}: media: file {media!r} is missing")
        if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp"}:
            uri = path.as_uri()
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
        county=manifest.county if manifest.county != CITY else default_county,
        local_root=str(root),
    )


def _manifest(pack_dir: Path) -> PackManifest:
    if not (pack_dir / MANIFEST).is_file():
        raise BadPack(f"{MANIFEST} is missing")
    path = _inside(pack_dir, MANIFEST)
    try:
        data: Any = load_yaml(_read_text(path))
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
            return _inside(pack_dir, candidate)
    raise BadPack(f"no body file (expected one of {', '.join(BODY_CANDIDATES)})")


def _inside(pack_dir: Path, relative: str) -> Path:
    """The file ``relative`` names, symlinks resolved, if that is inside the pack."""
    if relative.lower().startswith("file:"):
        raise BadPack(f"{relative!r}: name files by their path inside the pack, not file://")
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


def _unpacked(archive: Path, media_root: Path, caps: PackCaps) -> Path:
    """Extract a pack .zip once (keyed by its content hash); refuses unsafe member names and
    archives over the caps (checked on the directory, before anything is written)."""
    if archive.stat().st_size > caps.max_bytes:
        raise BadPack(f"the archive is over the {caps.max_bytes}-byte pack cap")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = media_root / f"{archive.stem}-{digest}"
    if (target / ".complete").exists():
        return _pack_root(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > caps.max_files:
                raise BadPack(f"the archive holds {len(members)} entries, over {caps.max_files}")
            if sum(m.file_size for m in members) > caps.max_bytes:
                raise BadPack(f"the archive unpacks to more than {caps.max_bytes} bytes")
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
