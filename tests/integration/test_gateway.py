"""The gateway against real Apache Kafka and Redis: what each answer leaves on the topics.

The module writes to topics of its own namespace, created once; each test notes their end
offsets first and reads only what was written after, and its dedup keys get their own prefix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition

from crmkpi.embedded import EmbeddedProcess
from streams.codec import decode_record
from streams.gateway.app import create_gateway
from streams.gateway.dedup import RedisDeduplicator, seen_prefix
from streams.gateway.providers import PROVIDERS
from streams.gateway.signing import signed_headers
from streams.publisher import EventPublisher, ensure_topics
from streams.topics import Topics
from tests.support.kafka import KafkaBroker
from tests.unit.gateway.support import (
    SAMPLES,
    SECRETS,
    SIGNS_BODY,
    TIMESTAMPED,
    fixture,
    forged,
    gateway_settings,
    post,
    translate,
)

pytestmark = pytest.mark.integration

TWENTY_MB = 20 * 1024 * 1024
RECOVERY_SECONDS = 120.0
PARTITIONS = 4
TOPICS = Topics(f"gateway-it-{uuid.uuid4().hex[:12]}")


class TopicWatch:
    """The records written to one topic since `mark()`."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.start: dict[TopicPartition, int] = {}

    async def _consumer(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        return consumer, partitions

    async def mark(self) -> None:
        """Remember the current end offsets."""
        consumer, partitions = await self._consumer()
        try:
            self.start = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()

    async def written(self) -> list[Any]:
        """Every record value (raw) written since `mark()`, read up to the current end."""
        consumer, partitions = await self._consumer()
        records = []
        try:
            end = await consumer.end_offsets(partitions)
            for partition in partitions:
                consumer.seek(partition, self.start.get(partition, 0))
            async with asyncio.timeout(30):
                while any([await consumer.position(p) < offset for p, offset in end.items()]):
                    batches = await consumer.getmany(timeout_ms=500)
                    records += [r for batch in batches.values() for r in batch]
        finally:
            await consumer.stop()
        return records

    async def events(self) -> list[dict[str, Any]]:
        """The canonical events written since `mark()`."""
        return [event for record in await self.written() for event in decode_record(record.value)]


@dataclass
class Live:
    """A gateway on real Kafka and Redis, and watches on its two topics."""

    client: TestClient
    events: TopicWatch
    dead_letters: TopicWatch

    async def post(
        self, provider: str, body: bytes, headers: dict[str, str] | None = None, **signing: Any
    ) -> ClientResponse:
        """POST `body`, signed as the provider would (unless `headers` are given)."""
        return await post(self.client, provider, body, headers, **signing)

    async def nothing_written(self) -> bool:
        return await self.events.written() == [] and await self.dead_letters.written() == []


@pytest.fixture
async def live(
    kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, unique_name: str
) -> AsyncIterator[Live]:
    bootstrap = kafka_broker.bootstrap
    await ensure_topics(bootstrap, PARTITIONS, topics=TOPICS)
    publisher = EventPublisher(bootstrap, idempotence=True, topics=TOPICS)
    await publisher.start()
    deduplicator = RedisDeduplicator.from_url(redis_server.address, seen_prefix(unique_name))
    client = TestClient(TestServer(create_gateway(gateway_settings(), publisher, deduplicator)))
    await client.start_server()
    watches = TopicWatch(bootstrap, TOPICS.events), TopicWatch(bootstrap, TOPICS.deadletter)
    for watch in watches:
        await watch.mark()
    try:
        yield Live(client, *watches)
    finally:
        await client.close()
        await publisher.stop()
        await deduplicator.close()


def expected_ids(provider: str) -> list[tuple[str, str, str]]:
    """(source, id, type) of the canonical events the provider's sample translates to."""
    return identities(translate(provider, fixture(SAMPLES[provider])).events)


def identities(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((e["source"], e["id"], e["type"]) for e in events)


async def succeeded(response: ClientResponse, provider: str) -> bool:
    return response.status == (200 if provider == "salesforce" else 202)


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_valid_delivery_lands_on_the_events_topic(live: Live, provider: str) -> None:
    response = await live.post(provider, fixture(SAMPLES[provider]))
    assert await succeeded(response, provider), await response.text()
    assert identities(await live.events.events()) == expected_ids(provider)


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_same_delivery_three_times_is_one_event(live: Live, provider: str) -> None:
    for _ in range(3):
        assert await succeeded(await live.post(provider, fixture(SAMPLES[provider])), provider)
    assert identities(await live.events.events()) == expected_ids(provider)


async def test_concurrent_duplicates_are_one_event(live: Live) -> None:
    body = fixture(SAMPLES["hubspot"])
    responses = await asyncio.gather(*(live.post("hubspot", body) for _ in range(3)))
    answers = sorted([await r.json() for r in responses], key=lambda a: -a["accepted"])
    assert answers == [{"accepted": 5, "duplicates": 0}] + [{"accepted": 0, "duplicates": 5}] * 2
    assert identities(await live.events.events()) == expected_ids("hubspot")


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_wrong_credentials_are_401_and_write_nothing(live: Live, provider: str) -> None:
    body, secret = forged(provider, fixture(SAMPLES[provider]))
    assert (await live.post(provider, body, secret=secret)).status == 401
    assert await live.nothing_written()


@pytest.mark.parametrize("provider", SIGNS_BODY)
async def test_tampered_body_is_401_and_writes_nothing(live: Live, provider: str) -> None:
    body = fixture(SAMPLES[provider])
    url = str(live.client.make_url(f"/webhooks/{provider}"))
    headers = signed_headers(provider, SECRETS[provider], body, url=url)
    tampered = body.replace(b"0", b"1", 1)
    assert (await live.post(provider, tampered, headers=headers)).status == 401
    assert await live.nothing_written()


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_stale_timestamp_is_401_and_writes_nothing(live: Live, provider: str) -> None:
    response = await live.post(provider, fixture(SAMPLES[provider]), now=time.time() - 600)
    assert response.status == 401
    assert await live.nothing_written()


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_twenty_megabytes_is_413(live: Live, provider: str) -> None:
    response = await live.post(provider, b"x" * TWENTY_MB, headers={"Content-Type": "text/plain"})
    assert response.status == 413
    assert await live.nothing_written()


async def test_untranslatable_payload_is_dead_lettered_raw(live: Live) -> None:
    body = fixture("stripe/subscription_created_no_customer.json")
    response = await live.post("stripe", body)
    assert response.status == 422
    [record] = await live.dead_letters.written()
    headers = dict(record.headers)
    assert (record.value, headers["provider"]) == (body, b"stripe")
    assert headers["reason"] == b"data.object.customer: is required"
    assert await live.events.written() == []


async def test_readiness(live: Live) -> None:
    response = await live.client.get("/readyz")
    assert (response.status, await response.json()) == (200, {"kafka": True, "redis": True})


async def test_kafka_down_is_503_then_the_retry_counts_once(live: Live, kafka_broker: KafkaBroker) -> None:
    """Runs last in this module: it stops and restarts the session's broker."""
    body = fixture(SAMPLES["stripe"])
    await asyncio.to_thread(kafka_broker.stop)
    try:
        started = time.monotonic()
        response = await live.post("stripe", body)
        assert response.status == 503, await response.text()
        assert time.monotonic() - started < 10
        assert (await live.client.get("/readyz")).status == 503
    finally:
        await asyncio.to_thread(kafka_broker.start)
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (response := await live.post("stripe", body)).status == 503:
        assert time.monotonic() < deadline, "the retried delivery was never accepted"
        await asyncio.sleep(1)
    assert response.status == 202
    assert identities(await live.events.events()) == expected_ids("stripe")
