"""(b) The Quix Streams baseline: a tumbling 1-minute windowed count by key.

Reads the topic of one canonical event per record (keyed by entity, record timestamp = event
time), JSON-decodes each value, and counts per key and 1-minute event-time window with a
RocksDB-backed, changelogged window state (Quix Streams defaults, at-least-once). Run as its
own process: `python -m bench.quix_baseline BOOTSTRAP TOPIC COUNT STATE_DIR`; prints one JSON
line {"events", "seconds", "rate"} timed from the first processed message to the COUNT-th.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import timedelta

import orjson

TIMEOUT_S = 300.0


def run(bootstrap: str, topic_name: str, count: int, state_dir: str) -> dict[str, float]:
    from quixstreams import Application

    progress = {"seen": 0, "first": 0.0, "last": 0.0}
    app: Application

    def processed(topic: str, partition: int, offset: int) -> None:
        if not progress["first"]:
            progress["first"] = time.monotonic()
        progress["seen"] += 1
        if progress["seen"] >= count:
            progress["last"] = time.monotonic()
            app.stop()

    app = Application(
        bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
        state_dir=state_dir, loglevel="WARNING", on_message_processed=processed,
    )
    topic = app.topic(topic_name, value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    sdf = sdf.tumbling_window(timedelta(minutes=1)).count().final()
    timer = threading.Timer(TIMEOUT_S, app.stop)
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
    seconds = (progress["last"] or time.monotonic()) - progress["first"]
    seen = progress["seen"]
    return {"events": seen, "seconds": seconds, "rate": seen / seconds if seconds else 0.0}


def main() -> None:
    bootstrap, topic, count, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(orjson.dumps(run(bootstrap, topic, count, state_dir)).decode())


if __name__ == "__main__":
    main()
