"""The compiled build (setup.py: the per-event modules through mypyc) passes the unit tests
that the pure Python build passes, exactness tests included, on the compiled modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.compiled import compiled_tree

REPO = Path(__file__).resolve().parents[2]
HOT_PATH = ("kpis.partition", "kpis.families.customers", "streams.events", "agents.ingest")


@pytest.mark.skipif(shutil.which("cc") is None, reason="the compiled build needs a C compiler")
@pytest.mark.timeout(1500)
def test_the_compiled_build_passes_the_unit_tests(tmp_path: Path) -> None:
    tree = compiled_tree(REPO, tmp_path)
    where = f"import importlib; print(*(importlib.import_module(m).__file__ for m in {HOT_PATH!r}))"
    loaded = subprocess.run([sys.executable, "-c", where], cwd=tree, capture_output=True, text=True,
                            timeout=120, check=True).stdout.split()
    assert [Path(path).suffix for path in loaded] == [".so"] * len(HOT_PATH), loaded

    unit = subprocess.run([sys.executable, "-m", "pytest", "tests/unit", "-q", "-x"], cwd=tree,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert unit.returncode == 0, unit.stdout[-6000:] + unit.stderr[-2000:]
