"""F1/F2: workers killed with SIGKILL mid-stream, then restarted: KPIs equal the oracle.

Each event is applied once even though Kafka redelivers everything after the last committed
offset to the partitions' next owner: the state records carry the stream position of the
last event they hold (docs/architecture.md), so a redelivered event is skipped.

Reproduce: python3 -m pytest tests/faults/test_worker_crashes.py
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import (
    Deployment,
    Figures,
    evaluation_time,
)
from tests.oracle.history import generate_history
from tests.oracle.kpis import events_processed

pytestmark = pytest.mark.integration


def test_kill9_mid_stream_then_restart(deployment: Deployment, figures: Figures) -> None:
    """F1: the only worker is killed once ~30% of the stream is applied, then restarted."""
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(20, end=at, n_events=8_000)
    victim = deployment.add_worker()
    feeder = deployment.feeder(events, chunk=100, pause=0.1)
    deployment.wait_processed(int(0.3 * len(events)))
    deployment.crash(victim, figures)
    figures.fault("SIGKILL the only worker at ~30% processed")
    deployment.add_worker()
    feeder.join_checked()
    deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
    figures.seconds = time.monotonic() - began


def test_kill9_one_of_two_workers_then_restart(deployment: Deployment, figures: Figures) -> None:
    """F1 with a survivor: it takes the victim's partitions, then gives them back to the
    restarted worker while keeping its own through both rebalances."""
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(21, end=at, n_events=8_000)
    deployment.add_worker()
    victim = deployment.add_worker()
    feeder = deployment.feeder(events, chunk=100, pause=0.15)
    processed = deployment.wait_processed(int(0.3 * len(events)))
    deployment.crash(victim, figures)
    figures.fault("SIGKILL worker 2 of 2 at ~30% processed")
    # The survivor takes every partition and works on alone for a while.
    deployment.wait_processed(min(processed + 1000, events_processed(events)))
    deployment.add_worker()
    feeder.join_checked()
    deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
    figures.seconds = time.monotonic() - began


@pytest.mark.slow
def test_repeated_kills_across_three_workers(deployment: Deployment, figures: Figures) -> None:
    """F2: three SIGKILLs of different workers while events are produced, each restarted."""
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(22, end=at, n_events=20_000)
    for _ in range(3):
        deployment.add_worker()
    feeder = deployment.feeder(events, chunk=100, pause=0.25)
    for round_number, share in enumerate((0.2, 0.45, 0.7)):
        feeder.wait_for_fraction(share)
        victim = deployment.workers[round_number % len(deployment.workers)]
        deployment.crash(victim, figures)
        figures.fault(f"SIGKILL a worker at {share:.0%} published")
        time.sleep(3)
        deployment.add_worker()
    feeder.join_checked()
    deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
    figures.seconds = time.monotonic() - began
