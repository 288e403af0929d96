"""Publishing canonical events to Kafka: batched per partition, acknowledged by all replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.codec import encode_batches
from streams.topics import Topics, partition_for, routed_for, routing_key

DEFAULT_TOPICS = Topics()


async def ensure_topics(
    bootstrap: str, partitions: int, replication: int = 1, topics: Topics = DEFAULT_TOPICS
) -> None:
    """Create the events, customer and dead-letter topics when they do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=replication)
            for name in (topics.events, topics.customers, topics.deadletter)
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by another
                await admin.create_topics(missing)
    finally:
        await admin.close()


class EventPublisher:
    """Writes validated canonical events to the events topic, keyed by their entity."""

    def __init__(
        self, bootstrap: str, *, idempotence: bool = True, linger_ms: int = 5,
        topics: Topics = DEFAULT_TOPICS,
    ) -> None:
        self.topics = topics
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=idempotence,
            linger_ms=linger_ms,
            max_batch_size=1024 * 1024,
            max_request_size=2 * 1024 * 1024,
            compression_type=None,
        )
        self._partitions = 0

    async def start(self) -> None:
        """Connect and learn the partition count of the events topic."""
        await self.producer.start()
        found = await self.producer.partitions_for(self.topics.events)
        self._partitions = len(found)

    async def stop(self) -> None:
        """Flush and disconnect."""
        await self.producer.stop()

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Write events and wait until every record is acknowledged; returns the event count."""
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for event in events:
            partition = partition_for(routing_key(event), self._partitions)
            by_partition[partition].append(orjson.dumps(event))
        headers = [routed_for(self._partitions)]
        sends = [
            await self.producer.send(self.topics.events, record, partition=partition,
                                     headers=headers)
            for partition, encoded in by_partition.items()
            for record in encode_batches(encoded)
        ]
        await asyncio.gather(*sends)
        return sum(len(encoded) for encoded in by_partition.values())

    async def dead_letter(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        """Write an unprocessable payload, raw, with provenance headers; wait for the ack."""
        future = await self.producer.send(self.topics.deadletter, value, headers=list(headers))
        await future


async def open_publisher(
    bootstrap: str, *, partitions: int, replication: int, idempotence: bool, topics: Topics
) -> EventPublisher:
    """Create the topics if needed and return a started publisher."""
    await ensure_topics(bootstrap, partitions, replication, topics)
    publisher = EventPublisher(bootstrap, idempotence=idempotence, topics=topics)
    await publisher.start()
    return publisher
