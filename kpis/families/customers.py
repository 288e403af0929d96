"""Customers (the customer stage): activity intervals, acquisition and churn.

A customer's state lives in its customer's partition. Events-stage entities send it what they
know about it, keyed by customer id: a subscription its activity periods, a won deal its win
time, and for its churn risk (kpis.insights.risk) a ticket its times, its buyer its recent orders,
its respondent its negative survey answers. Each is a whole upsert of what its sender says, so
the customer keeps the latest one per sender and derives every contribution from them (the
at-risk periods too); no KPI scans customers at read time.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from kpis.buckets import Contribution, Segments
from kpis.config import KpiConfig
from kpis.entities import Entity, Family
from kpis.insights.risk import FACT_HORIZON_MS, counts_at, risk_spans
from kpis.partition import window_field
from kpis.timebase import ROLLING_MS, month_start_ms
from streams.events import Event

# Internal event types, with their `data`:
# a subscription's periods opened by this customer's `started` events, the earliest of them,
# and the times its MRR decreased while active (a risk signal):
#   {customer_id, subscription_id, started_ms, periods: [[start, end | None, plan, region, reason]],
#    contractions: [time]}
SUBSCRIPTION_PERIODS = "customer.subscription"
# a deal's earliest `deal.won` naming this customer: {customer_id, deal_id, won_ms}
DEAL_WON = "customer.deal"
# risk signals (kpis.insights.risk): a ticket {customer_id, ticket_id, created_ms, slow_reply_ms:
# its first reply when slower than SLOW_FIRST_RESPONSE_MS, else None}; the buyer's recent orders
# {customer_id, orders: [time]}; the respondent's recent negative survey answers
# {customer_id, negative: [time]}
TICKET = "customer.ticket"
ORDERS = "customer.orders"
FEEDBACK = "customer.feedback"
CONTRACTIONS = "contractions"  # signal key prefix of a subscription's contractions
SIGNALS: dict[str, Callable[[Mapping[str, Any]], list[Any]]] = {
    TICKET: lambda data: [data["created_ms"], data["slow_reply_ms"]],
    ORDERS: lambda data: data["orders"],
    FEEDBACK: lambda data: data["negative"],
}
SIGNAL_FACTORS = {ORDERS: "recent_orders", FEEDBACK: "negative_feedback", CONTRACTIONS: "mrr_contractions"}
INVOLUNTARY = "involuntary"

Span = tuple[int, int | None]  # [start, end) in ms; end None while still active


def while_active_at_window_start(
    tenant: str, name: str, segments: Segments, at_ms: int, value: int, spans: Sequence[Span], zone: str
) -> list[Contribution]:
    """`value` happening at `at_ms`, counted in a window at T only if a span holds the window start.

    Rolling W (cumulative field `name~W`): counted at T iff T-W < at <= T and s <= T-W < e, that
    is for T in [max(at, s + W), min(at, e) + W): +value at the first instant, -value at the
    second. mtd (windowed field `name~mtd`): at `at_ms` if a span holds the start of its month,
    which is the window start of every T whose window sees `at_ms`.
    """
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


def _shared_labels(period: list[Any]) -> list[Any]:
    # Labels come from short allow-lists: interned, every period shares the same strings.
    return [sys.intern(item) if isinstance(item, str) else item for item in period]


def _end(period: list[Any]) -> float:
    return math.inf if period[1] is None else period[1]


class Customer(Entity):
    """A customer: the latest periods of each of its subscriptions, win time of each deal, and
    latest risk signal of each sender."""

    kind = "customer"
    key_field = "customer_id"
    fields = ("subscriptions", "deals", "zone", "signals")

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, list[Any]] = {}  # id -> [earliest started ms, periods]
        self.deals: dict[str, int] = {}  # id -> earliest won ms
        self.zone = "UTC"  # of the month starts in the contributions (mtd churn)
        self.signals: dict[str, Any] = {}  # "<type>|<sender>" -> its latest risk signal

    def apply(self, event: Event, config: KpiConfig) -> bool:
        """Upsert what one subscription, deal or risk signal says; False when it changes nothing.

        No event ids are kept: the senders re-send whole upserts in order, and a redelivery
        re-sends a sender's versions in the order it produced them, so the last one applied
        is the sender's latest and an older copy is overwritten by the newer one behind it.
        """
        data = event.data
        if event.type in SIGNALS:
            return self._signal(f"{event.type}|{data.get('ticket_id', '')}", SIGNALS[event.type](data))
        table: dict[str, Any]
        signalled = False
        if event.type == SUBSCRIPTION_PERIODS:
            table, key = self.subscriptions, data["subscription_id"]
            value: Any = [data["started_ms"], [_shared_labels(p) for p in data["periods"]]]
            signalled = self._signal(f"{CONTRACTIONS}|{key}", data.get("contractions", []))
        else:
            table, key, value = self.deals, data["deal_id"], data["won_ms"]
        if table.get(key) == value and self.zone == config.timezone:
            return signalled
        table[key] = value
        self.zone = config.timezone
        return True

    def _signal(self, key: str, value: Any) -> bool:
        """Upsert one risk signal (an empty one is dropped); False when nothing changed.

        Tickets further than FACT_HORIZON_MS behind the customer's newest are forgotten.
        """
        if self.signals.get(key, []) == value:
            return False
        if value:
            self.signals[key] = value
        else:
            del self.signals[key]
        if key.startswith(TICKET):
            tickets = {k: v for k, v in self.signals.items() if k.startswith(TICKET)}
            horizon = max(created for created, _ in tickets.values()) - FACT_HORIZON_MS
            for old in [k for k, (created, _) in tickets.items() if created < horizon]:
                del self.signals[old]
        return True

    def risk_facts(self) -> dict[str, list[int]]:
        """The occurrence times of each risk factor (kpis.insights.risk.FACTORS)."""
        facts: defaultdict[str, list[int]] = defaultdict(list)
        for key, value in self.signals.items():
            kind = key.partition("|")[0]
            if kind == TICKET:
                created, slow_reply = value
                facts["ticket_load"].append(created)
                if slow_reply is not None:
                    facts["slow_first_responses"].append(slow_reply)
            else:
                facts[SIGNAL_FACTORS[kind]] += value
        facts["involuntary_cancellations"] = [
            p[1] for _, periods in self.subscriptions.values() for p in periods
            if p[1] is not None and p[4] == INVOLUNTARY
        ]
        return facts

    def risk_at(self, at_ms: int) -> tuple[list[int], str] | None:
        """The risk factor counts at `at` and the plan; None when nothing counts at `at` or the
        customer is not active then."""
        counts = counts_at(self.risk_facts(), at_ms)
        if not any(counts):
            return None
        for start, end, plan, *_ in self.intervals():
            if start <= at_ms and (end is None or at_ms < end):
                return counts, plan
        return None

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
        """Acquisition; +1/-1 active at each interval's bounds; churn of each ended interval;
        +1/-1 at risk at the bounds of each at-risk period."""
        out: list[Contribution] = []
        acquired = self.acquired_ms()
        if acquired is not None:
            out.append((acquired, tenant, "new_customers", (), 1))
        intervals = self.intervals()
        for risk_start, risk_end, risk_plan in risk_spans(self.risk_facts(), intervals):
            out += [(risk_start, tenant, "at_risk_customers", (("plan", risk_plan),), 1),
                    (risk_end, tenant, "at_risk_customers", (("plan", risk_plan),), -1)]
        for start, end, plan, region, reason in intervals:
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
    entities=dict.fromkeys((SUBSCRIPTION_PERIODS, DEAL_WON, *SIGNALS), Customer),
    stateless={},
    kpis=(),  # read together with the events stage's sums: see kpis.families.subscriptions
    cumulative_fields=frozenset(
        {"active_customers", "at_risk_customers", *(window_field("churned_customers", w) for w in ROLLING_MS)}
    ),
    stage="customers",
)
