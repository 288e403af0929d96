"""F9: Redis goes down: the gateway answers 503 (the provider retries), the worker keeps
aggregating what reaches Kafka, and when Redis is back the API answers again, with nothing
lost and the retried deliveries counted once.

The Redis here is non-persistent (as `crm-kpi up`'s): it comes back empty, so the gateway has
forgotten the ids it saw and a provider's retry of an old delivery is published again; the
worker's own dedup absorbs it.

Reproduce: python3 -m pytest tests/faults/test_redis_down.py
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmkpi.embedded import EmbeddedProcess, start_redis
from streams.events import format_time_ms
from tests.faults.harness import (
    Deployment,
    Figures,
    GatewayProcess,
    bounded_poll,
    end_offsets,
    evaluation_time,
)
from tests.oracle.history import generate_history
from tests.oracle.kpis import events_processed
from tests.support.kafka import KafkaBroker
from tests.unit.gateway.support import SECRETS

pytestmark = pytest.mark.integration
PROCESSED = re.compile(r'^crm_events_processed_total\{partition="\d+"\} (\S+)$', re.M)
DELIVERY = 20


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedProcess]:
    server = start_redis(data_dir=tmp_path / "redis")
    yield server
    server.stop()


def metrics_processed(url: str) -> int:
    """Events processed as this worker's /metrics says (no Redis involved)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310
        return sum(int(float(v)) for v in PROCESSED.findall(response.read().decode()))


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_redis_down_then_back(kafka_broker: KafkaBroker, own_redis: EmbeddedProcess,
                              tmp_path: Path, unique_name: str, figures: Figures) -> None:
    began = time.monotonic()
    redis_port = int(own_redis.address.rsplit(":", 1)[1].split("/")[0])
    deployment = Deployment(kafka_broker.bootstrap, own_redis.address, tmp_path, unique_name)
    gateway = GatewayProcess(deployment.env, tmp_path, SECRETS["events"])
    redis = own_redis
    try:
        at_ms, at = evaluation_time()
        events = generate_history(80, end=at, n_events=3_000, duplicate_rate=0)
        cut_a, cut_b = int(len(events) * 0.4), int(len(events) * 0.8)
        part_a, part_b, part_c = events[:cut_a], events[cut_a:cut_b], events[cut_b:]
        deliveries_a = [part_a[i:i + DELIVERY] for i in range(0, len(part_a), DELIVERY)]
        deliveries_c = [part_c[i:i + DELIVERY] for i in range(0, len(part_c), DELIVERY)]
        worker = deployment.add_worker()
        gateway.start()
        for delivery in deliveries_a:
            assert gateway.post_events(delivery)[0] == 202
        deployment.settle(events_processed(part_a))

        redis.stop()
        figures.fault("Redis stopped (SIGTERM)")
        ends = end_offsets(deployment.bootstrap, deployment.topics.events)
        answers = [gateway.post_events(d) for d in deliveries_c[:5]]
        assert [status for status, _ in answers] == [503] * 5, answers
        assert end_offsets(deployment.bootstrap, deployment.topics.events) == ends
        assert http_status(gateway.url + "/readyz") == 503
        figures.notes["api_status_while_redis_down"] = http_status(
            worker.url + f"/api/kpis?window=30d&at={format_time_ms(at_ms)}")
        deployment.feeder(part_b, chunk=100).join_checked()
        bounded_poll(lambda: metrics_processed(worker.url) == events_processed(part_a + part_b),
                     timeout=60, what="the worker aggregating while Redis is down")
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()

        redis = start_redis(port=redis_port, data_dir=tmp_path / "redis-again")
        figures.fault("Redis restarted, empty (non-persistent)")
        bounded_poll(lambda: http_status(gateway.url + "/readyz") == 200, timeout=30,
                     what="gateway ready again")
        for delivery in deliveries_c + deliveries_a[:5]:  # C's 503s retried; 5 old retries
            assert gateway.post_events(delivery)[0] == 202
        bounded_poll(lambda: http_status(
            worker.url + f"/api/kpis?window=30d&at={format_time_ms(at_ms)}") == 200,
            timeout=30, what="API answering again")
        figures.notes["gateway_503_while_down"] = 5
        deployment.check_against_oracle(deployment.published(), at_ms, at, figures)
        figures.seconds = time.monotonic() - began
    finally:
        gateway.stop()
        deployment.close()
        redis.stop()


def test_api_answers_503_not_500_while_redis_is_down(
        kafka_broker: KafkaBroker, own_redis: EmbeddedProcess, tmp_path: Path,
        unique_name: str) -> None:
    deployment = Deployment(kafka_broker.bootstrap, own_redis.address, tmp_path, unique_name)
    try:
        worker = deployment.add_worker()
        bounded_poll(lambda: deployment.status() is not None, timeout=90, what="worker up")
        own_redis.stop()
        assert http_status(worker.url + "/api/status") == 503
    finally:
        deployment.close()
