"""F10: poison records written straight to the events topic are dead-lettered, the stream flows.

Records a third-party producer could write: malformed JSON, a JSON number, a null value, a
wrong schema, an unknown type, an unknown currency, a batch mixing a good and a bad event.
Each bad event goes to `<ns>.deadletter` with the reason and the partition and offset it came
from, `events_rejected` counts it, and the valid events around it are applied as usual.

Reproduce: python3 -m pytest tests/faults/test_poison.py
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from crmkpi.embedded import EmbeddedProcess
from streams.events import format_time_ms
from streams.topics import partition_for, routing_key
from tests.faults.conftest import FIGURES
from tests.faults.harness import (
    PARTITIONS,
    Deployment,
    Figures,
    evaluation_time,
    read_records,
    valid_events,
)
from tests.oracle.history import generate_history
from tests.support.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def _event(event_id: str, event_type: str, data: dict[str, Any], at_ms: int) -> dict[str, Any]:
    return {"id": event_id, "source": "poison-test", "type": event_type,
            "occurred_at": format_time_ms(at_ms - 1_800_000), "data": data}


def poison_records(at_ms: int) -> list[tuple[str, bytes | None, int]]:
    """(what, record value, dead letters it must produce)."""
    good = _event("mixed-good", "lead.created", {"lead_id": "poison-lead-1"}, at_ms)
    bad = _event("mixed-bad", "deal.won", {"amount": 10}, at_ms)  # no deal_id
    return [
        ("malformed JSON", b'{"id": "broken", "type": ', 1),
        ("a JSON number", b"42", 1),
        ("a JSON string", b'"deal.won"', 1),
        ("a null value", None, 1),
        ("wrong schema (deal.won without deal_id)", orjson.dumps(bad), 1),
        ("unknown type", orjson.dumps(_event("unknown-type", "deal.teleported",
                                             {"deal_id": "d"}, at_ms)), 1),
        ("unknown currency XYZ", orjson.dumps(_event("xyz", "deal.won", {
            "deal_id": "poison-deal", "amount": 10, "currency": "XYZ"}, at_ms)), 1),
        ("data is a list", orjson.dumps({**_event("data-list", "lead.created", {}, at_ms),
                                         "data": [1, 2]}), 1),
        ("a batch of one good and one bad event", orjson.dumps([good, bad]), 1),
        ("a batch holding a number", b'[1, {"id": 2}]', 2),
        ("deeply nested JSON", b"[" * 5000 + b"]" * 5000, 1),
    ]


@dataclass
class PoisonRun:
    deployment: Deployment
    sent: list[tuple[str, int, int, int]] = field(default_factory=list)  # what, partition, offset, n
    dead_letters: list[Any] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    figures: Figures = field(default_factory=lambda: Figures("poison records"))


async def _write_poison(bootstrap: str, topic: str, at_ms: int) -> list[tuple[str, int, int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    sent = []
    try:
        for index, (what, value, dead) in enumerate(poison_records(at_ms)):
            partition = index % PARTITIONS
            if what.startswith("a batch of one good"):
                good = orjson.loads(value or b"")[0]
                partition = partition_for(routing_key(good), PARTITIONS)
            meta = await (await producer.send(topic, value, key=b"poison", partition=partition))
            sent.append((what, meta.partition, meta.offset, dead))
    finally:
        await producer.stop()
    return sent


@pytest.fixture(scope="module")
def poison_run(kafka_broker: KafkaBroker, redis_server: EmbeddedProcess,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoisonRun]:
    """One worker; valid events, then the poison records, then more valid events."""
    home = tmp_path_factory.mktemp("poison")
    deployment = Deployment(kafka_broker.bootstrap, redis_server.address, home,
                            f"poison-{uuid.uuid4().hex[:12]}")
    run = PoisonRun(deployment)
    began = time.monotonic()
    try:
        at_ms, at = evaluation_time()
        events = generate_history(40, end=at, n_events=3_000)
        deployment.add_worker()
        half = len(events) // 2
        deployment.feeder(events[:half], chunk=200, pause=0.01).join_checked()
        run.sent = asyncio.run(_write_poison(deployment.bootstrap, deployment.topics.events, at_ms))
        run.figures.fault(f"{len(run.sent)} poison records written straight to the events topic")
        deployment.feeder(events[half:], chunk=200, pause=0.01).join_checked()
        published = deployment.published()
        deployment.check_against_oracle(published, at_ms, at, run.figures)
        run.status = dict(deployment.status() or {})
        expected = sum(n for *_, n in run.sent)
        deadline = time.monotonic() + 30
        while len(run.dead_letters) < expected and time.monotonic() < deadline:
            run.dead_letters = read_records(deployment.bootstrap, deployment.topics.deadletter)
            time.sleep(0.5)
        run.figures.notes.update(dead_letters=len(run.dead_letters),
                                 events_rejected=run.status.get("events_rejected"),
                                 valid_published=len(valid_events(published)))
        run.figures.seconds = time.monotonic() - began
        yield run
    finally:
        FIGURES.append(run.figures)
        deployment.close()


def test_valid_events_around_the_poison_equal_the_oracle(poison_run: PoisonRun) -> None:
    assert poison_run.status["lag"] == 0
    assert poison_run.figures.lost == 0 and poison_run.figures.notes["kpi_mismatches"] == 0
    assert all(w.process is not None and w.process.poll() is None
               for w in poison_run.deployment.workers), "the worker crashed on poison"


def test_every_bad_event_is_one_dead_letter_with_provenance(poison_run: PoisonRun) -> None:
    expected = sum(n for *_, n in poison_run.sent)
    assert len(poison_run.dead_letters) == expected
    assert poison_run.status["events_rejected"] == expected
    by_origin: dict[tuple[bytes, bytes], int] = {}
    for record in poison_run.dead_letters:
        headers = dict(record.headers)
        assert headers["reason"], headers
        origin = (headers["partition"], headers["offset"])
        by_origin[origin] = by_origin.get(origin, 0) + 1
    for what, partition, offset, dead in poison_run.sent:
        origin = (str(partition).encode(), str(offset).encode())
        assert by_origin.get(origin) == dead, f"{what}: {by_origin.get(origin)} dead letters"


def test_dead_letters_carry_the_raw_value_and_the_reason(poison_run: PoisonRun) -> None:
    texts = b" | ".join(dict(r.headers)["reason"] for r in poison_run.dead_letters)
    assert b"not JSON" in texts
    assert b"data.deal_id" in texts
    assert b"unknown currency 'XYZ'" in texts
    assert b"unknown event type" in texts
    malformed = next(r for r in poison_run.dead_letters if b"not JSON" in dict(r.headers)["reason"]
                     and r.value.startswith(b'{"id": "broken"'))
    assert malformed.value == b'{"id": "broken", "type": '


def test_dead_letters_name_their_source_topic(poison_run: PoisonRun) -> None:
    topics = {dict(r.headers).get("topic") for r in poison_run.dead_letters}
    assert topics == {poison_run.deployment.topics.events.encode()}


@pytest.mark.slow
@pytest.mark.parametrize("poison", [
    {"type": "lead.created", "data": {"lead_id": "l-1", "currency": 5}},
    {"type": ["lead.created"], "data": {"lead_id": "l-1"}},
], ids=["non-string currency", "list as type"])
def test_poison_that_raises_outside_invalid_event_is_dead_lettered(
        kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, tmp_path: Any,
        unique_name: str, poison: dict[str, Any]) -> None:
    deployment = Deployment(kafka_broker.bootstrap, redis_server.address, tmp_path, unique_name)
    try:
        at_ms, _ = evaluation_time()
        deployment.add_worker()
        bad = {**_event("poison", "lead.created", {}, at_ms), **poison}
        after = _event("after-poison", "lead.created", {"lead_id": "l-1"}, at_ms)
        asyncio.run(_write_values(deployment.bootstrap, deployment.topics.events,
                                  [orjson.dumps(bad), orjson.dumps(after)]))
        deployment.settle(1, timeout=45, quiet=10)
        dead = read_records(deployment.bootstrap, deployment.topics.deadletter)
        assert len(dead) == 1
    finally:
        deployment.close()


async def _write_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Write records to partition 0, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await (await producer.send(topic, value, key=b"poison", partition=0))
    finally:
        await producer.stop()
