"""F12: the worker's local state is lost; a fresh worker rebuilds it from the changelog.

crm-kpi keeps its Faust tables in memory (`store="memory://"`), so every restart is a state
loss: the worker directory is deleted as well, and a new process (new worker id) must answer
exactly what the old one did, for every window and slice.

Reproduce: python3 -m pytest tests/faults/test_state_rebuild.py
"""

from __future__ import annotations

import shutil
import time

import pytest

from kpis.catalogue import DIMENSIONS
from kpis.timebase import WINDOWS
from streams.events import format_time_ms
from tests.faults.harness import Deployment, Figures, evaluation_time
from tests.oracle.history import generate_history
from tests.oracle.kpis import events_processed

pytestmark = pytest.mark.integration


def test_state_deleted_then_rebuilt_from_the_changelog(deployment: Deployment,
                                                       figures: Figures) -> None:
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(60, end=at, n_events=8_000)
    first = deployment.add_worker()
    deployment.feeder(events, chunk=500, pause=0.0).join_checked()
    published = deployment.published()
    deployment.settle(events_processed(published))
    queries = [f"/api/kpis?window={w}&at={format_time_ms(at_ms)}" + (f"&by={by}" if by else "")
               for w in WINDOWS for by in (None, *DIMENSIONS)]
    before = {query: first.get(query) for query in queries}
    deployment.kill(first)
    shutil.rmtree(deployment.home / "worker")
    figures.fault("SIGKILL the worker and delete its data directory")
    rebuilt_at = time.monotonic()
    fresh = deployment.add_worker()
    deployment.settle(events_processed(published))
    figures.notes["rebuild_seconds"] = round(time.monotonic() - rebuilt_at, 1)
    after = {query: fresh.get(query) for query in queries}
    assert after == before
    deployment.check_against_oracle(published, at_ms, at, figures)
    figures.seconds = time.monotonic() - began
