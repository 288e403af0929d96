"""Support: tickets, their first public agent reply, first resolution and open status."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent
from kpis.families.customers import TICKET
from kpis.formulas import Kpi, count, mean_seconds
from kpis.insights.risk import SLOW_FIRST_RESPONSE_MS
from kpis.sketch import DurationSketch
from kpis.values import segment
from streams.events import Event

FIRST_RESPONSE = DurationSketch("first_response")
STATUS_OPENS = {"ticket.created": True, "ticket.reopened": True, "ticket.resolved": False}


def _is_public_agent_reply(event: Event) -> bool:
    """A reply that counts as a response: by an agent and not a private note."""
    return event.data["author"] == "agent" and event.data.get("public") is not False


class Ticket(Entity):
    """A ticket: its creation (with segments), first response, first resolution and statuses;
    its customer (named by the creation) hears of its creation and of a slow first response."""

    kind = "ticket"
    key_field = "ticket_id"
    fields = ("created", "first_reply_ms", "resolved_ms", "statuses", "customer")

    def __init__(self) -> None:
        super().__init__()
        self.created: list[Any] | None = None  # [time, uid, channel, priority], earliest
        self.first_reply_ms: int | None = None
        self.resolved_ms: int | None = None
        self.statuses: list[list[Any]] = []  # [time, uid, opens] of created/resolved/reopened
        self.customer: str | None = None  # named by the creation kept in `created`

    def update(self, event: Event, config: KpiConfig) -> None:
        """Fold in a creation, a reply, a resolution or a reopening."""
        if event.type in STATUS_OPENS:
            self.statuses.append([event.time_ms, event.uid, STATUS_OPENS[event.type]])
        if event.type == "ticket.created":
            place = [event.time_ms, event.uid]
            if self.created is None or place < self.created[:2]:
                data = event.data
                self.created = [
                    *place,
                    segment(data.get("channel"), "channel", config),
                    segment(data.get("priority"), "priority", config),
                ]
                self.customer = None if data.get("customer_id") is None else str(data["customer_id"])
        elif event.type == "ticket.replied" and _is_public_agent_reply(event):
            self.first_reply_ms = _earliest(self.first_reply_ms, event.time_ms)
        elif event.type == "ticket.resolved":
            self.resolved_ms = _earliest(self.resolved_ms, event.time_ms)

    def contributions(self, tenant: str) -> list[Contribution]:
        """Creation, response and resolution at their own times; open-status changes."""
        out: list[Contribution] = [
            (time_ms, tenant, "open_tickets", (), change) for time_ms, change in self._open_changes()
        ]
        if self.created is None:
            return out
        created_ms, _, channel, priority = self.created
        segments = (("channel", channel), ("priority", priority))
        out.append((created_ms, tenant, "tickets_created", segments, 1))
        if self.first_reply_ms is not None:
            waited = self.first_reply_ms - created_ms
            out += [
                (self.first_reply_ms, tenant, "first_responses", segments, 1),
                (self.first_reply_ms, tenant, FIRST_RESPONSE.sum_field, segments, waited),
                (self.first_reply_ms, tenant, FIRST_RESPONSE.field(waited), segments, 1),
            ]
        if self.resolved_ms is not None:
            out += [
                (self.resolved_ms, tenant, "resolutions", segments, 1),
                (self.resolved_ms, tenant, "resolution_ms", segments, self.resolved_ms - created_ms),
            ]
        return out

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """Its creation, and its first response when slow, to its customer's churn risk."""
        if self.customer is None or self.created is None:
            return []
        created, replied = self.created[0], self.first_reply_ms
        slow = replied if replied is not None and replied - created > SLOW_FIRST_RESPONSE_MS else None
        data = {"customer_id": self.customer, "ticket_id": entity_id, "created_ms": created,
                "slow_reply_ms": slow}
        return [(self.customer, TICKET, created, data)]

    def _open_changes(self) -> Iterator[tuple[int, int]]:
        """(time, +1 or -1) wherever the status timeline opens or closes the ticket."""
        is_open = False
        for time_ms, _, opens in sorted(self.statuses):
            if opens != is_open:
                yield time_ms, 1 if opens else -1
                is_open = opens


def _earliest(current: int | None, time_ms: int) -> int:
    return time_ms if current is None else min(current, time_ms)


CHANNEL_PRIORITY = ("channel", "priority")

SUPPORT_KPIS = (
    Kpi("tickets_created", "Tickets created", "count of ticket.created in W", "count",
        ("tickets_created",), count("tickets_created"), CHANNEL_PRIORITY),
    Kpi("first_response_seconds_avg", "Mean time to the first public agent reply",
        "mean(first reply - created) over tickets first replied in W", "seconds",
        (FIRST_RESPONSE.sum_field, "first_responses"),
        mean_seconds(FIRST_RESPONSE.sum_field, "first_responses"), CHANNEL_PRIORITY),
    Kpi("first_response_seconds_p50", "Median time to the first public agent reply",
        "p50 of (first reply - created) over tickets first replied in W, within 1%", "seconds",
        ("first_responses",), FIRST_RESPONSE.quantile_seconds(Fraction(1, 2)), CHANNEL_PRIORITY),
    Kpi("first_response_seconds_p90", "90th percentile time to the first public agent reply",
        "p90 of (first reply - created) over tickets first replied in W, within 1%", "seconds",
        ("first_responses",), FIRST_RESPONSE.quantile_seconds(Fraction(9, 10)), CHANNEL_PRIORITY),
    Kpi("resolution_seconds_avg", "Mean time to the first resolution",
        "mean(first resolution - created) over tickets first resolved in W", "seconds",
        ("resolution_ms", "resolutions"), mean_seconds("resolution_ms", "resolutions"),
        CHANNEL_PRIORITY),
    Kpi("open_tickets", "Tickets open at T", "tickets whose latest status is created or reopened",
        "count", ("open_tickets",), count("open_tickets@at"), point_in_time=True),
)

SUPPORT = Family(
    name="support",
    entities={event_type: Ticket for event_type in (*STATUS_OPENS, "ticket.replied")},
    stateless={},
    kpis=SUPPORT_KPIS,
    cumulative_fields=frozenset({"open_tickets"}),
)
