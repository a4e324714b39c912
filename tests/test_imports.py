"""The house's import rules, read from the source: imports follow the flow downward, no circles.

Every module of media_matrix is parsed (not imported), every import of a media_matrix module is
an edge -- including imports inside functions and ``if TYPE_CHECKING`` blocks, and
``import_module`` calls with a literal name -- and the graph must fit LAYERS below: a module
imports only modules of a lower layer, or modules of its own package (cli.x -> cli.common).
A new backward import, a new circle or a module missing from LAYERS fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "media_matrix"

# Top to bottom; a module may import only from layers below its own. The order is the flow of
# DESIGN.md read as "who calls whom": the faces call the compositions, which call each stage;
# an earlier stage may hand work to a later one (ingest demotes a changed pack to review,
# dispatch records estimated reach), never the other way; shared types and pure helpers sit
# at the bottom.
LAYERS: list[tuple[str, set[str]]] = [
    ("entry", {"__main__"}),
    ("cli", {"cli"}),
    ("faces", {"web", "public", "daemon"}),
    ("compositions", {"flow", "overview"}),
    ("orders", {"orders"}),  # 群众点单: cleans and tags orders like ingest does its items
    ("ingest", {"ingest"}),
    ("editing", {"retag", "pack_text", "users", "officers", "calendar", "preview"}),
    ("scheduling", {"scheduling"}),
    ("review", {"review"}),
    ("planning", {"planner", "tagging"}),
    ("dispatch", {"dispatch"}),
    ("tracking", {"tracking"}),
    ("adapters", {"adapters"}),
    ("render", {"render"}),
    ("statistics", {"stats"}),
    ("messages", {"messages"}),
    ("sandbox", {"sandbox"}),  # loopback channel servers: demo and tests, beside the flow
    ("instance", {"instance"}),
    ("store", {"store"}),
    ("config", {"config"}),
    ("http", {"httpclient"}),
    (
        "base",
        {
            "models",
            "timeutil",
            "errors",
            "errortext",
            "redact",
            "cron",
            "netpolicy",
            "links",
            "qr",
            "heap",
        },
    ),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the media_matrix modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # "from pkg import mod" names a module; "from mod import name" names mod
                names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                names = names or [base]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
            for name in names:
                if name.startswith("media_matrix"):
                    target = _resolve(name, modules)
                    if target and target != module:
                        targets.add(target)
        graph[module] = targets
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int:
    top = _top(module)
    for rank, (_name, members) in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{module} is in no layer: add {top!r} to LAYERS in {__file__}")


def backward_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        if source == "media_matrix":
            continue
        for target in sorted(targets):
            if target == "media_matrix":
                bad.append(f"{source} -> media_matrix (import a module, not the package)")
                continue
            same_package = _top(source) == _top(target)
            if not same_package and layer_of(target) <= layer_of(source):
                bad.append(
                    f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer():
    for module in _modules():
        if module != "media_matrix":
            layer_of(module)


def test_no_import_runs_back_up_the_flow():
    assert backward_edges(import_graph()) == []


def test_no_circles():
    assert cycles(import_graph()) == []


def test_the_check_sees_a_backward_import_and_a_circle():
    graph = import_graph()
    # a function-level import of the planner from the statistics (what stats.core once did)
    assert "media_matrix.planner" not in graph["media_matrix.stats.core"]
    graph["media_matrix.stats.core"] = graph["media_matrix.stats.core"] | {"media_matrix.planner"}
    assert backward_edges(graph) == [
        "media_matrix.stats.core (statistics) -> media_matrix.planner (planning)"
    ]
    graph["media_matrix.messages"] = graph["media_matrix.messages"] | {"media_matrix.stats.core"}
    graph["media_matrix.stats.core"] |= {"media_matrix.messages"}
    assert ["media_matrix.messages", "media_matrix.stats.core"] in cycles(graph)


def test_function_level_and_importlib_imports_are_edges(tmp_path, monkeypatch):
    source = PACKAGE / "stats" / "core.py"
    text = source.read_text(encoding="utf-8")
    fake = tmp_path / "media_matrix"
    for path in PACKAGE.rglob("*.py"):
        target = fake / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (fake / "stats" / "core.py").write_text(
        text
        + "\n\ndef _late():\n    from media_matrix.scheduling import queue_pack\n"
        + "    import importlib\n    importlib.import_module('media_matrix.daemon')\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    edges = import_graph()["media_matrix.stats.core"]
    assert {"media_matrix.scheduling", "media_matrix.daemon"} <= edges


def test_help_loads_no_command_module_and_no_heavy_library():
    """`media-matrix --help` (and the CLI's error mapping) imports neither the command modules
    nor pydantic, rich, requests, SQLite wrappers, feed parsers or the scheduler."""
    probe = (
        "import sys\n"
        "from media_matrix.cli import main\n"
        "try:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('pydantic', 'rich', 'requests', 'apscheduler', 'feedparser', 'lxml', 'nh3',\n"
        "         'bs4', 'flask', 'weasyprint', 'segno', 'jinja2', 'sqlite_utils', 'yaml')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy or (\n"
        "    m.startswith('media_matrix.cli.') and m != 'media_matrix.cli.common'))\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "LOADED []" in done.stdout, done.stdout
    assert "status" in done.stdout and "packs" in done.stdout  # the command list is shown


def test_every_command_has_a_summary_in_the_help_list():
    from media_matrix.cli import COMMAND_MODULES, COMMAND_SUMMARIES

    assert set(COMMAND_SUMMARIES) == set(COMMAND_MODULES)
    assert all(COMMAND_SUMMARIES.values())


# Where a module name is computed at run time the graph cannot see the edge: only the two
# registries that load their own package's modules by name may do it.
DYNAMIC_IMPORTERS = {"media_matrix.cli", "media_matrix.adapters"}


def test_dynamic_imports_only_in_the_registries():
    found = set()
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None))
                in ("import_module", "__import__")
                and not (node.args and isinstance(node.args[0], ast.Constant))
            ):
                found.add(module)
    assert found == DYNAMIC_IMPORTERS


def test_ingest_with_nothing_due_loads_no_http_client_or_parser(tmp_path):
    """A cron `ingest --due` between polls pays for no HTTP client, parser or sanitizer."""
    probe = (
        "import sys\n"
        "from media_matrix.config import load_settings\n"
        "from media_matrix.ingest import run_ingest\n"
        "from media_matrix.store import open_store\n"
        "settings = load_settings(sys.argv[1])\n"
        "store = open_store(settings.database)\n"
        "store.sync_feeds([('kp', 'rss', 'https://kp.example/feed.xml')])\n"
        "store.record_fetch_ok('kp', at='2026-11-29T00:00:00+00:00',\n"
        "    next_fetch_at='2999-01-01T00:00:00+00:00', etag=None, last_modified=None, items=0)\n"
        "report = run_ingest(settings, store, due_only=True)\n"
        "assert [f.skipped for f in report.feeds] == [True], report\n"
        "heavy = ('requests', 'urllib3', 'feedparser', 'lxml', 'nh3', 'bs4')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: {tmp_path / 'db.sqlite'}\n"
        "feeds:\n  - {name: kp, kind: rss, url: 'https://kp.example/feed.xml'}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout


def test_a_resolved_command_sets_start_up_objects_apart_from_the_collector():
    """Once a command's modules are loaded, start-up's objects are frozen (heap.settle_heap), so
    the collections a long command sets off do not walk them; --help freezes nothing."""
    probe = (
        "import gc, sys\n"
        "import click\n"
        "from media_matrix.cli import cli\n"
        "before = gc.get_freeze_count()\n"
        "cli.get_command(click.Context(cli), sys.argv[1])\n"
        "first = gc.get_freeze_count()\n"
        "leftovers = [{'n': n} for n in range(50_000)]\n"
        "cli.get_command(click.Context(cli), 'packs')\n"
        "print('FROZEN', before, first, gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "ingest"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    before, first, later = (int(n) for n in done.stdout.split()[1:4])
    assert before == 0 and first > 10_000, done.stdout
    assert later == first  # a second command in the same process freezes nothing more
