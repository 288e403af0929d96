"""Records of the internal customer topic: what events-stage entities tell the customer stage.

A subscription's state lives in its subscription's partition, a customer's in its
customer's partition; the subscription entity sends its whole current timeline, keyed by
customer, whenever it changes. The record is an idempotent upsert, so its id is a digest of
its content: a redelivered or re-sent identical record is a duplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from streams.events import Event

INTERNAL_SOURCE = "crm-kpi"


def encode_internal(tenant: str, event_type: str, time_ms: int, data: dict[str, Any]) -> bytes:
    """The record value of one internal event."""
    return orjson.dumps([event_type, time_ms, tenant, data], option=orjson.OPT_SORT_KEYS)


def decode_internal(raw: Any) -> Event:
    """An internal event from its decoded record value (trusted: written by the engine)."""
    event_type, time_ms, tenant, data = raw
    digest = hashlib.blake2b(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS), digest_size=12)
    return Event(digest.hexdigest(), INTERNAL_SOURCE, event_type, time_ms, tenant, data)
