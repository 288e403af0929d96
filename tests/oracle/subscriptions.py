"""Subscriptions and customers rebuilt from their events by event time."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tests.oracle.events import Event, Money

STATUS_TYPES = ("subscription.started", "subscription.cancelled")
MRR_TYPES = ("subscription.started", "subscription.changed")


@dataclass(frozen=True)
class Period:
    """One activity period `[start, end)` of a subscription; `end` is inf while active."""

    customer_id: str
    start_ms: int
    end_ms: float
    end_key: tuple[int, str, str] | None

    def active_at(self, t_ms: int) -> bool:
        """Active at t when `start <= t < end`."""
        return self.start_ms <= t_ms < self.end_ms


@dataclass(frozen=True)
class MrrStep:
    """A started/changed event's MRR, in reporting micro-units."""

    key: tuple[int, str, str]
    is_change: bool
    micros: int


@dataclass(frozen=True)
class Subscription:
    """A subscription's activity periods and its MRR history, both in event-time order."""

    periods: tuple[Period, ...]
    steps: tuple[MrrStep, ...]

    def period_at(self, t_ms: int) -> Period | None:
        """The period active at t, if any."""
        return next((period for period in self.periods if period.active_at(t_ms)), None)

    def mrr_at(self, t_ms: int) -> int:
        """MRR of the latest started/changed event at or before t (0 before any)."""
        return _last([step.micros for step in self.steps if step.key[0] <= t_ms])

    def mrr_before(self, key: tuple[int, str, str]) -> int:
        """MRR in effect just before the event with this key, e.g. at a cancellation."""
        return _last([step.micros for step in self.steps if step.key < key])

    def mrr_decrease(self, step: MrrStep) -> int:
        """How much a changed event lowered the MRR in effect just before it (0 if it rose)."""
        return max(0, self.mrr_before(step.key) - step.micros)


def _last(values: list[int]) -> int:
    return values[-1] if values else 0


def build_subscriptions(events: Iterable[Event], money: Money) -> list[Subscription]:
    """Every subscription of the history, from its started/changed/cancelled events.

    Choices: a `started` while already active opens no new period (its MRR still counts as
    the latest); a `cancelled` while inactive is ignored; an empty period `[s, s)` is dropped.
    """
    by_id: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.type in (*STATUS_TYPES, "subscription.changed"):
            by_id[str(event.data["subscription_id"])].append(event)
    return [_subscription(sorted(group, key=lambda e: e.key), money) for group in by_id.values()]


def _subscription(events: list[Event], money: Money) -> Subscription:
    steps = tuple(
        MrrStep(e.key, e.type == "subscription.changed", money.mrr_micros(e))
        for e in events
        if e.type in MRR_TYPES
    )
    return Subscription(_periods(events), steps)


def _periods(events: list[Event]) -> tuple[Period, ...]:
    periods: list[Period] = []
    opened: Event | None = None
    for event in events:
        if event.type == "subscription.started" and opened is None:
            opened = event
        elif event.type == "subscription.cancelled" and opened is not None:
            periods.append(_period(opened, event))
            opened = None
    if opened is not None:
        periods.append(_period(opened, None))
    return tuple(period for period in periods if period.start_ms < period.end_ms)


def _period(started: Event, cancelled: Event | None) -> Period:
    return Period(
        customer_id=str(started.data["customer_id"]),
        start_ms=started.time_ms,
        end_ms=math.inf if cancelled is None else cancelled.time_ms,
        end_key=None if cancelled is None else cancelled.key,
    )


def customer_intervals(subscriptions: Iterable[Subscription]) -> dict[str, list[Period]]:
    """Per customer, the union of its subscriptions' periods as disjoint intervals.

    Touching periods merge (`[s1, e) + [e, e2)` is one interval: the customer never left).
    Choice: a period belongs to the customer named by the `started` event that opened it.
    """
    periods: dict[str, list[Period]] = defaultdict(list)
    for subscription in subscriptions:
        for period in subscription.periods:
            periods[period.customer_id].append(period)
    return {customer: _merged(group) for customer, group in periods.items()}


def _merged(periods: list[Period]) -> list[Period]:
    merged: list[Period] = []
    for period in sorted(periods, key=lambda p: p.start_ms):
        if merged and period.start_ms <= merged[-1].end_ms:
            last = merged[-1]
            if period.end_ms > last.end_ms:
                merged[-1] = Period(last.customer_id, last.start_ms, period.end_ms, period.end_key)
        else:
            merged.append(period)
    return merged
