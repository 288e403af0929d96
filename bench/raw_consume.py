"""(a) The raw consume bound: aiokafka `getmany` + `orjson.loads` per record, nothing else.

Run as its own process: `python -m bench.raw_consume BOOTSTRAP TOPIC COUNT`; prints one JSON
line {"events", "seconds", "rate"} timed from the first record to the COUNT-th.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer

TIMEOUT_S = 300.0


async def consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    first = 0.0
    deadline = time.monotonic() + TIMEOUT_S
    loads = orjson.loads
    try:
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                if not first:
                    first = time.monotonic()
                for record in records:
                    loads(record.value)
                seen += len(records)
        seconds = time.monotonic() - first
    finally:
        await consumer.stop()
    return {"events": seen, "seconds": seconds, "rate": seen / seconds if seconds else 0.0}


def main() -> None:
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(orjson.dumps(asyncio.run(consume(bootstrap, topic, count))).decode())


if __name__ == "__main__":
    main()
