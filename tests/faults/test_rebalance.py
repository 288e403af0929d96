"""F3: clean scale up and down under load (Kafka's test_rebalance_simple sequence).

Each worker keeps the state of the partitions it keeps through every rebalance, forgets the
ones assigned elsewhere, and recovers newly assigned ones from the changelog.

Reproduce: python3 -m pytest tests/faults/test_rebalance.py -m slow
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_scale_up_and_down_under_load(deployment: Deployment, figures: Figures) -> None:
    """add1 → add2 → add3 → stop2 → add2' → stop1 → stop3 while events are produced."""
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(30, end=at, n_events=16_000)
    first = deployment.add_worker()
    feeder = deployment.feeder(events, chunk=100, pause=0.4)
    feeder.wait_for_fraction(0.1)
    second = deployment.add_worker()
    figures.fault("add worker 2")
    feeder.wait_for_fraction(0.25)
    third = deployment.add_worker()
    figures.fault("add worker 3")
    feeder.wait_for_fraction(0.4)
    deployment.stop_worker(second)
    figures.fault("stop worker 2 (SIGTERM)")
    feeder.wait_for_fraction(0.55)
    deployment.add_worker()
    figures.fault("add worker 2'")
    feeder.wait_for_fraction(0.7)
    deployment.stop_worker(first)
    figures.fault("stop worker 1 (SIGTERM)")
    feeder.wait_for_fraction(0.85)
    deployment.stop_worker(third)
    figures.fault("stop worker 3 (SIGTERM)")
    feeder.join_checked()
    deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
    figures.seconds = time.monotonic() - began
