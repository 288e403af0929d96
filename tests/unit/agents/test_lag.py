"""Consumer lag of a worker: a partition not fetched since its assignment is not lag-free."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import pytest
from faust.types import TP

from agents.app import UNFETCHED_LAG, Worker
from crmkpi.discovery import Services
from crmkpi.settings import Settings


class StubConsumer:
    """What `Worker.lag` reads of Faust's consumer: highwaters known from fetches, and the
    committed offsets."""

    def __init__(self, fetched: Mapping[TP, int], committed: Mapping[TP, int]) -> None:
        self.fetched = dict(fetched)
        self._committed_offset = dict(committed)

    def highwater(self, tp: TP) -> int | None:
        return self.fetched.get(tp)


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Worker:
    """A worker (never started) owning partitions 0 and 1 of both input topics."""
    worker = Worker(Settings(), Services(kafka_bootstrap="127.0.0.1:1",
                                         redis_url="redis://127.0.0.1:1/0"))
    monkeypatch.setattr(worker, "owned", lambda topic=None: [0, 1])
    return worker


def test_lag_counts_from_what_was_applied_and_committed(worker: Worker) -> None:
    worker.app.consumer = StubConsumer(  # type: ignore[assignment]
        fetched={TP("crm-kpi.events", 0): 40, TP("crm-kpi.events", 1): 50,
                 TP("crm-kpi.customers", 0): 12, TP("crm-kpi.customers", 1): 0},
        committed={TP("crm-kpi.events", 1): 20, TP("crm-kpi.customers", 0): 12},
    )
    worker.events.applier.done([SimpleNamespace(partition=0, offset=29)])  # applied 0..29

    assert worker.lag() == {("crm-kpi.events", 0): 10, ("crm-kpi.events", 1): 30,
                            ("crm-kpi.customers", 0): 0, ("crm-kpi.customers", 1): 0}


def test_partitions_not_fetched_since_their_assignment_are_not_lag_free(worker: Worker) -> None:
    # Events partition 0 is caught up; the others were just assigned and not fetched yet,
    # customers 0 with everything up to its end committed by the previous owner or not.
    worker.app.consumer = StubConsumer(  # type: ignore[assignment]
        fetched={TP("crm-kpi.events", 0): 40},
        committed={TP("crm-kpi.events", 0): 40, TP("crm-kpi.customers", 0): 5},
    )

    assert worker.lag() == {("crm-kpi.events", 0): 0, ("crm-kpi.events", 1): UNFETCHED_LAG,
                            ("crm-kpi.customers", 0): UNFETCHED_LAG,
                            ("crm-kpi.customers", 1): UNFETCHED_LAG}
