"""Shared plumbing for the command modules: lazy settings/store, output, error mapping."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from media_matrix.config import ConfigError, Settings, load_settings
from media_matrix.store import NotFound, Store, StoreError, open_store


class RuntimeFailure(click.ClickException):
    """A runtime failure: exit code 1."""

    exit_code = 1


class UsageFailure(click.ClickException):
    """A usage or configuration error: exit code 2."""

    exit_code = 2


@dataclass
class AppContext:
    """What every command needs, loaded on first use so `--help` never reads config."""

    config_path: str | None
    _settings: Settings | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.database)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_app = click.make_pass_decorator(AppContext)


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run the click command mapping our exceptions to exit codes and clear messages."""
    try:
        command.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("已中止 (aborted)", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"配置错误 (config error): {exc}", err=True)
        return 2
    except NotFound as exc:
        click.echo(f"未找到 (not found): {exc}", err=True)
        return 1
    except StoreError as exc:
        click.echo(f"错误 (error): {exc}", err=True)
        return 1
    except sqlite3.Error as exc:
        click.echo(f"数据库错误 (database error): {exc}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"文件或网络错误 (I/O error): {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def echo_json(data: Any) -> None:
    """UTF-8 JSON on stdout, whatever the terminal's locale."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()


def echo_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console().print(table)


_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    return _console


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="JSON output (UTF-8)")(func)


USER_ENV = "MEDIA_MATRIX_USER"


def default_user() -> str:
    """Who acts when --by is not given: $MEDIA_MATRIX_USER, else the login name."""
    try:
        return os.environ.get(USER_ENV) or getpass.getuser()
    except (KeyError, OSError):
        return "editor"


def by_option(func):  # type: ignore[no-untyped-def]
    return click.option(
        "--by",
        default=None,
        metavar="NAME",
        help=f"who does this (default: ${USER_ENV}, else the login name)",
    )(func)
