"""(f) Memory per tracked entity: worker RSS growth per 100k subscriptions and per 100k deals."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from dataclasses import dataclass

from bench.common import Engine, Services, create_topics, log, now_ms, processed, produce_batched, wait_ready
from streams.events import format_time_ms
from streams.topics import Topics


@dataclass
class MemoryResult:
    kind: str
    entities: int
    rss_before_kib: int
    rss_after_kib: int

    @property
    def bytes_per_entity(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) * 1024 / self.entities


def synthetic(kind: str, count: int, run: str) -> list[dict]:
    """`count` distinct subscriptions (started) or deals (created), spread over the last day."""
    end = now_ms() - 60_000
    events = []
    for number in range(count):
        at = format_time_ms(end - (count - number) * 86_400_000 // count)
        if kind == "subscriptions":
            data = {"subscription_id": f"s-{run}-{number}", "customer_id": f"c-{run}-{number}",
                    "mrr": 49.0 + number % 200, "currency": "USD", "plan": "starter", "region": "na"}
            event_type = "subscription.started"
        else:
            data = {"deal_id": f"d-{run}-{number}", "customer_id": f"c-{run}-{number}",
                    "amount": 1000.0 + number % 5000, "currency": "USD", "channel": "web", "region": "emea"}
            event_type = "deal.created"
        events.append({"id": f"{kind[0]}-{run}-{number}", "source": "bench", "type": event_type,
                       "occurred_at": at, "tenant": "default", "data": data})
    return events


def memory_per_entity(services: Services, count: int = 100_000) -> list[MemoryResult]:
    """One worker; RSS before and after applying `count` entities of each kind in turn."""
    namespace = f"bench-mem-{uuid.uuid4().hex[:6]}"
    topics = Topics(namespace)
    asyncio.run(create_topics(services.bootstrap, [topics.events, topics.customers, topics.deadletter]))
    engine = Engine(services, namespace, services.work / f"home-{namespace}")
    worker = engine.spawn("worker")
    results = []
    try:
        wait_ready([worker])
        applied = 0
        for kind in ("subscriptions", "deals"):
            events = synthetic(kind, count, uuid.uuid4().hex[:6])
            gc.collect()
            time.sleep(2)
            before = worker.rss_kib()
            log(f"memory: {count} {kind}")
            asyncio.run(produce_batched(services.bootstrap, namespace, events))
            applied += len(events)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                answer = processed(worker)
                if answer and answer[0] >= applied and answer[1] == 0:
                    break
                time.sleep(1)
            time.sleep(3)  # the customer stage settles
            results.append(MemoryResult(kind, count, before, worker.rss_kib()))
        return results
    finally:
        worker.stop()
