"""Smoke tests of the services the integration suite runs: Kafka, Tansu, Redis, Prometheus."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import UnknownError

from crmkpi.embedded import EmbeddedProcess
from tests.support.kafka import KafkaBroker
from tests.support.prometheus import PrometheusServer, run_promtool

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT = 30.0


async def produce(bootstrap: str, topic: str, values: list[bytes], idempotent: bool) -> None:
    """Send `values` to `topic` with acks from all in-sync replicas."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotent)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, group: str) -> list[bytes]:
    """Read `count` records of `topic` from the start within CONSUME_TIMEOUT, committing them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(CONSUME_TIMEOUT):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                values += [record.value for records in batches.values() for record in records]
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


def numbered(prefix: str, count: int) -> list[bytes]:
    """Distinct payloads `prefix-0` ... `prefix-{count-1}`."""
    return [f"{prefix}-{index}".encode() for index in range(count)]


async def test_produce_and_consume(broker: str, unique_name: str) -> None:
    values = numbered("event", 20)
    await produce(broker, unique_name, values, idempotent=False)

    consumed = await consume(broker, unique_name, len(values), group=unique_name)

    assert sorted(consumed) == sorted(values)


async def test_kafka_accepts_idempotent_producer(kafka_broker: KafkaBroker, unique_name: str) -> None:
    values = numbered("event", 20)
    await produce(kafka_broker.bootstrap, unique_name, values, idempotent=True)

    consumed = await consume(kafka_broker.bootstrap, unique_name, len(values), group=unique_name)

    assert sorted(consumed) == sorted(values)


async def test_kafka_keeps_data_across_restart_and_kill(tmp_path: Path, unique_name: str) -> None:
    kafka = KafkaBroker(tmp_path / "kafka")
    kafka.start()
    try:
        before_restart, before_kill = numbered("before-restart", 10), numbered("before-kill", 10)
        await produce(kafka.bootstrap, unique_name, before_restart, idempotent=True)
        await asyncio.to_thread(kafka.restart)
        await produce(kafka.bootstrap, unique_name, before_kill, idempotent=True)
        kafka.kill()
        await asyncio.to_thread(kafka.start)

        expected = before_restart + before_kill
        consumed = await consume(kafka.bootstrap, unique_name, len(expected), group=unique_name)
    finally:
        kafka.stop()

    assert sorted(consumed) == sorted(expected)
    assert len(kafka.start_seconds) == 3
    print(f"Apache Kafka start times (first, restart, after SIGKILL): {kafka.start_seconds}")


async def test_tansu_rejects_idempotent_producer(tansu_broker: EmbeddedProcess, unique_name: str) -> None:
    """Known Tansu 0.6.0 gap: InitProducerId v0 (all aiokafka sends) fails, so no idempotence."""
    with pytest.raises(UnknownError):
        await produce(tansu_broker.address, unique_name, [b"event"], idempotent=True)


def test_redis_set_nx_with_ttl(redis_server: EmbeddedProcess, unique_name: str) -> None:
    client = redis.Redis.from_url(redis_server.address)
    try:
        assert client.set(unique_name, "first", nx=True, ex=60)
        assert client.set(unique_name, "second", nx=True, ex=60) is None
        assert client.get(unique_name) == b"first"
        assert 0 < client.ttl(unique_name) <= 60
    finally:
        client.close()


def test_promtool_runs() -> None:
    result = run_promtool("--version")

    assert result.returncode == 0, result.stderr
    assert "promtool" in result.stdout + result.stderr


def test_prometheus_scrapes_itself(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "prometheus.yml")
    server.config_path.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: self\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not (up := server.query("up")) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        server.stop()

    assert [sample["value"][1] for sample in up] == ["1"]
