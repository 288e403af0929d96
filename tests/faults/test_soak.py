"""F22 soak (bench, not CI): a steady feed with a rebalance every few minutes.

Lag must stay bounded, no worker may die, and at the end the distinct event count and the
unsliced KPIs must equal the oracle's. One worker (the anchor) lives through the whole run
and every rebalance; a second one is replaced every REBALANCE_EVERY.

Memory: the generated history keeps creating entities (every story is a new lead, deal,
ticket or subscription), so the state, and with it RSS, grows with the events fed. A leak is
memory beyond that state: at the end the anchor alone holds every partition, then a fresh
worker alone holds the same state, and the anchor may use at most LEAK_BOUND times its RSS.

    CRMKPI_SOAK_MINUTES=60 CRMKPI_SOAK_RATE=300 python3 -m pytest tests/faults/test_soak.py -m soak -s

The rate is bounded by the oracle, not the engine: it holds and recomputes every event, and
generating the history alone takes about a second per 6,000 events.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from kpis.timebase import WINDOWS
from streams.events import format_time_ms
from tests.faults.harness import Deployment, Figures, evaluation_time
from tests.oracle.history import generate_history
from tests.oracle.kpis import events_processed
from tests.support.engine import WorkerProcess

MINUTES = float(os.environ.get("CRMKPI_SOAK_MINUTES", "60"))
RATE = float(os.environ.get("CRMKPI_SOAK_RATE", "300"))  # events/s
REBALANCE_EVERY = float(os.environ.get("CRMKPI_SOAK_REBALANCE_MINUTES", "10")) * 60

# The suite's 600 s per-test limit would end the soak: it is bounded by its own deadline.
pytestmark = [pytest.mark.integration, pytest.mark.soak,
              pytest.mark.timeout(int(MINUTES * 60 * 3 + 900))]
SAMPLE_EVERY = 15.0
CHUNK = 100
LEAK_BOUND = 1.3


def test_soak_with_periodic_rebalances(deployment: Deployment, figures: Figures) -> None:
    at_ms, at = evaluation_time()
    events = generate_history(41, end=at, n_events=int(MINUTES * 60 * RATE))
    anchor = deployment.add_worker()
    deployment.add_worker()
    feeder = deployment.feeder(events, chunk=CHUNK, pause=CHUNK / RATE)
    began = last_rebalance = time.monotonic()
    lags: list[int] = []
    anchor_rss: list[int] = []
    while feeder.is_alive() and time.monotonic() - began < MINUTES * 60 * 3:
        time.sleep(SAMPLE_EVERY)
        for worker in deployment.workers:
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        anchor_rss.append(rss(anchor))
        status = deployment.status()
        if status is not None:
            lags.append(int(status["lag"]))
        if time.monotonic() - last_rebalance > REBALANCE_EVERY:
            deployment.stop_worker(deployment.workers[-1])  # clean leave: partitions move
            deployment.add_worker()
            figures.fault("rebalance: the second worker replaced by a new one")
            last_rebalance = time.monotonic()
    feeder.join_checked(timeout=MINUTES * 60 * 3)
    figures.notes.update(max_lag=max(lags, default=0), lag_samples=len(lags),
                         anchor_rss_mib=[anchor_rss[len(anchor_rss) // 4] >> 20,
                                         anchor_rss[-1] >> 20])
    # Bounded lag: never more than two minutes of feed behind.
    assert max(lags, default=0) <= 120 * RATE, lags
    published = deployment.published()
    deployment.check_against_oracle(published, at_ms, at, figures,
                                    windows=WINDOWS, dimensions=(None,))

    # No leak: the anchor holding every partition uses about what a fresh worker does.
    for worker in deployment.workers[1:]:
        deployment.stop_worker(worker)
    expected = events_processed(published)
    held_by_anchor = rss_holding_everything(deployment, anchor, expected, at_ms)
    deployment.stop_worker(anchor)
    fresh = deployment.add_worker()
    held_by_fresh = rss_holding_everything(deployment, fresh, expected, at_ms)
    figures.notes.update(rss_mib_anchor_vs_fresh=[held_by_anchor >> 20, held_by_fresh >> 20])
    assert held_by_anchor <= LEAK_BOUND * held_by_fresh, (held_by_anchor, held_by_fresh)


def rss(worker: WorkerProcess) -> int:
    """The worker process's resident set size in bytes."""
    assert worker.process is not None
    return int(psutil.Process(worker.process.pid).memory_info().rss)


def rss_holding_everything(deployment: Deployment, worker: WorkerProcess, expected: int,
                           at_ms: int) -> int:
    """`worker`'s RSS once it is the only worker, settled, and has read every window (which
    decodes the state of every partition of both stages)."""
    deployment.settle(expected)
    for window in WINDOWS:
        code, _ = worker.get(f"/api/kpis?window={window}&at={format_time_ms(at_ms)}")
        assert code == 200, code
    code, _ = worker.get("/api/customers/at-risk")
    assert code == 200, code
    return rss(worker)
