"""Record values on the events topic: one canonical event (a JSON object) or a batch (an array).

crm-kpi's own producers (gateway, replay, simulate) write batches of events bound for the same
partition in one record, which spares the worker Faust's per-record cost; third-party producers
may write one event per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

MAX_RECORD_BYTES = 512 * 1024


class UndecodableRecord(ValueError):
    """A record value that is not a JSON object or array of objects."""


def decode_record(value: bytes | None) -> list[Any]:
    """The raw events carried by one record value."""
    if value is None:
        raise UndecodableRecord("empty record value")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise UndecodableRecord(f"not JSON: {exc}") from None
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return decoded
    raise UndecodableRecord("a record must hold a JSON object or an array of objects")


def encode_batches(events: Sequence[bytes]) -> list[bytes]:
    """Pack already-encoded events into record values of at most MAX_RECORD_BYTES each."""
    records: list[bytes] = []
    batch: list[bytes] = []
    size = 2
    for event in events:
        if batch and size + len(event) + 1 > MAX_RECORD_BYTES:
            records.append(b"[" + b",".join(batch) + b"]")
            batch, size = [], 2
        batch.append(event)
        size += len(event) + 1
    if batch:
        records.append(b"[" + b",".join(batch) + b"]")
    return records
