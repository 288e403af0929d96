"""In-memory stand-ins for Kafka and Redis, for the gateway's unit tests only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from streams.gateway.dedup import DONE, PENDING, Claims


class MemoryPublisher:
    """Records what would be written; `failure` makes writes raise, `delay` makes them slow."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []
        self.dead_letters: list[tuple[bytes, dict[str, bytes]]] = []
        self.failure: Exception | None = None
        self.delay = 0.0

    async def _write(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        batch = list(events)
        await self._write()
        self.events.extend(batch)
        return len(batch)

    async def dead_letter(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        await self._write()
        self.dead_letters.append((value, dict(headers)))


class MemoryDeduplicator:
    """RedisDeduplicator's states in a dict (no expiry); `down` makes every call fail."""

    def __init__(self) -> None:
        self.states_by_uid: dict[str, bytes] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise RedisConnectionError("Redis is down")

    async def claim(self, uids: Sequence[str], lease_seconds: int) -> Claims:
        self._check()
        claims = Claims([], [], [])
        for uid in uids:
            state = self.states_by_uid.get(uid)
            if state is None:
                self.states_by_uid[uid] = PENDING
                claims.new.append(uid)
            else:
                (claims.done if state == DONE else claims.pending).append(uid)
        return claims

    async def confirm(self, uids: Sequence[str], ttl_seconds: int) -> None:
        self._check()
        self.states_by_uid.update(dict.fromkeys(uids, DONE))

    async def release(self, uids: Sequence[str]) -> None:
        self._check()
        for uid in uids:
            self.states_by_uid.pop(uid, None)

    async def states(self, uids: Sequence[str]) -> list[bytes | None]:
        self._check()
        return [self.states_by_uid.get(uid) for uid in uids]

    async def ping(self) -> bool:
        return not self.down

    async def close(self) -> None:
        """Nothing to close."""
