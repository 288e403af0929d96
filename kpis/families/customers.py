"""Customers (the customer stage): activity intervals, acquisition and churn.

A customer's state lives in its customer's partition. Events-stage entities send it what they
know about it, keyed by customer id: a subscription its activity periods, a won deal its win
time. Each is a whole upsert of what its sender says, so the customer keeps the latest one per
sender and derives every contribution from them; no KPI scans customers at read time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from kpis.buckets import Contribution, Segments
from kpis.config import KpiConfig
from kpis.entities import Entity, Family
from kpis.partition import window_field
from kpis.timebase import ROLLING_MS, month_start_ms
from streams.events import Event

# Internal event types, with their `data`:
# a subscription's periods opened by this customer's `started` events, and the earliest of them:
#   {customer_id, subscription_id, started_ms, periods: [[start, end | None, plan, region, reason]]}
SUBSCRIPTION_PERIODS = "customer.subscription"
# a deal's earliest `deal.won` naming this customer: {customer_id, deal_id, won_ms}
DEAL_WON = "customer.deal"

Span = tuple[int, int | None]  # [start, end) in ms; end None while still active


def while_active_at_window_start(
    tenant: str, name: str, segments: Segments, at_ms: int, value: int, spans: Iterable[Span], zone: str
) -> list[Contribution]:
    """`value` happening at `at_ms`, counted in a window at T only if a span holds the window start.

    Rolling W (cumulative field `name~W`): counted at T iff T-W < at <= T and s <= T-W < e, that
    is for T in [max(at, s + W), min(at, e) + W): +value at the first instant, -value at the
    second. mtd (windowed field `name~mtd`): at `at_ms` if a span holds the start of its month,
    which is the window start of every T whose window sees `at_ms`.
    """
    spans = list(spans)
    out: list[Contribution] = []
    for window, width in ROLLING_MS.items():
        field = window_field(name, window)
        for start, end in spans:
            first = max(at_ms, start + width)
            last = (at_ms if end is None else min(at_ms, end)) + width
            if first < last:
                out += [(first, tenant, field, segments, value), (last, tenant, field, segments, -value)]
    month = month_start_ms(at_ms, ZoneInfo(zone))
    if any(start <= month < (math.inf if end is None else end) for start, end in spans):
        out.append((at_ms, tenant, window_field(name, "mtd"), segments, value))
    return out


def _end(period: list[Any]) -> float:
    return math.inf if period[1] is None else period[1]


class Customer(Entity):
    """A customer: the latest periods of each of its subscriptions and win time of each deal."""

    kind = "customer"
    key_field = "customer_id"
    fields = ("subscriptions", "deals", "zone")

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, list[Any]] = {}  # id -> [earliest started ms, periods]
        self.deals: dict[str, int] = {}  # id -> earliest won ms
        self.zone = "UTC"  # of the month starts in the contributions (mtd churn)

    def apply(self, event: Event, config: KpiConfig) -> bool:
        """Upsert what one subscription or deal says; False when it changes nothing.

        No event ids are kept: the senders re-send whole upserts in order, and a redelivery
        re-sends a sender's versions in the order it produced them, so the last one applied
        is the sender's latest and an older copy is overwritten by the newer one behind it.
        """
        data = event.data
        table: dict[str, Any]
        if event.type == SUBSCRIPTION_PERIODS:
            table, key = self.subscriptions, data["subscription_id"]
            value: Any = [data["started_ms"], data["periods"]]
        else:
            table, key, value = self.deals, data["deal_id"], data["won_ms"]
        if table.get(key) == value and self.zone == config.timezone:
            return False
        table[key] = value
        self.zone = config.timezone
        return True

    def acquired_ms(self) -> int | None:
        """The earliest of its subscriptions' starts and its deals' wins."""
        times = [started for started, _ in self.subscriptions.values()] + list(self.deals.values())
        return min(times, default=None)

    def intervals(self) -> list[list[Any]]:
        """Disjoint activity intervals `[start, end | None, plan, region, reason]`.

        Overlapping or touching periods merge (the customer never left); an interval takes the
        labels of the period that ends it, so its churn is labelled by what churned.
        """
        periods = [p for _, (_, ps) in sorted(self.subscriptions.items()) for p in ps]
        merged: list[list[Any]] = []
        for period in sorted(periods, key=lambda p: (p[0], _end(p))):
            if not merged or period[0] > _end(merged[-1]):
                merged.append(period)
            elif _end(period) > _end(merged[-1]):
                merged[-1] = [merged[-1][0], *period[1:]]
        return merged

    def contributions(self, tenant: str) -> list[Contribution]:
        """Acquisition; +1/-1 active at each interval's bounds; churn of each ended interval."""
        out: list[Contribution] = []
        acquired = self.acquired_ms()
        if acquired is not None:
            out.append((acquired, tenant, "new_customers", (), 1))
        for start, end, plan, region, reason in self.intervals():
            place = (("plan", plan), ("region", region))
            out.append((start, tenant, "active_customers", place, 1))
            if end is not None:
                out.append((end, tenant, "active_customers", place, -1))
                churn = (*place, ("reason", reason))
                out += while_active_at_window_start(
                    tenant, "churned_customers", churn, end, 1, [(start, end)], self.zone
                )
        return out


CUSTOMERS = Family(
    name="customers",
    entities={SUBSCRIPTION_PERIODS: Customer, DEAL_WON: Customer},
    stateless={},
    kpis=(),  # read together with the events stage's sums: see kpis.families.subscriptions
    cumulative_fields=frozenset(
        {"active_customers", *(window_field("churned_customers", w) for w in ROLLING_MS)}
    ),
    stage="customers",
)
