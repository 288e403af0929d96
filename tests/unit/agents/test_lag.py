"""Consumer lag of a worker: a partition not fetched since its assignment is not lag-free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import SimpleNamespace

import pytest
from faust.types import TP

from agents.app import Worker
from crmkpi.discovery import Services
from crmkpi.settings import Settings


class StubConsumer:
    """What `Worker.lag` reads of Faust's consumer: fetched highwaters, the broker's end
    offsets (ListOffsets), and the committed offsets."""

    def __init__(self, fetched: Mapping[TP, int], broker_ends: Mapping[TP, int] | None,
                 committed: Mapping[TP, int]) -> None:
        self.fetched = dict(fetched)
        self.broker_ends = broker_ends
        self._committed_offset = dict(committed)

    def highwater(self, tp: TP) -> int | None:
        return self.fetched.get(tp)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.broker_ends is None:
            raise ConnectionError("broker unreachable")
        return {tp: self.broker_ends[tp] for tp in tps}


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Worker:
    """A worker (never started) owning partitions 0 and 1 of both input topics."""
    worker = Worker(Settings(), Services(kafka_bootstrap="127.0.0.1:1",
                                         redis_url="redis://127.0.0.1:1/0"))
    monkeypatch.setattr(worker, "owned", lambda topic=None: [0, 1])
    return worker


def events(partition: int) -> TP:
    return TP("crm-kpi.events", partition)


def customers(partition: int) -> TP:
    return TP("crm-kpi.customers", partition)


def test_unfetched_partitions_lag_by_the_broker_end_offsets(worker: Worker) -> None:
    # Events partition 0 was fetched (highwater 40) and applied up to 30. The rest were
    # just assigned: committed at 20 (events 1) and 5 (customers 0), nothing fetched yet.
    worker.app.consumer = StubConsumer(  # type: ignore[assignment]
        fetched={events(0): 40},
        broker_ends={events(1): 50, customers(0): 12, customers(1): 0},
        committed={events(1): 20, customers(0): 5},
    )
    worker.events.applier.done([SimpleNamespace(partition=0, offset=29)])

    assert worker.lag() == {("crm-kpi.events", 0): 10}  # the unfetched ones: unknown yet
    asyncio.run(worker.list_unfetched_ends())

    assert worker.lag() == {("crm-kpi.events", 0): 10, ("crm-kpi.events", 1): 30,
                            ("crm-kpi.customers", 0): 7, ("crm-kpi.customers", 1): 0}


def test_lag_of_unfetched_partitions_stays_unknown_when_the_broker_is_unreachable(
        worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    worker.app.consumer = StubConsumer(  # type: ignore[assignment]
        fetched={events(0): 40, events(1): 8}, broker_ends=None, committed={events(1): 8})

    with caplog.at_level(logging.WARNING, logger="crm-kpi.worker"):
        asyncio.run(worker.list_unfetched_ends())

    assert worker.lag() == {("crm-kpi.events", 0): 40, ("crm-kpi.events", 1): 0}
    assert "could not list the end offsets of 2 partitions: broker unreachable" in caplog.text
