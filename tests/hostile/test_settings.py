"""Class: every number and date in config.yaml has a range. A value outside it is a config
error (exit 2) naming the key; nothing is opened or stored first."""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from media_matrix import config as config_module
from media_matrix.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def _bounded(metadata: list[Any]) -> tuple[bool, bool]:
    low = any(isinstance(m, annotated_types.Ge | annotated_types.Gt) for m in metadata)
    high = any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in metadata)
    return low, high


def _unbounded_numbers(annotation: Any, metadata: list[Any], where: str) -> list[str]:
    """Numbers reachable through an annotation (Optional, list, dict values, Annotated) that
    lack a lower or an upper bound."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        for item in extra:
            metadata = [*metadata, *getattr(item, "metadata", [item])]
        return _unbounded_numbers(inner, metadata, where)
    if annotation in (int, float):
        low, high = _bounded(metadata)
        return [] if low and high else [f"{where} ({annotation.__name__})"]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return [bad for arg in args for bad in _unbounded_numbers(arg, metadata, where)]
    if origin in (list, tuple, set):
        return [bad for arg in args for bad in _unbounded_numbers(arg, [], f"{where}[]")]
    if origin is dict:
        return _unbounded_numbers(args[1], [], f"{where}{{}}")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return []  # walked on its own below
    return []


def _config_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(config_module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == config_module.__name__
    ]


def test_every_number_in_every_settings_model_has_both_bounds():
    """The class test: a new int or float setting without a range fails here."""
    models = _config_models()
    assert len(models) >= 10  # the walk really sees the settings models
    unbounded = []
    for model in models:
        for name, field in model.model_fields.items():
            unbounded += _unbounded_numbers(
                field.annotation, field.metadata, f"{model.__name__}.{name}"
            )
    assert unbounded == []


def test_settings_models_refuse_nan_and_infinity():
    for model in _config_models():
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


# -- table: one bad value per key, the key named in the message -----------------------------


def _base(tmp_path: Path) -> dict[str, Any]:
    return {
        "database": str(tmp_path / "db.sqlite"),
        "templates": str(REPO / "channels"),
        "counties": {"清丰县": 650000},
        "feeds": [{"name": "kp", "kind": "rss", "url": "x.xml"}],
        "channels": [
            {"name": "cms", "type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s"},
            {"name": "wx", "type": "wechat_mp", "appid": "a", "secret": "s"},
            {"name": "robot", "type": "wecom_robot", "webhook_url": "http://127.0.0.1:9/?key=k"},
            {"name": "screen", "type": "outbox", "path": str(tmp_path / "out")},
        ],
        "campaigns": [{"name": "科普日", "from": "09-01", "to": "09-30"}],
    }


CHANNEL = {"cms": 0, "wx": 1, "robot": 2, "screen": 3}

# (path into the config, bad value, text the message must carry)
BAD = [
    (("dispatch", "lease_seconds"), -1, "dispatch.lease_seconds"),
    (("dispatch", "lease_seconds"), 0, "dispatch.lease_seconds"),
    (("dispatch", "lease_seconds"), 1e12, "dispatch.lease_seconds"),
    (("dispatch", "backoff_base"), -5, "dispatch.backoff_base"),
    (("dispatch", "backoff_cap"), -5, "dispatch.backoff_cap"),
    (("dispatch", "backoff_cap"), 1e30, "dispatch.backoff_cap"),
    (("dispatch", "max_attempts"), 0, "dispatch.max_attempts"),
    (("dispatch", "max_retry_after"), "0s", "dispatch.max_retry_after"),
    (("dispatch", "max_retry_after"), "99999d", "dispatch.max_retry_after"),
    (("dispatch", "workers"), 10**6, "dispatch.workers"),
    (("ingest", "connect_timeout"), -1, "ingest.connect_timeout"),
    (("ingest", "read_timeout"), 0, "ingest.read_timeout"),
    (("ingest", "max_backoff"), -60, "ingest.max_backoff"),
    (("ingest", "max_backoff"), ".inf", "ingest.max_backoff"),
    (("ingest", "max_bytes"), 10**15, "ingest.max_bytes"),
    (("ingest", "workers"), 0, "ingest.workers"),
    (("daemon", "misfire_grace"), -1, "daemon.misfire_grace"),
    (("daemon", "sweep_every"), 0, "daemon.sweep_every"),
    (("daemon", "heartbeat_every"), -1, "daemon.heartbeat_every"),
    (("daemon", "stale_after"), "999d", "daemon.stale_after"),
    (("tagging", "threshold"), -1, "tagging.threshold"),
    (("tagging", "title_weight"), ".nan", "tagging.title_weight"),
    (("tagging", "topic_share"), 2, "tagging.topic_share"),
    (("counties", "清丰县"), -650000, "counties.清丰县"),
    (("feeds", 0, "every"), 0, "feeds[0] (kp).every"),
    (("feeds", 0, "every"), -30, "feeds[0] (kp).every"),
    (("feeds", 0, "every"), "9999999d", "feeds[0] (kp).every"),
    (("feeds", 0, "max_items"), 0, "feeds[0] (kp).max_items"),
    (("channels", "cms", "timeout"), -1, "channels[0] (cms).timeout"),
    (("channels", "cms", "timeout"), ".nan", "channels[0] (cms).timeout"),
    (("channels", "wx", "timeout"), 0, "channels[1] (wx).timeout"),
    (("channels", "robot", "timeout"), 1e9, "channels[2] (robot).timeout"),
    (("channels", "cms", "reach"), -1, "channels[0] (cms).reach"),
    (("channels", "cms", "per_slot"), 0, "channels[0] (cms).per_slot"),
    (("channels", "cms", "daily_quota"), 0, "channels[0] (cms).daily_quota"),
    (("channels", "cms", "concurrency"), 10**9, "channels[0] (cms).concurrency"),
    (("channels", "cms", "rate_per_minute"), -3, "channels[0] (cms).rate_per_minute"),
    (("channels", "screen", "weekdays"), [0, 9], "channels[3] (screen).weekdays[0]"),
    (("channels", "screen", "weekdays"), [1, 9], "channels[3] (screen).weekdays[1]"),
    (("channels", "screen", "weekdays"), [], "channels[3] (screen).weekdays"),
    (("channels", "screen", "play_seconds"), 0, "channels[3] (screen).play_seconds"),
    (("channels", "screen", "play_days"), 10**6, "channels[3] (screen).play_days"),
    (("channels", "screen", "passers_per_play"), -2, "channels[3] (screen).passers_per_play"),
    (("channels", "screen", "ticker_max"), 5, "channels[3] (screen).ticker_max"),
    (("campaigns", 0, "from"), "13-45", "campaigns[0] (科普日).from"),
    (("campaigns", 0, "to"), "02-30", "campaigns[0] (科普日).to"),
    (("campaigns", 0, "to"), "00-10", "campaigns[0] (科普日).to"),
    (("topics", "health"), {"keywords": {"流感": 1e9}}, "topics.health.keywords.流感"),
    (("topics", "health"), {"threshold": -1}, "topics.health.threshold"),
]


def _put(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = data
    parts = list(path)
    if parts[0] == "channels":
        parts[1] = CHANNEL[parts[1]]
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[parts[-1]] = value


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    text = yaml.safe_dump(data, allow_unicode=True)
    for special in (".inf", ".nan"):  # YAML's own spellings, not strings
        text = text.replace(f"'{special}'", special)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_base_config_of_the_table_loads(tmp_path):
    load_settings(_write(tmp_path, _base(tmp_path)))


@pytest.mark.parametrize(
    ("path", "value", "key"), BAD, ids=[f"{'.'.join(map(str, p))}={v!r}" for p, v, _ in BAD]
)
def test_an_out_of_range_setting_is_refused_with_its_key_named(tmp_path, path, value, key):
    data = _base(tmp_path)
    _put(data, path, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, data))
    assert key in str(info.value), str(info.value)
    assert not (tmp_path / "db.sqlite").exists()


def test_backoff_cap_below_base_is_refused(tmp_path):
    data = _base(tmp_path)
    data["dispatch"] = {"backoff_base": 600, "backoff_cap": 60}
    with pytest.raises(ConfigError, match=r"dispatch: backoff_cap .* at least backoff_base"):
        load_settings(_write(tmp_path, data))


def test_leap_day_campaign_is_accepted(tmp_path):
    data = _base(tmp_path)
    data["campaigns"][0].update({"from": "02-29", "to": "03-01"})
    assert load_settings(_write(tmp_path, data)).campaigns[0].start == "02-29"


def test_the_cli_exits_2_naming_the_key(tmp_path):
    data = _base(tmp_path)
    data["dispatch"] = {"lease_seconds": -1}
    config = _write(tmp_path, data)
    result = subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "dispatch.lease_seconds" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "db.sqlite").exists()
