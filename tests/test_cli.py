"""The command map: every top-level command loads from the modules named for it."""

from __future__ import annotations

from importlib import import_module

import click

from media_matrix.cli import COMMAND_MODULES, cli


def test_every_command_loads_lazily_and_every_module_is_mapped():
    ctx = click.Context(cli)
    for name in COMMAND_MODULES:
        assert cli.get_command(ctx, name) is not None, name
    # registering every module on a fresh group adds exactly the mapped commands
    group = click.Group()
    for module in sorted({m for mods in COMMAND_MODULES.values() for m in mods}):
        import_module(f"media_matrix.cli.{module}").register(group)
    assert set(group.commands) == set(COMMAND_MODULES)
