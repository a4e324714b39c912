"""A sandbox's remembered state in a JSON file, so the offline demo survives restarts.

The in-process sandboxes (``sandbox://`` channels) live as long as one command. Without a memory,
a second ``dispatch --once`` would ask a fresh WeChat sandbox about the publish the first one
submitted and get 40007. Each app names its ``persistent`` attributes; they are written here
(JSON with a few tagged types: never pickle, the file is data, not code) after every request
and read back when the next command starts its servers.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

FORMAT = 1


def encode(value: Any) -> Any:
    """A JSON-able form of ``value`` (dataclasses, bytes, dates, tuples, deques, counters)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dc__": type(value).__name__, "fields": fields}
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, date):
        return {"__date__": value.isoformat()}
    if isinstance(value, deque):
        return {"__deque__": [encode(v) for v in value]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, set):
        return {"__set__": [encode(v) for v in sorted(value, key=repr)]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, itertools.count):
        return {"__count__": next(value)}  # one id skipped: ids stay unique
    return value


def decode(value: Any, types: dict[str, type]) -> Any:
    if isinstance(value, list):
        return [decode(v, types) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dc__" in value:
        cls = types.get(value["__dc__"])
        if cls is None:
            raise ValueError(f"unknown sandbox record type {value['__dc__']!r}")
        return cls(**{k: decode(v, types) for k, v in value["fields"].items()})
    if "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    if "__date__" in value:
        return date.fromisoformat(value["__date__"])
    if "__deque__" in value:
        return deque(decode(v, types) for v in value["__deque__"])
    if "__tuple__" in value:
        return tuple(decode(v, types) for v in value["__tuple__"])
    if "__set__" in value:
        return {decode(v, types) for v in value["__set__"]}
    if "__items__" in value:
        return {decode(k, types): decode(v, types) for k, v in value["__items__"]}
    if "__count__" in value:
        return itertools.count(int(value["__count__"]))
    return {k: decode(v, types) for k, v in value.items()}


def save(apps: dict[str, Any], path: Path) -> None:
    """Write every app's persistent attributes (atomically: temp file, then rename)."""
    data: dict[str, Any] = {"format": FORMAT}
    for name, app in apps.items():
        with app.lock:
            data[name] = {attr: encode(getattr(app, attr)) for attr in app.persistent}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def load(apps: dict[str, Any], path: Path) -> bool:
    """Restore what :func:`save` wrote; False when there is no file (a fresh sandbox)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown sandbox state format {data.get('format')!r}")
    for name, app in apps.items():
        saved = data.get(name) or {}
        with app.lock:
            for attr in app.persistent:
                if attr in saved:
                    setattr(app, attr, decode(saved[attr], app.record_types))
    return True
