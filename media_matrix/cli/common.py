"""Shared plumbing for the command modules: lazy settings/store, output, error mapping."""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

from media_matrix.errors import ConfigError, NotFound, StoreError
from media_matrix.redact import RedactingFilter, redact, redact_known, redact_record

if TYPE_CHECKING:  # loaded on first use: `--help` reads no config and opens no database
    from rich.console import Console

    from media_matrix.config import Settings
    from media_matrix.store import Store


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
            from media_matrix.config import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            from media_matrix.store import open_store

            self._store = open_store(self.settings.database)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_app = click.make_pass_decorator(AppContext)


def redacted_stderr_logging() -> None:
    """Warnings and errors of the services on stderr, as plain lines with secrets masked (a
    failed send logs its error, which quotes the request URL). A no-op when logging is set up
    already (the daemon routes records to its JSON log, which redacts too)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run the click command mapping our exceptions to exit codes and clear messages."""
    redacted_stderr_logging()
    try:
        command.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("已中止 (aborted)", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.message = redact(exc.message)  # runtime failures quote remote errors and URLs
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"配置错误 (config error): {redact(str(exc))}", err=True)
        return 2
    except NotFound as exc:
        click.echo(f"未找到 (not found): {redact(str(exc))}", err=True)
        return 1
    except StoreError as exc:
        click.echo(f"错误 (error): {redact(str(exc))}", err=True)
        return 1
    except sqlite3.Error as exc:
        click.echo(f"数据库错误 (database error): {redact(str(exc))}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"文件或网络错误 (I/O error): {redact(str(exc))}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def echo_json(data: Any) -> None:
    """UTF-8 JSON on stdout, whatever the terminal's locale."""
    text = json.dumps(redact_record(data), ensure_ascii=False, indent=2, default=str)
    sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()


def echo_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else redact_known(str(v)) for v in row))
    console().print(table)


_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    return _console


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="输出 JSON (UTF-8)")(func)


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
        help=f"操作人, 记入操作日志 (默认: ${USER_ENV}, 否则为登录名)",
    )(func)


def note_option(func):  # type: ignore[no-untyped-def]
    return click.option("--note", default=None, metavar="TEXT", help="备注, 记入操作日志")(func)


# -- bounded argument types -----------------------------------------------------------------
# Every number, id and date a command takes is bounded here, so an out-of-range value is a
# usage error (exit 2, the option named) before any work starts, never a traceback or a
# minutes-long run. tests/hostile/test_bounded_args.py walks every command to hold this.

SQLITE_MAX_INT = 2**63 - 1  # SQLite INTEGER is a signed 64-bit number
MAX_DAYS = 366  # plan / queue --auto horizon: a year ahead at most
MAX_LIMIT = 1_000_000  # --limit on any listing
MIN_YEAR, MAX_YEAR = 2000, 2100  # dates and times people pass on the command line


class IdType(click.ParamType):
    """A database id: a whole number 1 .. 2**63-1 (what SQLite can hold)."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 19):
                self.fail(
                    f"ID 须为 1 到 {SQLITE_MAX_INT} 的整数, 收到 {value!r} (bad id)", param, ctx
                )
            number = int(text)
        if not 1 <= number <= SQLITE_MAX_INT:
            self.fail(f"ID 须为 1 到 {SQLITE_MAX_INT} 的整数, 收到 {value!r} (bad id)", param, ctx)
        return number


ID = IdType()


class BoundedInt(click.IntRange):
    """An int with both ends bounded (click's IntRange, but a maximum is required)."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(min=low, max=high)


class BoundedFloat(click.FloatRange):
    """A float with both ends bounded; NaN and infinities are refused."""

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        super().__init__(min=low, max=high, min_open=low_open)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:  # NaN slips through every comparison
            self.fail(f"{value!r} 不是有效数字 (not a number)", param, ctx)
        return number


DAYS = BoundedFloat(0, MAX_DAYS, low_open=True)
LIMIT = BoundedInt(1, MAX_LIMIT)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _check_year(year: int, value: Any, param: click.Parameter | None, ctx: Any) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise click.BadParameter(
            f"{value!r}: 年份须在 {MIN_YEAR} 到 {MAX_YEAR} 之间 "
            f"(year out of range {MIN_YEAR}..{MAX_YEAR})",
            ctx,
            param,
        )


class DayType(click.ParamType):
    """A calendar day YYYY-MM-DD in years MIN_YEAR..MAX_YEAR, as a date."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            day = value
        else:
            text = str(value).strip()
            try:
                if not _DAY.fullmatch(text):
                    raise ValueError
                day = date.fromisoformat(text)
            except ValueError:
                self.fail(
                    f"无法识别的日期 {value!r}: 请用 YYYY-MM-DD, 例如 2024-05-01 (bad date)",
                    param,
                    ctx,
                )
        _check_year(day.year, value, param, ctx)
        return day


DAY = DayType()


class MomentType(click.ParamType):
    """An ISO-8601 time in years MIN_YEAR..MAX_YEAR, kept as text: the command reads it in the
    config time zone when it has no offset (which the type cannot know)."""

    name = "iso"

    def __init__(self, *, allow_now: bool = False) -> None:
        self.allow_now = allow_now  # the word ``now`` (send at once) passes through as is

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if self.allow_now and text.lower() == "now":
            return "now"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"无法识别的时间 {value!r}: 请用 ISO-8601, 例如 2024-09-10T08:00 或 "
                "2024-09-10T08:00+08:00 (bad ISO time)",
                param,
                ctx,
            )
        _check_year(moment.year, value, param, ctx)
        return text


MOMENT = MomentType()
MOMENT_OR_NOW = MomentType(allow_now=True)


# -- ids from a vocabulary --------------------------------------------------------------------
# Every option that takes an id from a known set (group, topic, status, channel, feed, county,
# statistics dimension, role) uses one VocabType: the id or its Chinese label (what the tables
# show) is accepted, anything else exits 2 listing the valid ids with their labels.
# tests/test_cli_editor.py walks every command to hold this.

Vocabulary = Callable[[AppContext | None], dict[str, str]]


def _plain(label: str) -> str:
    """A label without its parenthesised note: 失败(将重试) -> 失败."""
    return re.split(r"[(（]", label, maxsplit=1)[0].strip()


class VocabType(click.ParamType):
    """An id from a vocabulary (id -> Chinese label), given as the id or as its label.

    ``comma``: a comma-separated list of such ids (``stats export --by county,group``)."""

    def __init__(self, what: str, items: Vocabulary, *, name: str = "id", comma: bool = False):
        self.what = what
        self.items = items
        self.name = name
        self.comma = comma

    def vocabulary(self, ctx: click.Context | None) -> dict[str, str]:
        app = ctx.find_object(AppContext) if ctx is not None else None
        return self.items(app)

    def resolve(self, text: str, vocab: dict[str, str]) -> str | None:
        """The id ``text`` names (an id, a label, or a label without its note), else None."""
        text = text.strip()
        if text in vocab:
            return text
        for key, label in vocab.items():
            if text and text in (label, _plain(label)):
                return key
        folded = {key.casefold(): key for key in vocab}
        return folded.get(text.casefold())

    def choices_text(self, vocab: dict[str, str]) -> str:
        return ", ".join(
            key if label == key else f"{key} ({label})" for key, label in vocab.items()
        )

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        vocab = self.vocabulary(ctx)
        parts = str(value).split(",") if self.comma else [str(value)]
        found = []
        for part in parts:
            key = self.resolve(part, vocab)
            if key is None:
                self.fail(
                    f"未知{self.what} {part.strip()!r}; 可选: {self.choices_text(vocab)} "
                    f"(unknown {self.name})",
                    param,
                    ctx,
                )
            found.append(key)
        return ",".join(found) if self.comma else found[0]

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return self.name.upper()


def _settings_of(app: AppContext | None) -> Settings:
    if app is None:
        raise click.UsageError("需要配置 (no configuration)")
    return app.settings


def _groups(app: AppContext | None) -> dict[str, str]:
    from media_matrix.models import GROUPS

    return dict(GROUPS)


def _topics(app: AppContext | None) -> dict[str, str]:
    """The topics of the effective tagging rules (config may add some), labelled."""
    from media_matrix.models import TOPICS

    ids = list(app.settings.topics) if app is not None else list(TOPICS)
    return {t: TOPICS.get(t, t) for t in ids}


def _pack_statuses(app: AppContext | None) -> dict[str, str]:
    from media_matrix.models import PACK_STATUS_LABELS

    return dict(PACK_STATUS_LABELS)


def _delivery_statuses(app: AppContext | None) -> dict[str, str]:
    from media_matrix.models import DELIVERY_STATUS_LABELS

    return dict(DELIVERY_STATUS_LABELS)


def _channels(app: AppContext | None) -> dict[str, str]:
    return {c.name: c.title or c.name for c in _settings_of(app).channels}


def _feeds(app: AppContext | None) -> dict[str, str]:
    return {f.name: f.name for f in _settings_of(app).feeds}


def _counties(app: AppContext | None) -> dict[str, str]:
    settings = _settings_of(app)
    names = ["市级", *settings.counties, *(c.county for c in settings.channels)]
    return {name: name for name in dict.fromkeys(names)}


def _request_statuses(app: AppContext | None) -> dict[str, str]:
    from media_matrix.models import REQUEST_STATUS_LABELS

    return dict(REQUEST_STATUS_LABELS)


def _stats_dims(app: AppContext | None) -> dict[str, str]:
    from media_matrix.stats.core import DIM_LABELS, DIMENSIONS

    return {d: DIM_LABELS.get(d, d) for d in DIMENSIONS}


def _roles(app: AppContext | None) -> dict[str, str]:
    from media_matrix.users import ROLE_LABELS, ROLES

    return {r: ROLE_LABELS.get(r, r) for r in ROLES}


GROUP = VocabType("人群", _groups, name="group")
TOPIC = VocabType("主题", _topics, name="topic")
PACK_STATUS = VocabType("内容包状态", _pack_statuses, name="status")
DELIVERY_STATUS = VocabType("投递状态", _delivery_statuses, name="status")
CHANNEL = VocabType("渠道", _channels, name="channel")
FEED = VocabType("订阅源", _feeds, name="feed")
COUNTY = VocabType("区县", _counties, name="county")
STATS_DIMS = VocabType("统计维度", _stats_dims, name="dims", comma=True)
ROLE = VocabType("角色", _roles, name="role")
REQUEST_STATUS = VocabType("点单状态", _request_statuses, name="status")


def local_time(app: AppContext, at: Any) -> str:
    """A stored time as the tables show it: local time in the config zone (timeutil decides
    the format); ``--json`` keeps the stored ISO-8601 with its offset."""
    from media_matrix.timeutil import local_text

    return local_text(at, app.settings.tz)


class OutputPathType(click.ParamType):
    """Where a command writes (every ``-o``): the folder it goes in must exist already. A typo
    in a path must not silently create a tree of folders; at most the folder named by ``-o
    DIR`` itself is made. A missing folder is a runtime failure (exit 1) naming it."""

    name = "path"

    def __init__(self, *, folder: bool = False, allow_dash: bool = False) -> None:
        self.folder = folder
        self.allow_dash = allow_dash

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if self.allow_dash and text == "-":
            return text
        from pathlib import Path

        path = Path(text).expanduser()
        parent = path.parent
        if not parent.is_dir():
            raise RuntimeFailure(
                f"输出文件夹不存在: {parent} (folder does not exist); 请先创建, 未写入任何文件"
            )
        if self.folder and path.exists() and not path.is_dir():
            raise RuntimeFailure(f"{path} 不是文件夹 (not a folder); 未写入任何文件")
        if not self.folder and path.is_dir():
            raise RuntimeFailure(f"{path} 是文件夹, 请给出文件名 (is a folder); 未写入任何文件")
        return str(path)


OUTPUT_FILE = OutputPathType(allow_dash=True)
OUTPUT_DIR = OutputPathType(folder=True)
