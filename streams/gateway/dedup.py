"""Accepting each `(source, id)` once: Redis claims ordered around the Kafka write.

Per request, for the events it carries (duplicates inside one request count once):

1. **Claim** every id in one pipeline: `SET crm-kpi:seen:<source>\\x1f<id> pending NX EX 300`
   and `GET` it, to learn the state of ids claimed before (`crm-kpi` is `CRMKPI_NAMESPACE`).
   Redis down: 503, nothing written.
2. **Publish** the newly claimed events and await the acks from all in-sync replicas.
3. **Confirm**: `SET key done EX <CRMKPI_DEDUP_TTL>`, then answer 202
   `{"accepted": n, "duplicates": n}`.

If publishing fails the claimed keys are **deleted** and the answer is 503, so the provider's
retry is not taken for a duplicate. A write is never cancelled once started (a half-sent
produce request may still land): when Kafka has not acknowledged within the answer timeout
the request gets 503 while the write runs on and confirms or releases its keys when it ends.

**Two deliveries of one event in flight at once.** The second finds the key `pending`. It
must not answer 202 before the first is durable, so it waits (up to 2 s) for the key to turn
`done` (then the event is a duplicate, 202); if the key is still pending, or was released
because the first write failed, it answers 503 with `Retry-After`, which every provider
retries (unlike 409, which HubSpot does not). A crash between claim and confirm leaves a
`pending` key that expires after the 300 s lease, after which a retry claims it afresh; the
lease is longer than any write can run (the producer gives up within about 80 s: 40 s to
queue a record, 40 s to deliver its batch), so a claim never expires under a live write.
If Redis fails after the write, the answer is still 202 (the events are durable); the key
then stays `pending` until its lease ends, and a retry after that publishes the event again,
which the worker's own `(source, id)` dedup absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from prometheus_client import Histogram
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.gateway.providers.base import Accepted
from streams.gateway.writes import Writes

log = logging.getLogger(__name__)

PENDING = b"pending"
DONE = b"done"
LEASE_SECONDS = 300
SETTLE_WAIT_SECONDS = 2.0
SETTLE_POLL_SECONDS = 0.05
REDIS_TIMEOUT_SECONDS = 2.0


class Unavailable(Exception):
    """Kafka or Redis cannot take the write now (the answer is 503, and the sender retries)."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class Claims:
    """The ids of one request sorted by what the claim found."""

    new: list[str]
    done: list[str]
    pending: list[str]


class Deduplicator(Protocol):
    """The store of seen ids (Redis in production, a dict in unit tests)."""

    async def claim(self, uids: Sequence[str], lease_seconds: int) -> Claims:
        """Claim each id not yet seen as pending; sort all of them by state."""

    async def confirm(self, uids: Sequence[str], ttl_seconds: int) -> None:
        """Mark claimed ids done, remembered for `ttl_seconds`."""

    async def release(self, uids: Sequence[str]) -> None:
        """Forget claimed ids whose write failed."""

    async def states(self, uids: Sequence[str]) -> list[bytes | None]:
        """The current state of each id (None: not claimed)."""

    async def ping(self) -> bool:
        """Whether the store answers."""

    async def close(self) -> None:
        """Disconnect."""


def seen_prefix(namespace: str) -> str:
    """The prefix of a deployment's dedup keys (`crm-kpi:seen:` by default)."""
    return f"{namespace}:seen:"


class RedisDeduplicator:
    """Seen ids in Redis, one key per `(source, id)`, every operation one pipeline."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisDeduplicator:
        """Connect lazily to the Redis at `url`, with short timeouts."""
        client = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        return cls(client, prefix)

    def _keys(self, uids: Iterable[str]) -> list[str]:
        return [self.prefix + uid for uid in uids]

    async def claim(self, uids: Sequence[str], lease_seconds: int) -> Claims:
        """`SET NX` and `GET` per id in one pipeline (Redis 6.2 has no `SET NX GET`)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self._keys(uids):
                pipe.set(key, PENDING, nx=True, ex=lease_seconds)
                pipe.get(key)
            replies = await pipe.execute()
        claims = Claims([], [], [])
        for uid, claimed, state in zip(uids, replies[::2], replies[1::2], strict=True):
            found = claims.new if claimed else claims.done if state == DONE else claims.pending
            found.append(uid)
        return claims

    async def confirm(self, uids: Sequence[str], ttl_seconds: int) -> None:
        """`SET key done EX ttl` per id."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self._keys(uids):
                pipe.set(key, DONE, ex=ttl_seconds)
            await pipe.execute()

    async def release(self, uids: Sequence[str]) -> None:
        """`DEL` the ids."""
        await self.client.delete(*self._keys(uids))

    async def states(self, uids: Sequence[str]) -> list[bytes | None]:
        """`MGET` the ids."""
        return cast(list[bytes | None], await self.client.mget(self._keys(uids)))

    async def ping(self) -> bool:
        """`PING`, False on any Redis error."""
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class Publisher(Protocol):
    """What the gateway needs of `streams.publisher.EventPublisher`."""

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Write events; return once every one is acknowledged."""

    async def dead_letter(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        """Write a raw payload to the dead-letter topic; return once acknowledged."""


class OnceWriter:
    """Writes each request's new events exactly once (the protocol in the module docstring)."""

    def __init__(
        self,
        deduplicator: Deduplicator,
        publisher: Publisher,
        writes: Writes,
        ttl_seconds: int,
        publish_seconds: Histogram,
    ) -> None:
        self.deduplicator = deduplicator
        self.publisher = publisher
        self.writes = writes
        self.ttl_seconds = ttl_seconds
        self.publish_seconds = publish_seconds

    async def deliver(self, events: Sequence[tuple[str, Mapping[str, Any]]]) -> Accepted:
        """Write the events of `(uid, event)` pairs not seen before; raise `Unavailable`."""
        if not events:
            return Accepted(0, 0)
        unique: dict[str, Mapping[str, Any]] = {}
        for uid, event in events:
            unique.setdefault(uid, event)
        try:
            claims = await self.deduplicator.claim(list(unique), LEASE_SECONDS)
        except RedisError as error:
            raise Unavailable(f"Redis cannot record event ids: {error}") from None
        if claims.new:
            await self._publish(claims.new, [unique[uid] for uid in claims.new])
        if claims.pending and not await self._settled(claims.pending):
            raise Unavailable("an earlier delivery of the same event is still being written", 1)
        return Accepted(len(claims.new), len(events) - len(claims.new))

    async def _publish(self, uids: list[str], events: list[Mapping[str, Any]]) -> None:
        try:
            await self.writes.wait(self._write(uids, events))
        except TimeoutError:
            raise Unavailable("Kafka has not acknowledged the write in time") from None
        except Exception as error:
            raise Unavailable(f"Kafka cannot take the write: {error!r}") from None

    async def _write(self, uids: list[str], events: list[Mapping[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            await self.publisher.publish(events)
        except Exception:
            await self._forget(uids)
            raise
        self.publish_seconds.observe(time.perf_counter() - started)
        try:
            await self.deduplicator.confirm(uids, self.ttl_seconds)
        except RedisError as error:
            log.warning("events written but not marked done (pending until lease end): %r", error)

    async def _forget(self, uids: list[str]) -> None:
        try:
            await self.deduplicator.release(uids)
        except RedisError as error:
            log.warning("write failed, ids not released (pending until lease end): %r", error)

    async def _settled(self, uids: list[str]) -> bool:
        deadline = time.monotonic() + SETTLE_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_POLL_SECONDS)
            try:
                states = await self.deduplicator.states(uids)
            except RedisError:
                return False
            if all(state == DONE for state in states):
                return True
            if any(state is None for state in states):
                return False
        return False
