"""Faust's Kafka consumer with a bulk path for the engine's input topics.

Faust hands every record to its agents one at a time (a task pair, a decode, a queue put and
an `Event` per record), which caps a worker at a few thousand records per second whatever the
work per record. The engine applies records in batches anyway, so for the topics registered
here the consumer hands each fetched partition's records over as one list. Everything else
Faust does stays: group membership, table changelogs and recovery, offset tracking, gaps, flow
control and seeks. The receiver tracks records as in-flight when it starts applying them and
acks them after (a rebalance waits for those, and commits only what was applied); records still
queued when a rebalance begins are dropped, and fetched again from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from itertools import pairwise
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode.utils.queues import FlowControlEvent, FlowControlQueue

log = logging.getLogger("crm-kpi.fetch")

# Receives the new records of one partition, in offset order.
BatchSink = Callable[[list[Message]], Awaitable[None]]


class BatchingConsumer(faust_aiokafka.Consumer):
    """Hands records of topics with a registered sink over in bulk; the rest as Faust does."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Deliver bulk topics' records to their sinks, then yield the others one by one.

        Bulk records fetched while the generation changed may predate the seek that ends a
        rebalance: they are dropped, and fetched again from the committed offsets.
        """
        fetched_in = self.app.consumer_generation_id
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # a rebalance began: drop, Faust seeks back to the commits
            await self.perform_seek()
            return
        generation = self.app.consumer_generation_id
        sinks: dict[str, BatchSink] = cast(BatchingTransport, self.transport).batch_sinks
        others: dict[TP, list[Any]] = {}
        for tp, batch in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            sink = sinks.get(tp.topic)
            if sink is None:
                others[tp] = batch
                continue
            if generation != fetched_in:
                continue
            messages = await self._take_new(tp, batch)
            if messages:
                await sink(messages)
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(others):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, to_message(tp, record)

    async def _take_new(self, tp: TP, batch: list[Any]) -> list[Message]:
        """The fetched records as messages; the read offset moves past them.

        Unlike Faust's fetcher, records at or below the read offset are not dropped as read
        already: around rebalances that offset can run ahead of the consumer's position, and
        applying a record twice changes nothing (kpis/partition.py), losing one does. And a
        jump past the next expected offset is first taken for records fetched and lost, so the
        partition is sought back and they come again; only the same jump seen twice becomes a
        gap (offsets that hold no record, e.g. transaction markers) the commits may skip.
        """
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        if not batch:
            return []
        read, first = self._read_offset[tp], batch[0].offset
        if read and first - read > 1:
            jump = (tp, read, first)
            if jump not in self._jumps_seen:
                self._jumps_seen.add(jump)
                log.warning("%s: offsets %s..%s skipped by the fetch; reading them again",
                            tp, read + 1, first - 1)
                await self.seek(tp, read)
                return []
            await self._skip(tp, read, first)
        for before, record in pairwise(batch):  # inside one fetch: only markers
            await self._skip(tp, before.offset, record.offset)
        self._read_offset[tp] = batch[-1].offset
        return [self._to_message(tp, record) for record in batch]

    async def _skip(self, tp: TP, read: int, offset: int) -> None:
        """Let the commits move across offsets between `read` and `offset` holding no record."""
        if offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, read + 1, offset)

    @cached_property
    def _jumps_seen(self) -> set[tuple[TP, int, int]]:
        return set()


def queue_sink(queue: FlowControlQueue[list[Message]], limit: int,
               flow_control: FlowControlEvent) -> BatchSink:
    """A sink that appends to `queue`, pausing the fetcher while `limit` lists wait in it.

    It never blocks inside the queue: Faust clears queues when a rebalance begins without
    waking blocked putters, which would leave the fetcher (and so the table recovery) stuck.
    """

    async def put(messages: list[Message]) -> None:
        while queue.qsize() >= limit and flow_control.is_active():
            await asyncio.sleep(0.005)
        queue.put_nowait(messages)

    return put


class BatchingTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `BatchingConsumer`; `batch_sinks` maps topic → sink."""

    Consumer = BatchingConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sinks: dict[str, BatchSink] = {}
