"""The topic catalogue: which topic carries what, and which key routes each event type.

Every event is keyed by the entity whose state it changes, so that entity's state lives in
one partition: a lead's events by `lead_id`, a deal's by `deal_id`, and so on. Events that
change no entity (visits, spend, surveys that name no customer) are keyed by their own id,
which sends duplicates of one event to one partition, where the dedup state is; a survey
answer that names its customer is keyed by the customer id (its respondent entity).
Third-party producers that key their records the same way (Kafka's default murmur2
partitioner) need no repartitioning.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_NAMESPACE = "crm-kpi"


@dataclass(frozen=True)
class Topics:
    """The names of everything crm-kpi keeps on Kafka, under one namespace (CRMKPI_NAMESPACE).

    - `events`: canonical events, keyed by entity (see ROUTING_FIELD);
    - `customers`: internal upserts from events-stage entities, keyed by customer id;
    - `deadletter`: what could not be processed, raw, with provenance headers;
    - `state`, `customer_state`: the changelogged Faust tables of the two stages (Faust adds
      its own `<app id>-<table>-changelog` topic names).
    """

    namespace: str = DEFAULT_NAMESPACE

    @property
    def events(self) -> str:
        """The canonical events topic."""
        return f"{self.namespace}.events"

    @property
    def customers(self) -> str:
        """The internal customer topic."""
        return f"{self.namespace}.customers"

    @property
    def deadletter(self) -> str:
        """The dead-letter topic."""
        return f"{self.namespace}.deadletter"

    state_table = "state"
    customer_state_table = "customer-state"

ROUTING_FIELD: dict[str, str] = {
    "lead.created": "lead_id",
    "lead.touched": "lead_id",
    "lead.converted": "lead_id",
    "deal.created": "deal_id",
    "deal.updated": "deal_id",
    "deal.won": "deal_id",
    "deal.lost": "deal_id",
    "ticket.created": "ticket_id",
    "ticket.replied": "ticket_id",
    "ticket.resolved": "ticket_id",
    "ticket.reopened": "ticket_id",
    "subscription.started": "subscription_id",
    "subscription.changed": "subscription_id",
    "subscription.renewed": "subscription_id",
    "subscription.cancelled": "subscription_id",
    "order.placed": "customer_id",
    "survey.answered": "customer_id",  # when it names one
    "cart.created": "cart_id",
    "cart.checked_out": "cart_id",
    "user.login": "user_id",
    "record.created": "user_id",
    "task.completed": "user_id",
}


# The engine's own producers mark each record with the partition count they routed its events
# for: a consumer with the same count need not route every event again to find misrouted ones.
ROUTED_FOR = "crm-kpi-routed-for"


def routed_for(partitions: int) -> tuple[str, bytes]:
    """The record header saying every event in the record is on its home partition."""
    return (ROUTED_FOR, str(partitions).encode())


def routing_key(raw: Mapping[str, Any]) -> bytes:
    """The Kafka key of a canonical event (already validated): its entity id, else its own id."""
    field = ROUTING_FIELD.get(raw["type"])
    entity = None if field is None else raw["data"].get(field)
    if entity is not None:
        return str(entity).encode()
    return f"{raw['source']}\x1f{raw['id']}".encode()


MURMUR2_SEED = 0x9747B28C
MURMUR2_M = 0x5BD1E995
MASK32 = 0xFFFFFFFF
PARTITION_CACHE = 16_384  # keys: an entity's events tend to come close together


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` (as the Java client and `aiokafka.partitioner.murmur2`).

    Reads the little-endian 4-byte words in one `struct` call; the tail's 1-3 bytes, XORed in
    at shifts 0, 8 and 16, are one little-endian integer. Masking once per step suffices,
    since XOR commutes with masking.
    """
    length = len(data)
    m = MURMUR2_M
    h = MURMUR2_SEED ^ length
    for k in struct.unpack_from(f"<{length >> 2}I", data):
        k = k * m & MASK32
        h = (h * m ^ (k ^ k >> 24) * m) & MASK32
    if length & 3:
        h = (h ^ int.from_bytes(data[length & ~3:], "little")) * m & MASK32
    h ^= h >> 13
    h = h * m & MASK32
    return h ^ h >> 15


@lru_cache(maxsize=PARTITION_CACHE)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` (murmur2, as the Java client)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
