"""Entities whose state is rebuilt from their events, whatever the arrival order.

An entity applies events idempotently (it remembers the ids it has applied) and derives its
contributions to the time buckets from its whole state. The partition state applies the
difference between the contributions before and after each event, so a late `deal.created`
adds the sales cycle of an earlier `deal.won`, and a duplicate changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.formulas import Kpi
from streams.events import Event


class Entity:
    """Base of entity state: the applied event ids plus what subclasses keep."""

    kind: ClassVar[str]
    key_field: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def apply(self, event: Event, config: KpiConfig) -> bool:
        """Apply `event` once; returns False when it was already applied."""
        uid = event.uid
        if uid in self.ids:
            return False
        self.ids.add(uid)
        self.update(event, config)
        return True

    def update(self, event: Event, config: KpiConfig) -> None:
        """Fold a new event into the state (subclasses)."""
        raise NotImplementedError

    def contributions(self, tenant: str) -> list[Contribution]:
        """What this entity adds to the time buckets, derived from its whole state."""
        raise NotImplementedError

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """Internal events for the customer stage, derived from the whole state (full upserts).

        Re-sent whenever they change; the receiving entity must treat them as idempotent
        upserts keyed by what they describe (e.g. one subscription's whole timeline).
        """
        return []

    @classmethod
    def emitting(cls) -> bool:
        """Whether this kind overrides `emits` (one that does not never sends anything)."""
        return cls.emits is not Entity.emits

    def release(self) -> None:
        """Drop what was derived from the state to answer `contributions` and `emits` once
        (held between events by every entity, such caches would cost more than the state)."""

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot of the state, for the changelog."""
        state = {name: getattr(self, name) for name in self.fields}
        state["ids"] = sorted(self.ids)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Entity:
        """Rebuild an entity from `to_state()` output (a field added since keeps its default)."""
        entity = cls()
        entity.ids = set(state["ids"])
        for name in cls.fields:
            if name in state:
                setattr(entity, name, state[name])
        return entity


def contribution_delta(
    before: Sequence[Contribution], after: Sequence[Contribution]
) -> list[Contribution]:
    """The contributions to add so that `before` becomes `after` (values summed per slot).

    Slots come in the order of their first appearance in `after`, then in `before`.
    """
    if before == after:  # an event that changed no contribution: every slot nets to zero
        return []
    delta: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], int] = {}
    get = delta.get
    for time_ms, tenant, name, segments, value in after:
        slot = (time_ms, tenant, name, segments)
        delta[slot] = get(slot, 0) + value
    for time_ms, tenant, name, segments, value in before:
        slot = (time_ms, tenant, name, segments)
        delta[slot] = get(slot, 0) - value
    return [(*slot, value) for slot, value in delta.items() if value]


# An event for the customer stage: (routing key, type, event time ms, data).
InternalEvent = tuple[str, str, int, dict[str, Any]]

# Contributions of an event that changes no entity (deduplicated by its id alone).
StatelessRule = Callable[[Event, KpiConfig], list[Contribution]]


@dataclass(frozen=True)
class Family:
    """A group of KPIs: the entities and stateless rules that feed them, by event type."""

    name: str
    entities: Mapping[str, type[Entity]]
    # "events" families read the canonical events topic; "customers" families read the
    # internal topic where entities of the events stage send their `emits()`, keyed by customer.
    stateless: Mapping[str, StatelessRule]
    kpis: tuple[Kpi, ...]
    cumulative_fields: frozenset[str] = frozenset()
    stage: str = "events"
