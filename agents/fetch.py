"""Faust's Kafka consumer with a bulk path for the engine's input topics.

Faust hands every record to its agents one at a time (a task pair, a decode, a queue put and
an `Event` per record), which caps a worker at a few thousand records per second whatever the
work per record. The engine applies records in batches anyway, so for the topics registered
here the consumer hands each fetched partition's records over as one list. Everything else
Faust does stays: group membership, table changelogs and recovery, offset commits, flow
control and seeks.

The bulk path also closes a hole in Faust's own one: a partition's records are delivered
without a hole from where it was last sought to. Faust takes the offset it seeks to for the
last record read, so after a fetch of exactly that record is dropped (around a rebalance) the
next record passes as the following one, and its commit (which checks the acked offsets
against the committed one with the same off-by-one) skips the dropped record for good.

For the same reason nothing delivered may be dropped later: the queues between this consumer
and the appliers are not Faust's flow-controlled ones (Faust clears those when it resumes the
flow, which happens after the seek that ends a rebalance, so the first records fetched from
the committed offsets could be discarded). Every message carries the generation it was
fetched in instead, and the applier drops those of an earlier generation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from itertools import pairwise
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode.utils.queues import FlowControlEvent

log = logging.getLogger("crm-kpi.fetch")

# How often the same jump past the next expected offset must come, with no fetched records of
# the partition dropped before, to be taken for offsets without a record.
GAP_CONFIRMATIONS = 3
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
        if not self.flow_active:  # a rebalance began: drop, and seek back to the commits
            await self.perform_seek()
            return
        generation = self.app.consumer_generation_id
        sinks = self._sinks
        others: dict[TP, list[Any]] = {}
        taken: set[TP] = set()
        try:
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
                taken.add(tp)
                messages = await self._take_new(tp, batch, fetched_in)
                if messages:
                    await sink(messages)
        finally:  # what was fetched and not taken must come again: see _take_new
            self._dropped.update(tp for tp, batch in records.items()
                                 if batch and tp.topic in sinks and tp not in taken)
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(others):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, to_message(tp, record)

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset (bulk ones without one: to the start),
        and expect each bulk partition's next record there."""
        await super().perform_seek()
        bulk = [tp for tp in self.assignment() if tp.topic in self._sinks]
        uncommitted = [tp for tp in bulk if not self._committed_offset.get(tp)]
        # Kafka's seek to the committed offset leaves these where they were.
        earliest = await self.earliest_offsets(*uncommitted) if uncommitted else {}
        for tp in uncommitted:
            await self.seek(tp, earliest[tp])
        self._dropped.clear()
        self._expected.clear()
        self._expected.update(
            (tp, self._committed_offset.get(tp) or earliest[tp]) for tp in bulk)

    async def _take_new(self, tp: TP, batch: list[Any], generation: int) -> list[Message]:
        """The fetched records as messages of `generation` (the one they were fetched in, even
        if a rebalance began meanwhile), if they follow what was delivered before.

        Records before the next expected offset are delivered again: applying a record twice
        changes nothing (kpis/partition.py), losing one does. A jump past it, after fetched
        records of the partition were dropped, is those records: the partition is sought back
        and they come again. Without a drop, only the same jump seen GAP_CONFIRMATIONS times
        becomes a gap (offsets that hold no record, e.g. transaction markers) the commits skip.
        """
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        if not batch:
            return []
        expected, first = self._expected.get(tp), batch[0].offset
        dropped = tp in self._dropped
        self._dropped.discard(tp)
        if expected is not None and first > expected:
            jump = (tp, expected, first)
            if dropped or self._jumps_seen[jump] < GAP_CONFIRMATIONS:
                if not dropped:
                    self._jumps_seen[jump] += 1
                log.warning("%s: offsets %s..%s were not delivered; reading them again",
                            tp, expected, first - 1)
                await self.seek(tp, expected)
                return []
            log.warning("%s: offsets %s..%s hold no record; skipped", tp, expected, first - 1)
            await self._skip(tp, expected, first)
        for before, record in pairwise(batch):  # inside one fetch: only markers
            await self._skip(tp, before.offset + 1, record.offset)
        last = batch[-1].offset
        self._expected[tp] = max(expected or 0, last + 1)
        self._read_offset[tp] = last
        messages: list[Message] = [self._to_message(tp, record) for record in batch]
        for message in messages:
            message.generation_id = generation
        return messages

    async def _skip(self, tp: TP, start: int, end: int) -> None:
        """Let the commits move across the offsets `start`..`end - 1`, which hold no record."""
        if end > start and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, start, end - 1)

    @property
    def _sinks(self) -> dict[str, BatchSink]:
        return cast(BatchingTransport, self.transport).batch_sinks

    @cached_property
    def _expected(self) -> dict[TP, int]:
        return {}

    @cached_property
    def _jumps_seen(self) -> Counter[tuple[TP, int, int]]:
        return Counter()

    @cached_property
    def _dropped(self) -> set[TP]:
        """Bulk partitions whose fetched records were dropped since they were last taken."""
        return set()


def queue_sink(queue: asyncio.Queue[list[Message]], limit: int,
               flow_control: FlowControlEvent) -> BatchSink:
    """A sink that appends to `queue`, pausing the fetcher while `limit` lists wait in it.

    It does not pause while a rebalance holds the applier (`flow_control` suspended): the
    fetcher must go on, for the table recovery.
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
