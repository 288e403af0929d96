"""F5/F6: the Kafka broker stops (cleanly, or killed) for longer than the session timeout and
comes back: the worker survives, resumes, and loses nothing.

The feeder retries a chunk whose write fails, as any producer would, so some chunks land
twice: the engine must count each event once.

Reproduce: python3 -m pytest tests/faults/test_broker_restart.py -m slow
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import Deployment, Figures, evaluation_time
from tests.oracle.history import generate_history
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_SECONDS = 15.0  # longer than the worker's 10 s session timeout


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_outage_mid_stream(deployment: Deployment, figures: Figures,
                                  kafka_broker: KafkaBroker, how: str) -> None:
    began = time.monotonic()
    at_ms, at = evaluation_time()
    events = generate_history(70, end=at, n_events=8_000)
    worker = deployment.add_worker()
    feeder = deployment.feeder(events, chunk=100, pause=0.05)
    deployment.wait_processed(int(0.3 * len(events)))
    try:
        kafka_broker.stop() if how == "stop" else kafka_broker.kill()
        figures.fault(f"broker {'SIGTERM' if how == 'stop' else 'SIGKILL'}, "
                      f"down {OUTAGE_SECONDS:.0f} s")
        time.sleep(OUTAGE_SECONDS)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    finally:
        kafka_broker.start()
    feeder.join_checked()
    figures.notes["feeder_retries"] = feeder.retries
    deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
    assert worker in deployment.workers and worker.process.poll() is None
    figures.seconds = time.monotonic() - began
