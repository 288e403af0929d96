"""The optional compiled build: `CRMKPI_COMPILE=1 pip install .` compiles the pure Python hot
path (KPI semantics, event validation, record codec, the record applier) with mypyc.

Without the variable, the package is pure Python. The compiled modules are the same source,
so both builds pass the same tests (.ci/run tests both); docs/performance.md has the gain.
An editable install with CRMKPI_COMPILE=1 puts the extension modules next to the sources,
where they shadow later edits: rebuild, or reinstall without the variable, after changing them.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

COMPILE = os.environ.get("CRMKPI_COMPILE", "") not in ("", "0")
HERE = Path(__file__).parent
# The per-event path (decode, validate, apply, encode state), and nothing that imports Faust,
# Kafka or aiohttp. Forecasts and anomaly scores (timers, not per event) stay interpreted.
COMPILED = sorted(
    str(path.relative_to(HERE))
    for pattern in ("kpis/*.py", "kpis/families/*.py", "kpis/insights/risk.py",
                    "streams/events.py", "streams/topics.py", "streams/codec.py",
                    "streams/internal.py", "agents/ingest.py", "agents/state.py")
    for path in HERE.glob(pattern)
)


def compiled_extensions() -> list:
    """mypyc's extension modules; empty until mypy is installed (pip first asks for the
    build requirements, see `setup_requires`, then builds with them)."""
    if not COMPILE:
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    return mypycify(COMPILED, opt_level="3", debug_level="0")


setup(
    ext_modules=compiled_extensions(),
    setup_requires=["mypy>=1.10"] if COMPILE else [],
)
