"""Global answers from any worker: a Redis registry of workers, and scatter-gather of partials.

Each worker serves the partial sums of the partitions it owns. The worker that answers a
`GET /api/kpis` asks every live worker for its partials and merges them, and only answers
when the partitions reported cover every partition exactly once (otherwise a rebalance is
under way and it retries, then answers 503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kpis.buckets import SumKey, merge_into
from kpis.insights.series import Columns, merge_columns

REGISTRY_KEY = "{namespace}:workers"  # one registry per deployment sharing a Redis
HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0


class ClusterIncomplete(RuntimeError):
    """The workers' partials do not cover every partition exactly once (yet)."""


@dataclass
class Partials:
    """Merged partial results of some partitions."""

    partitions: list[int] = field(default_factory=list)
    customer_partitions: list[int] = field(default_factory=list)
    sums: dict[SumKey, int] = field(default_factory=dict)
    sums_30d: dict[SumKey, int] = field(default_factory=dict)
    processed: int = 0
    rejected: int = 0
    lag: int = 0
    # Asked for by insight queries (agents/exporters/insights.py): hourly columns, and each
    # worker's riskiest customers.
    series: Columns = field(default_factory=dict)
    at_risk: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        """Wire form of the partials."""
        return orjson.dumps({
            "partitions": self.partitions,
            "customer_partitions": self.customer_partitions,
            "sums": [[*k, v] for k, v in self.sums.items()],
            "sums_30d": [[*k, v] for k, v in self.sums_30d.items()],
            "processed": self.processed,
            "rejected": self.rejected,
            "lag": self.lag,
            "series": [[*k, v] for k, v in self.series.items()],
            "at_risk": self.at_risk,
        })

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Partials:
        """Read the wire form."""
        return cls(
            list(payload["partitions"]),
            list(payload["customer_partitions"]),
            {(t, f, d, s): v for t, f, d, s, v in payload["sums"]},
            {(t, f, d, s): v for t, f, d, s, v in payload["sums_30d"]},
            payload["processed"],
            payload["rejected"],
            payload["lag"],
            {(t, f): v for t, f, v in payload.get("series", [])},
            list(payload.get("at_risk", [])),
        )

    def covers(self, partitions: int) -> bool:
        """Whether every partition of both input topics is counted exactly once."""
        expected = list(range(partitions))
        return sorted(self.partitions) == expected and sorted(self.customer_partitions) == expected

    def absorb(self, other: Partials) -> None:
        """Add another worker's partials."""
        self.partitions.extend(other.partitions)
        self.customer_partitions.extend(other.customer_partitions)
        merge_into(self.sums, other.sums)
        merge_into(self.sums_30d, other.sums_30d)
        self.processed += other.processed
        self.rejected += other.rejected
        self.lag += other.lag
        merge_columns(self.series, other.series)
        self.at_risk.extend(other.at_risk)


class WorkerRegistry:
    """Live workers and their URLs, kept in a Redis hash with heartbeats."""

    def __init__(self, redis_url: str, worker_id: str, url: str, namespace: str) -> None:
        self.key = REGISTRY_KEY.format(namespace=namespace)
        self.redis = aioredis.from_url(redis_url)
        self.worker_id = worker_id
        self.url = url

    async def heartbeat(self) -> None:
        """Announce this worker (called every HEARTBEAT_SECONDS)."""
        entry = orjson.dumps({"url": self.url, "seen": time.time()})
        await self.redis.hset(self.key, self.worker_id, entry)

    async def leave(self) -> None:
        """Remove this worker from the registry."""
        await self.redis.hdel(self.key, self.worker_id)
        await self.redis.aclose()

    async def peers(self) -> dict[str, str]:
        """Worker id → URL of every worker seen recently."""
        entries = await self.redis.hgetall(self.key)
        now = time.time()
        live = {}
        for worker_id, raw in entries.items():
            entry = orjson.loads(raw)
            if now - entry["seen"] < STALE_AFTER_SECONDS:
                live[worker_id.decode() if isinstance(worker_id, bytes) else worker_id] = entry["url"]
        return live


LocalPartials = Callable[[Mapping[str, str]], Awaitable[Partials]]


async def gather(
    registry: WorkerRegistry,
    local: LocalPartials,
    query: Mapping[str, str],
    partitions: int,
    *,
    token: str | None = None,
    attempts: int = 10,
) -> Partials:
    """Merged partials of all workers, covering every partition exactly once."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for attempt in range(attempts):
            merged = Partials()
            try:
                peers = await registry.peers()
            except RedisError as exc:
                raise ClusterIncomplete(f"the worker registry (Redis) is unreachable: {exc}") from None
            for worker_id, url in peers.items():
                if worker_id == registry.worker_id:
                    merged.absorb(await local(query))
                    continue
                try:
                    async with session.get(f"{url}/internal/partials", params=query,
                                           headers=headers) as response:
                        response.raise_for_status()
                        merged.absorb(Partials.from_json(orjson.loads(await response.read())))
                except (TimeoutError, aiohttp.ClientError):
                    continue
            if merged.covers(partitions):
                return merged
            await asyncio.sleep(min(0.2 * (attempt + 1), 1.0))
    raise ClusterIncomplete(
        f"workers report partitions {sorted(merged.partitions)} of {partitions}: rebalancing"
    )
