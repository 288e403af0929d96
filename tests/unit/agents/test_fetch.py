"""The bulk intake's delivery rules (agents/fetch.py), on a consumer that never connects."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from agents.fetch import GAP_CONFIRMATIONS, BatchingConsumer, BatchingTransport, queue_sink

EVENTS = TP("events", 0)


class Recorded:
    """What the consumer asked of Kafka: seeks and offsets the commits may skip."""

    def __init__(self) -> None:
        self.seeks: list[int] = []
        self.gaps: list[tuple[int, int]] = []


@pytest.fixture
def consumer() -> tuple[BatchingConsumer, Recorded]:
    app = faust.App("test-fetch", broker="kafka://127.0.0.1:1")
    transport = BatchingTransport(app.conf.broker_consumer, app)
    consumer: Any = transport.create_consumer(
        callback=app.topics.on_message, on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned)
    recorded = Recorded()

    async def seek(tp: TP, offset: int) -> None:
        recorded.seeks.append(offset)

    async def add_gap(tp: TP, start: int, end: int) -> None:
        recorded.gaps.append((start, end))

    consumer.highwater = lambda tp: 100
    consumer._seek = seek
    consumer._add_gap = add_gap
    app.topics.acks_enabled_for = lambda topic: True
    return consumer, recorded


def records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(EVENTS.topic, EVENTS.partition, offset, 0, 0, None, b"{}", None, 0, 2, [])
            for offset in offsets]


def take(consumer: BatchingConsumer, offsets: tuple[int, ...], generation: int = 1) -> list[int]:
    messages = asyncio.run(consumer._take_new(EVENTS, records(*offsets), generation))
    return [message.offset for message in messages]


def test_messages_carry_the_generation_they_were_fetched_in(consumer: Any) -> None:
    bulk, _ = consumer
    bulk.app.consumer_generation_id = 8  # a rebalance began after the fetch
    messages = asyncio.run(bulk._take_new(EVENTS, records(0, 1), 7))
    assert [(m.offset, m.generation_id) for m in messages] == [(0, 7), (1, 7)]


def test_records_that_follow_are_delivered_and_earlier_ones_again(consumer: Any) -> None:
    bulk, recorded = consumer
    bulk._expected[EVENTS] = 5
    assert (take(bulk, (5, 6)), take(bulk, (6, 7, 8)), bulk._expected[EVENTS]) == ([5, 6], [6, 7, 8], 9)
    assert recorded.seeks == []


def test_a_jump_after_a_drop_is_read_again_however_often_it_comes(consumer: Any) -> None:
    bulk, recorded = consumer
    bulk._expected[EVENTS] = 5
    delivered = []
    for _ in range(GAP_CONFIRMATIONS + 2):
        bulk._dropped.add(EVENTS)
        delivered += take(bulk, (7, 8))
    assert (delivered, recorded.seeks, recorded.gaps) == ([], [5] * (GAP_CONFIRMATIONS + 2), [])


def test_only_a_jump_seen_repeatedly_without_a_drop_becomes_a_gap(consumer: Any) -> None:
    bulk, recorded = consumer
    bulk._expected[EVENTS] = 5
    delivered = [take(bulk, (7, 8)) for _ in range(GAP_CONFIRMATIONS + 1)]
    assert delivered == [[]] * GAP_CONFIRMATIONS + [[7, 8]]
    assert (recorded.seeks, recorded.gaps, bulk._expected[EVENTS]) == ([5] * GAP_CONFIRMATIONS, [(5, 6)], 9)


def test_offsets_between_records_of_one_fetch_are_gaps(consumer: Any) -> None:
    bulk, recorded = consumer
    bulk._expected[EVENTS] = 5
    assert (take(bulk, (5, 7, 8)), recorded.gaps) == ([5, 7, 8], [(6, 6)])


def test_the_sink_waits_for_room_only_while_the_flow_is_active() -> None:
    async def scenario() -> list[int]:
        queue: asyncio.Queue[list[Any]] = asyncio.Queue()
        flow = FlowControlEvent(initially_suspended=False)
        put = queue_sink(queue, 1, flow)
        await put([1])
        blocked = asyncio.create_task(put([2]))
        await asyncio.sleep(0.02)
        sizes = [queue.qsize()]  # full: the second put waits
        flow.suspend()  # a rebalance: the fetcher must not stall
        await asyncio.wait_for(blocked, 1)
        return [*sizes, queue.qsize()]

    assert asyncio.run(scenario()) == [1, 2]
