"""Class: every number, id and date a command takes is bounded by a shared type from
media_matrix/cli/common.py; out of range is exit 2 with a message naming the option, never a
traceback or a run that takes minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from media_matrix.cli import COMMAND_MODULES, cli
from media_matrix.cli.common import (
    BoundedFloat,
    DayType,
    IdType,
    MomentType,
    run_guarded,
)

HUGE = "99999999999999999999999"  # beyond SQLite's int64


def _commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(cli)

    def walk(
        path: tuple[str, ...], command: click.Command
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                yield from walk((*path, name), command.get_command(ctx, name))  # type: ignore[arg-type]

    for name in sorted(COMMAND_MODULES):
        yield from walk((name,), cli.get_command(ctx, name))  # type: ignore[arg-type]


COMMANDS = list(_commands())
PARAMS = [(path, param) for path, command in COMMANDS for param in command.params]


def _label(path: tuple[str, ...], param: click.Parameter) -> str:
    return " ".join(path) + " " + (param.opts[0] if param.opts else param.name or "?")


def test_the_walk_sees_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"packs show", "plan", "queue", "stats summary", "deliveries show", "audit"} <= names
    assert len(PARAMS) > 40


def test_every_number_id_and_date_parameter_uses_a_bounded_type():
    """The class test: a new int/float option without both bounds, an id that is a plain int,
    or a date/time taken as free text fails here."""
    bad = []
    for path, param in PARAMS:
        kind = param.type
        label = _label(path, param)
        numeric = isinstance(kind, click.types.IntParamType | click.types.FloatParamType)
        bounded = isinstance(kind, click.types._NumberRangeBase) and None not in (
            kind.min,
            kind.max,
        )
        if numeric and not bounded:
            bad.append(f"{label}: {kind!r} has no upper or lower bound")
        name = param.name or ""
        if (name.endswith("_id") or name.endswith("_ids")) and not isinstance(kind, IdType):
            bad.append(f"{label}: an id argument not of the ID type")
        metavar = getattr(param, "metavar", None)
        if metavar == "DATE" and not isinstance(kind, DayType):
            bad.append(f"{label}: a date not of the DAY type")
        if metavar == "ISO" and not isinstance(kind, MomentType):
            bad.append(f"{label}: a time not of the MOMENT type")
    assert bad == []


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": str(tmp_path / "db.sqlite")}), encoding="utf-8")
    return path


def _run(config: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_guarded(cli, ["--config", str(config), *argv])
    captured = capsys.readouterr()
    return code, captured.err


ID_CASES = [
    (list(path), param.opts[0] if isinstance(param, click.Option) else None)
    for path, param in PARAMS
    if isinstance(param.type, IdType)
]


@pytest.mark.parametrize(("path", "option"), ID_CASES, ids=[" ".join(p) for p, _ in ID_CASES])
@pytest.mark.parametrize("value", [HUGE, "0", "1e3", "١٢"])
def test_every_id_argument_refuses_out_of_range(config, capsys, path, option, value):
    argv = [*path, *([option] if option else []), value]
    code, err = _run(config, argv, capsys)
    assert code == 2, err
    assert "bad id" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["packs", "show", HUGE], "bad id"),
        (["plan", "--days", "1e9"], "--days"),
        (["plan", "--days", "nan"], "--days"),
        (["plan", "--days", "inf"], "--days"),
        (["plan", "--days", "367"], "--days"),
        (["queue", "--auto", "--days", "1e6"], "--days"),
        (["plan", "--now", "9999-12-31T23:00"], "--now"),
        (["queue", "1", "--at", "0001-01-01T00:00"], "--at"),
        (["stats", "summary", "--from", "0001-01-01", "--to", "9999-12-31"], "--from"),
        (["stats", "summary", "--from", "2024-01-01", "--to", "9999-12-31"], "--to"),
        (["stats", "export", "--from", "2000-01-01", "--to", "2100-12-31"], "at most 3660 days"),
        (["stats", "summary", "--from", "2024-02-30"], "--from"),
        (["stats", "pull", "--days", "1000"], "--days"),
        (["packs", "list", "--limit", HUGE], "--limit"),
        (["deliveries", "--limit", HUGE], "--limit"),
        (["audit", "--limit", "0"], "--limit"),
        (["dispatch", "--once", "--wait", "1e12"], "--wait"),
    ],
)
def test_out_of_range_arguments_exit_2_with_a_message(config, capsys, argv, needle):
    code, err = _run(config, argv, capsys)
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert not (config.parent / "db.sqlite").exists()  # refused before the store was opened


def test_in_range_values_still_work(config, capsys):
    code, err = _run(config, ["plan", "--days", "366", "--now", "2100-12-01T00:00"], capsys)
    assert code == 0, err
    code, err = _run(
        config, ["stats", "summary", "--from", "2024-01-01", "--to", "2033-12-31"], capsys
    )
    assert code == 0, err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_bounded_floats_refuse_nan_and_infinity(value):
    """Long-running commands (dispatch --interval, sandbox --latency) are checked at the type:
    on the old code they would start and run forever instead of failing."""
    with pytest.raises(click.BadParameter):
        BoundedFloat(0.1, 3600).convert(value, None, None)
