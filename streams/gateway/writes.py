"""Kafka writes that finish even when the HTTP answer cannot wait for them.

A produce request that is abandoned half-way may still reach the broker later. So a write is
never cancelled: the request waits for it at most `answer_timeout` seconds (then answers 503),
while the write runs on to its own success or failure and cleans up after itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Writes:
    """Runs writes as tasks the caller may stop waiting for; `drain` awaits the stragglers."""

    def __init__(self, answer_timeout: float) -> None:
        self.answer_timeout = answer_timeout
        self._running: set[asyncio.Task[Any]] = set()

    async def wait(self, write: Coroutine[Any, Any, T]) -> T:
        """The write's result; TimeoutError if it takes longer than the answer can wait."""
        task = asyncio.ensure_future(write)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.wait_for(asyncio.shield(task), self.answer_timeout)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("write failed: %r", task.exception())

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for writes still running (at shutdown)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
