"""Two crm-kpi deployments (namespaces) sharing one Redis must not see each other.

Reproduce: python3 -m pytest tests/security/test_isolation.py
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from crmkpi.embedded import EmbeddedProcess
from tests.faults.harness import Deployment, redis_db_url
from tests.support.engine import WorkerProcess
from tests.support.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def _status(worker: WorkerProcess) -> int:
    try:
        return worker.get("/api/status")[0]
    except (OSError, ValueError):
        return 0


def test_two_namespaces_on_one_redis_answer_independently(
        kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, tmp_path: Path) -> None:
    shared = redis_db_url(redis_server.address, 0)
    deployments = [Deployment(kafka_broker.bootstrap, shared, tmp_path / name, name)
                   for name in (f"iso-a-{uuid.uuid4().hex[:8]}", f"iso-b-{uuid.uuid4().hex[:8]}")]
    for deployment in deployments:
        deployment.env.redis_url = shared
    try:
        workers = [deployment.add_worker() for deployment in deployments]
        deadline = time.monotonic() + 40
        answers: list[int] = []
        while time.monotonic() < deadline:
            answers = [_status(worker) for worker in workers]
            if answers == [200, 200]:
                break
            time.sleep(1)
        assert answers == [200, 200], answers
    finally:
        for deployment in deployments:
            deployment.close()
