"""The type checker holds the store's shape: each table family is checked on its own, so a
family calling into another it does not name as a base fails here (see store/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_mypy_passes_on_the_checked_modules():
    done = _mypy()  # the files and options of [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_family_silences_a_missing_attribute():
    for path in (ROOT / "media_matrix" / "store").glob("*.py"):
        assert "ignore[attr-defined]" not in path.read_text(encoding="utf-8"), path.name


def test_mypy_sees_a_call_into_another_family(tmp_path):
    """A family reaching another family's method through ``self`` is an error mypy reports."""
    source = (ROOT / "media_matrix" / "store" / "locks.py").read_text(encoding="utf-8")
    bad = tmp_path / "locks_bad.py"
    bad.write_text(
        source + "\n\ndef _reach(store: LockStore) -> object:\n    return store.get_pack(1)\n",
        encoding="utf-8",
    )
    done = _mypy(str(bad))
    assert done.returncode == 1
    assert '"LockStore" has no attribute "get_pack"' in done.stdout
