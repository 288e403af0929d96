"""The compiled (mypyc) build of a source tree: tested like the pure one (tests/integration/
test_compiled_build.py) and measured next to it (bench/run.py `--builds`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BUILD_TIMEOUT = 1800


def _listed(source: Path, *options: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(source), "ls-files", "-z", *options],
                         capture_output=True, check=False, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"git ls-files failed in {source}: {out.stderr.decode(errors='replace').strip()}")
    return [name for name in out.stdout.decode().split("\0") if name]


def _stale_artifact(name: str) -> bool:
    """Build output of an earlier in-place build; copied, it could stand in for a fresh one."""
    return name.startswith("build/") or name.endswith((".so", ".pyd"))


def compiled_tree(source: Path, work: Path) -> Path:
    """Copy `source` (files tracked by git, plus untracked ones not ignored) into
    `work/compiled-tree`, compile it in place with mypyc (`CRMKPI_COMPILE=1 setup.py
    build_ext --inplace`, output in `work/compiled-build.log`) and return that directory."""
    source = source.resolve()
    if not (source / "setup.py").is_file():
        raise RuntimeError(f"{source} has no setup.py: no compiled build to measure")
    tree = work / "compiled-tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    names = sorted(set(_listed(source)) | set(_listed(source, "--others", "--exclude-standard")))
    for name in names:
        origin = source / name
        if _stale_artifact(name) or not (origin.is_file() or origin.is_symlink()):
            continue  # deleted in the working tree, a submodule, or old build output
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target, follow_symlinks=False)
    build_log = work / "compiled-build.log"
    with build_log.open("wb") as output:
        result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree,
                                env={**os.environ, "CRMKPI_COMPILE": "1"}, stdout=output,
                                stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"compiled build failed (exit {result.returncode}); see {build_log}")
    if not any((tree / "kpis").glob("*.so")):
        raise RuntimeError(f"compiled build left no kpis/*.so in {tree} (is mypy installed?); "
                           f"see {build_log}")
    return tree
