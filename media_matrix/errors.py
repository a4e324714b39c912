"""The errors every layer raises or maps, and the config variable's name: cheap to import, so
the CLI's error mapping and ``--help`` load neither pydantic (config) nor SQLite (store)."""

from __future__ import annotations

CONFIG_ENV = "MEDIA_MATRIX_CONFIG"  # names the config file when --config is not given


class ConfigError(Exception):
    """The configuration cannot be used; the message names file, key and expectation."""


class StoreError(Exception):
    """A stored record is missing or a change would break a constraint."""


class NotFound(StoreError):
    pass
