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


def test_packs_list_table_shows_the_newest_fifty_and_says_so(tmp_path):
    """A table is for people: 1,000 packs would take seconds to lay out and scroll away. The
    table shows the newest 50 and says how to see more; --limit and --json are not cut."""
    import json

    import yaml
    from click.testing import CliRunner

    from media_matrix.cli.packs import TABLE_ROWS
    from media_matrix.models import Item, PackStatus
    from media_matrix.store import open_store
    from media_matrix.timeutil import now_iso

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": "var/t.db"}), encoding="utf-8")
    store = open_store(tmp_path / "var" / "t.db")
    for n in range(TABLE_ROWS + 3):
        item = Item(guid=f"g{n}", title=f"科普第{n}篇", text="正文" * 5, content_hash=f"h{n}")
        store.insert_pack("test", item, at=now_iso(), status=PackStatus.NEW)
    store.close()
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, ["--config", str(config), "packs", "list", *args])

    table = run()
    assert table.exit_code == 0, table.output
    assert f"内容包 ({TABLE_ROWS})" in table.output and "--limit N" in table.output
    wide = run("--limit", str(TABLE_ROWS + 10))
    assert f"内容包 ({TABLE_ROWS + 3})" in wide.output and "--limit N" not in wide.output
    assert len(json.loads(run("--json").output)) == TABLE_ROWS + 3
