"""The canonical events of one exported record, whatever product exported it.

Each format module reads its columns into one of the shapes below; the shape gives the events.
Event ids are `import:<format>:<record id>:<event type>`: importing a file again, or resuming,
writes the same `(source, id)` pairs, which the engine counts once.

A follow-up event (won, lost, converted, replied, resolved, cancelled) is never earlier than the
record's creation: a date-only close date on the day a record was created (midnight, before the
creation time) is taken as the creation time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from streams.events import format_time_ms
from streams.exports.fields import Row, header_key, short

RawEvent = dict[str, Any]

# Provider source and origin labels for the default channel allow-list (docs/import.md);
# other values pass through in lower case (the engine reports off-list values as `other`).
CHANNELS = {
    "organic search": "organic",
    "paid search": "ads",
    "paid social": "ads",
    "advertisement": "ads",
    "email marketing": "email",
    "organic social": "social",
    "social media": "social",
    "referrals": "referral",
    "employee referral": "referral",
    "external referral": "referral",
    "word of mouth": "referral",
    "partner referral": "partner",
    "direct traffic": "web",
    "form": "web",
    "trade show": "events",
    "seminar internal": "events",
    "seminar partner": "events",
}
PRIORITIES = {"medium": "normal"}


def segment(value: str | None, table: dict[str, str] | None = None) -> str | None:
    """A segment value: a known provider label mapped, anything else trimmed and lower-cased."""
    if value is None or not value.strip():
        return None
    key = " ".join(re.findall(r"[a-z0-9]+", value.lower()))
    return (table or {}).get(key, value.strip().lower())


def channel(value: str | None) -> str | None:
    """A `channel` segment from a source, origin or lead-source label."""
    return segment(value, CHANNELS)


def priority(value: str | None) -> str | None:
    """A `priority` segment (`Medium` is the engine's `normal`)."""
    return segment(value, PRIORITIES)


def stage_outcome(stage: str) -> str | None:
    """`won`, `lost` or None (open) from a stage label (`Closed Won`) or internal name."""
    words = set(re.findall(r"[a-z]+", stage.lower()))
    if words & {"won", "closedwon"}:
        return "won"
    if words & {"lost", "closedlost"}:
        return "lost"
    return None


@dataclass(frozen=True)
class Record:
    """One exported record: where it comes from and its id there."""

    format: str
    source: str
    id: str

    def event(self, event_type: str, time_ms: int, **data: Any) -> RawEvent:
        """A canonical event of this record; `data` members that are None are left out."""
        return {
            "id": f"import:{self.format}:{self.id}:{event_type}",
            "source": self.source,
            "type": event_type,
            "occurred_at": format_time_ms(time_ms),
            "data": {key: value for key, value in data.items() if value is not None},
        }


def _after(created_ms: int, time_ms: int) -> int:
    return max(created_ms, time_ms)


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Deal:
    """A deal or opportunity: created, and maybe won or lost at `closed_ms`."""

    created_ms: int
    outcome: str | None = None  # "won" | "lost" | None (open)
    closed_ms: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    channel: str | None = None
    customer_id: str | None = None
    reason: str | None = None

    @classmethod
    def from_report(cls, row: Row, outcome: str | None, noun: str, *, created: str,
                    currencies: tuple[str, ...], source: str | None, customer_id: str | None,
                    loss_reason: str) -> Deal:
        """A deal row of a CRM report: `Amount`, and a `Close Date` required once it is closed.

        `created` and `loss_reason` name those columns; the first filled `currencies` column,
        else a code or symbol in the amount, gives the currency; `source` is the channel label.
        """
        amount, amount_currency = row.money("Amount")
        why = f"is required for a closed {outcome} {noun}"
        return cls(
            created_ms=row.required_time(created),
            outcome=outcome,
            closed_ms=row.required_time("Close Date", why=why) if outcome else None,
            amount=amount,
            currency=row.code(*currencies) or amount_currency,
            channel=channel(source),
            customer_id=customer_id,
            reason=short(row.text(loss_reason)),
        )

    def events(self, record: Record) -> list[RawEvent]:
        """`deal.created`, plus `deal.won` (with the amount) or `deal.lost`."""
        money = {"amount": _number(self.amount), "currency": self.currency}
        common = {"deal_id": record.id, "channel": self.channel}
        events = [record.event("deal.created", self.created_ms, **common, **money,
                               customer_id=self.customer_id)]
        if self.outcome is not None and self.closed_ms is not None:
            closed = _after(self.created_ms, self.closed_ms)
            if self.outcome == "won":
                events.append(record.event("deal.won", closed, **common, **money,
                                           customer_id=self.customer_id))
            else:
                events.append(record.event("deal.lost", closed, **common, reason=self.reason))
        return events


@dataclass(frozen=True)
class Lead:
    """A contact or lead: created, and maybe converted into a customer."""

    created_ms: int
    channel: str | None = None
    converted_ms: int | None = None
    customer_id: str | None = None

    def events(self, record: Record) -> list[RawEvent]:
        """`lead.created`, plus `lead.converted`."""
        events = [record.event("lead.created", self.created_ms, lead_id=record.id, channel=self.channel)]
        if self.converted_ms is not None:
            converted = _after(self.created_ms, self.converted_ms)
            events.append(record.event("lead.converted", converted, lead_id=record.id,
                                       customer_id=self.customer_id))
        return events


@dataclass(frozen=True)
class Ticket:
    """A ticket or case: created, maybe first answered by an agent, maybe resolved."""

    created_ms: int
    channel: str | None = None
    priority: str | None = None
    customer_id: str | None = None
    first_reply_ms: int | None = None
    resolved_ms: int | None = None

    def events(self, record: Record) -> list[RawEvent]:
        """`ticket.created`, plus a public agent `ticket.replied` and `ticket.resolved`."""
        events = [record.event("ticket.created", self.created_ms, ticket_id=record.id,
                               channel=self.channel, priority=self.priority,
                               customer_id=self.customer_id)]
        if self.first_reply_ms is not None:
            replied = _after(self.created_ms, self.first_reply_ms)
            events.append(record.event("ticket.replied", replied, ticket_id=record.id,
                                       author="agent", public=True))
        if self.resolved_ms is not None:
            resolved = _after(self.created_ms, self.resolved_ms)
            events.append(record.event("ticket.resolved", resolved, ticket_id=record.id))
        return events


@dataclass(frozen=True)
class Subscription:
    """A subscription: started with its MRR, maybe renewed (latest period) and cancelled."""

    started_ms: int
    customer_id: str
    mrr: Decimal
    currency: str | None = None
    plan: str | None = None
    renewed_ms: int | None = None
    cancelled_ms: int | None = None
    reason: str | None = None

    def events(self, record: Record) -> list[RawEvent]:
        """`subscription.started`, plus its latest `subscription.renewed` and `.cancelled`."""
        events = [record.event("subscription.started", self.started_ms, subscription_id=record.id,
                               customer_id=self.customer_id, mrr=float(self.mrr),
                               currency=self.currency, plan=self.plan)]
        renewed = self._renewal_ms()
        if renewed is not None:
            events.append(record.event("subscription.renewed", renewed,
                                       subscription_id=record.id, customer_id=self.customer_id))
        if self.cancelled_ms is not None:
            cancelled = _after(self.started_ms, self.cancelled_ms)
            events.append(record.event("subscription.cancelled", cancelled, subscription_id=record.id,
                                       customer_id=self.customer_id, reason=self.reason))
        return events

    def _renewal_ms(self) -> int | None:
        """The current period's start when it is a renewal: after the start, not after the end."""
        renewed, cancelled = self.renewed_ms, self.cancelled_ms
        if renewed is None or renewed <= self.started_ms or (cancelled is not None and renewed > cancelled):
            return None
        return renewed


Shape = Deal | Lead | Ticket | Subscription


@dataclass(frozen=True)
class ExportFormat:
    """One product's export of one object: its columns and how a row reads into a shape.

    `columns` are the groups of column names (alternatives) a file must have; `zone`, when set,
    is the zone of every naive date (Stripe writes UTC), whatever `--timezone` says;
    `record_id` normalises the id column (Salesforce: the 18-character form).
    """

    name: str
    source: str
    id_columns: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]
    read: Callable[[Row], Shape | None]
    zone: tzinfo | None = None
    record_id: Callable[[str], str] = str

    def missing(self, headers: Iterable[str]) -> list[str]:
        """The required columns a header row lacks (each named by its first alternative)."""
        present = {header_key(name) for name in headers}
        groups = (self.id_columns, *self.columns)
        return [group[0] for group in groups if not any(header_key(n) in present for n in group)]

    def row(self, values: Mapping[str, str], zone: tzinfo) -> Row:
        """One row of this export, its naive dates in `zone` (unless the format fixes one)."""
        return Row(values, self.zone or zone)

    def events(self, row: Row) -> list[RawEvent]:
        """The canonical events of one row (none for a record that never took effect)."""
        record = Record(self.name, self.source, self.record_id(row.required(*self.id_columns)))
        shape = self.read(row)
        return [] if shape is None else shape.events(record)
