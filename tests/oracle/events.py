"""Canonical events as the oracle reads them: validation, dedup, event time, money, labels."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

EVENT_TYPES = frozenset(
    {
        "lead.created",
        "lead.touched",
        "lead.converted",
        "site.visit",
        "deal.created",
        "deal.updated",
        "deal.won",
        "deal.lost",
        "ticket.created",
        "ticket.replied",
        "ticket.resolved",
        "ticket.reopened",
        "survey.answered",
        "subscription.started",
        "subscription.changed",
        "subscription.renewed",
        "subscription.cancelled",
        "order.placed",
        "cart.created",
        "cart.checked_out",
        "spend.recorded",
        "user.login",
        "record.created",
        "task.completed",
    }
)

MICROS_PER_UNIT = 10**6
DEFAULT_TENANT = "default"
DEFAULT_ALLOW_LISTS: dict[str, tuple[str, ...]] = {
    "channel": ("web", "email", "ads", "social", "referral", "partner", "events", "organic"),
    "region": ("na", "emea", "apac", "latam"),
    "priority": ("low", "normal", "high", "urgent"),
    "plan": ("free", "starter", "pro", "enterprise"),
}

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class Event:
    """One deduplicated canonical event with its event time in integer milliseconds."""

    source: str
    id: str
    type: str
    time_ms: int
    data: Mapping[str, Any]

    @property
    def key(self) -> tuple[int, str, str]:
        """Event-time order; equal times are broken by the (source, id) pair, as strings."""
        return (self.time_ms, self.source, self.id)


def parse_time_ms(text: str) -> int:
    """RFC 3339 text to integer ms since the epoch; digits below the millisecond are truncated."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    *fields, fraction, offset = match.groups()
    local_seconds = calendar.timegm(tuple(int(field) for field in fields))
    millis = int((fraction or "")[:3].ljust(3, "0"))
    return (local_seconds - _offset_seconds(offset)) * 1000 + millis


def _offset_seconds(offset: str) -> int:
    if offset in ("Z", "z"):
        return 0
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = offset[1:].split(":")
    return sign * (int(hours) * 3600 + int(minutes) * 60)


def datetime_to_ms(moment: datetime) -> int:
    """An aware datetime to integer ms since the epoch (microseconds truncated)."""
    if moment.tzinfo is None:
        raise ValueError("the evaluation time must be timezone-aware")
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def is_valid(raw: Mapping[str, Any]) -> bool:
    """The oracle trusts generated events and only rejects unknown types."""
    return raw.get("type") in EVENT_TYPES


def first_copies(raw_events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Valid events in arrival order, each (source, id) kept once: the first copy wins.

    Choice: an invalid delivery is rejected before dedup, so it never shadows a later copy.
    """
    seen: set[tuple[str, str]] = set()
    kept = []
    for raw in raw_events:
        pair = (str(raw["source"]), str(raw["id"]))
        if is_valid(raw) and pair not in seen:
            seen.add(pair)
            kept.append(raw)
    return kept


def tenant_events(raw_events: Iterable[Mapping[str, Any]], tenant: str) -> list[Event]:
    """The deduplicated events of one tenant (a missing tenant means `default`).

    Choice: dedup is global by (source, id), before the tenant filter.
    """
    return [
        Event(
            source=str(raw["source"]),
            id=str(raw["id"]),
            type=raw["type"],
            time_ms=parse_time_ms(raw["occurred_at"]),
            data=raw.get("data") or {},
        )
        for raw in first_copies(raw_events)
        if raw.get("tenant", DEFAULT_TENANT) == tenant
    ]


def decimal_of(number: object) -> Decimal:
    """A JSON number as the exact decimal of its shortest text form."""
    if isinstance(number, bool) or not isinstance(number, int | float | str | Decimal):
        raise ValueError(f"not a decimal number: {number!r}")
    return Decimal(repr(number) if isinstance(number, float) else str(number))


@dataclass(frozen=True)
class Money:
    """Converts amounts to integer micro-units of the reporting currency, per event."""

    reporting_currency: str
    rates: Mapping[str, Fraction]

    @classmethod
    def configured(cls, reporting_currency: str, fx_rates: Mapping[str, str] | None) -> Money:
        """Rates read as exact decimals; the reporting currency is always worth 1."""
        reporting = reporting_currency.strip().upper()
        rates = {code.strip().upper(): Fraction(Decimal(rate)) for code, rate in (fx_rates or {}).items()}
        return cls(reporting, rates | {reporting: Fraction(1)})

    def micros(self, amount: object, currency: str | None) -> int:
        """`amount x rate` exactly, rounded half-even to a whole micro-unit."""
        code = (currency or self.reporting_currency).strip().upper()
        if code not in self.rates:
            raise ValueError(f"unknown currency {code!r}")
        exact = Fraction(decimal_of(amount)) * self.rates[code]
        return round(exact * MICROS_PER_UNIT)

    def amount_micros(self, event: Event) -> int:
        """The event's `amount` in reporting micro-units."""
        return self.micros(event.data["amount"], event.data.get("currency"))

    def mrr_micros(self, event: Event) -> int:
        """The event's `mrr` in reporting micro-units."""
        return self.micros(event.data["mrr"], event.data.get("currency"))


def allow_lists(overrides: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    """Default allow-lists, replaced per dimension by `overrides`, normalised like values."""
    lists = DEFAULT_ALLOW_LISTS | dict(overrides or {})
    return {dim: frozenset(_normalised(value) for value in values) for dim, values in lists.items()}


def _normalised(value: object) -> str:
    return str(value).strip().lower()


def segment_label(value: object, allowed: frozenset[str]) -> str:
    """A segment field as a bounded label: itself if allowed, else `other`; missing is `unknown`.

    Choice: a JSON null counts as missing; a non-string value is read as its text.
    """
    text = "" if value is None else _normalised(value)
    if not text:
        return "unknown"
    return text if text in allowed else "other"
