"""Subscriptions and revenue: MRR, customers, churn, renewals and the LTV family.

A subscription (events stage) keeps its started/changed/cancelled events in event-time order
and replays them on demand, so a `changed` or `cancelled` that arrives before its
`started` lands where it belongs. It contributes MRR and revenue churn itself, and sends its
activity periods to its customer (kpis.families.customers), which contributes customer counts
and churn. Renewals are counted as they come, without state. Every KPI below is read from
those bucket sums.
"""

from __future__ import annotations

import sys
from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kpis.buckets import Contribution, Segments
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent
from kpis.families.customers import SUBSCRIPTION_PERIODS, Span, while_active_at_window_start
from kpis.formulas import MICRO, Kpi, Totals, Value, count, money
from kpis.partition import window_field
from kpis.timebase import ROLLING_MS
from kpis.values import UNKNOWN, segment, to_micro
from streams.events import Event

STARTED, CHANGED, CANCELLED = "started", "changed", "cancelled"
KINDS = {f"subscription.{kind}": kind for kind in (STARTED, CHANGED, CANCELLED)}


def _label(value: Any, dimension: str, config: KpiConfig) -> str:
    # Labels come from a short allow-list: interned, every subscription shares the same strings.
    return sys.intern(segment(value, dimension, config))


def _facts(event: Event, config: KpiConfig) -> list[Any]:
    """What the subscription keeps of one event, after `[time, uid]`."""
    data = event.data
    kind = KINDS[event.type]  # the shared constant, not a new string per event
    if kind == STARTED:
        mrr = to_micro(data["mrr"], data.get("currency"), config)
        plan, region = _label(data.get("plan"), "plan", config), _label(data.get("region"), "region", config)
        return [kind, mrr, plan, region, str(data["customer_id"])]
    if kind == CHANGED:
        # A change that names no plan keeps the plan it had.
        new_plan = None if data.get("plan") is None else _label(data["plan"], "plan", config)
        return [kind, to_micro(data["mrr"], data.get("currency"), config), new_plan]
    return [kind, sys.intern(data.get("reason") or UNKNOWN)]


@dataclass
class Replay:
    """A subscription's history replayed in event-time order."""

    # (customer of the opening `started`, [start, end | None, plan, region, reason]); no empty ones
    periods: list[tuple[str, list[Any]]] = field(default_factory=list)
    # (time, labels, MRR counted from then on: 0 while inactive)
    mrr_steps: list[tuple[int, Segments, int]] = field(default_factory=list)
    # (time, labels, MRR lost): contractions, and the MRR of periods ended by a cancellation
    losses: list[tuple[int, Segments, int]] = field(default_factory=list)
    # (time, labels) of every cancellation, whether it ends a period or not
    cancellations: list[tuple[int, Segments]] = field(default_factory=list)
    # earliest `started` per customer it names
    first_started: dict[str, int] = field(default_factory=dict)
    # (customer of the period in progress, time) of each MRR decrease, for its churn risk
    contractions: list[tuple[str, int]] = field(default_factory=list)

    def spans(self) -> list[Span]:
        """Every activity period as [start, end)."""
        return [(period[0], period[1]) for _, period in self.periods]


def replay(events: Iterable[list[Any]]) -> Replay:
    """Run the status machine over events in event-time order.

    As the oracle reads kpis.md: a `started` while active opens nothing (its MRR still
    counts), a `cancelled` while inactive ends nothing, an empty period `[s, s)` is dropped; MRR
    at t is that of the latest started/changed at or before t, whatever the activity.
    """
    out = Replay()
    mrr, plan, region = 0, UNKNOWN, UNKNOWN
    opened: tuple[int, str] | None = None  # (start, customer) of the period in progress
    for time_ms, _, kind, *facts in events:
        labels = (("plan", plan), ("region", region))
        if kind == STARTED:
            mrr, plan, region, customer = facts
            out.first_started.setdefault(customer, time_ms)
            opened = opened or (time_ms, customer)
        elif kind == CHANGED:
            if facts[0] < mrr:
                out.losses.append((time_ms, labels, mrr - facts[0]))
                if opened is not None:
                    out.contractions.append((opened[1], time_ms))
            mrr, plan = facts[0], facts[1] or plan
        else:
            out.cancellations.append((time_ms, (*labels, ("reason", facts[0]))))
            if opened is not None and opened[0] < time_ms:
                out.periods.append((opened[1], [opened[0], time_ms, plan, region, facts[0]]))
                out.losses.append((time_ms, labels, mrr))
            opened = None
        out.mrr_steps.append((time_ms, (("plan", plan), ("region", region)), mrr if opened else 0))
    if opened is not None:
        out.periods.append((opened[1], [opened[0], None, plan, region, None]))
    return out


def _step_contributions(
    tenant: str, name: str, steps: Iterable[tuple[int, Segments, int]]
) -> list[Contribution]:
    """Changes of a step function (each step holds until the next) as cumulative contributions."""
    out: list[Contribution] = []
    held: tuple[Segments, int] = ((), 0)
    for time_ms, segments, value in steps:
        if (segments, value) == held:
            continue
        if held[1]:
            out.append((time_ms, tenant, name, held[0], -held[1]))
        if value:
            out.append((time_ms, tenant, name, segments, value))
        held = (segments, value)
    return out


def subscription_renewed(event: Event, config: KpiConfig) -> list[Contribution]:
    """A renewal: a count in its window (the most frequent subscription event, kept nowhere)."""
    return [(event.time_ms, event.tenant, "renewals", (), 1)]


class Subscription(Entity):
    """A subscription: its status and MRR events, kept in event-time order (ties by uid)."""

    kind = "subscription"
    key_field = "subscription_id"
    fields = ("events", "zone")

    def __init__(self) -> None:
        super().__init__()
        # [time, uid, kind, *facts]: started [mrr, plan, region, customer], changed [mrr, plan or
        # None], cancelled [reason]
        self.events: list[list[Any]] = []
        self.zone = "UTC"  # of the month starts in the contributions (mtd revenue churn)
        self._history: Replay | None = None  # replay(self.events), until an insert or release

    def release(self) -> None:
        """Drop the cached replay."""
        self._history = None

    def history(self) -> Replay:
        """The replay of the events, computed once per state (contributions and emits share it)."""
        if self._history is None:
            self._history = replay(self.events)
        return self._history

    def apply(self, event: Event, config: KpiConfig) -> bool:
        """Insert the event at its place in event time, once; False when it was already applied.

        Its uid is kept with it, so the `ids` set of other entities would only repeat them.
        """
        uid = event.uid
        if any(kept[1] == uid for kept in self.events):
            return False
        self.zone = config.timezone
        insort(self.events, [event.time_ms, uid, *_facts(event, config)])
        self._history = None
        return True

    def contributions(self, tenant: str) -> list[Contribution]:
        """MRR while active, revenue lost while active at the window start, cancellations."""
        history = self.history()
        out = _step_contributions(tenant, "mrr_micro", history.mrr_steps)
        spans = history.spans()
        for time_ms, labels, lost in history.losses:
            if lost:
                out += while_active_at_window_start(
                    tenant, "mrr_churned_micro", labels, time_ms, lost, spans, self.zone
                )
        out += [(time_ms, tenant, "cancellations", labels, 1) for time_ms, labels in history.cancellations]
        return out

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """Per customer named by a `started`: the periods its starts opened, and the earliest."""
        history = self.history()
        return [
            (customer, SUBSCRIPTION_PERIODS, started_ms, {
                "customer_id": customer,
                "subscription_id": entity_id,
                "started_ms": started_ms,
                "periods": [period for owner, period in history.periods if owner == customer],
                "contractions": [t for owner, t in history.contractions if owner == customer],
            })
            for customer, started_ms in sorted(history.first_started.items())
        ]


# -- KPIs: exact fractions, converted to float once ---------------------------------------

Exact = Fraction | None


def _div(numerator: Exact | int, denominator: Exact | int) -> Exact:
    """Exact quotient; None when either side is undefined or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return Fraction(numerator) / Fraction(denominator)


def _reported(formula: Callable[[Totals], Exact]) -> Callable[[Totals], Value]:
    def compute(t: Totals) -> Value:
        value = formula(t)
        return None if value is None else float(value)

    return compute


def _mrr(t: Totals) -> Fraction:
    return Fraction(t("mrr_micro@at"), MICRO)


def _arpu(t: Totals) -> Exact:
    return _div(_mrr(t), t("active_customers@at"))


def _churn(t: Totals) -> Exact:
    return _div(t("churned_customers"), t("active_customers@start"))


def _retention(t: Totals) -> Exact:
    churn = _churn(t)
    return None if churn is None else 1 - churn


def _cac(t: Totals) -> Exact:
    return _div(Fraction(t("spend_marketing_micro") + t("spend_sales_micro"), MICRO), t("new_customers"))


def _cltv(t: Totals) -> Exact:
    arpu = _arpu(t)
    return _div(None if arpu is None else arpu * t.gross_margin, _churn(t.reference))


SUBSCRIPTION_KPIS = (
    Kpi("new_customers", "Customers acquired", "customers whose acquisition time is in W", "count",
        ("new_customers",), count("new_customers")),
    Kpi("cac", "Customer acquisition cost", "(spend_marketing + spend_sales) / new_customers",
        "currency", ("spend_marketing_micro", "spend_sales_micro", "new_customers"), _reported(_cac)),
    Kpi("mrr", "Monthly recurring revenue", "sum of MRR of subscriptions active at T", "currency",
        ("mrr_micro",), _reported(_mrr), point_in_time=True),
    Kpi("active_customers", "Customers with an active subscription", "customers active at T",
        "count", ("active_customers",), count("active_customers@at"), point_in_time=True),
    Kpi("arpu", "Average revenue per customer", "mrr / active_customers", "currency",
        ("mrr_micro", "active_customers"), _reported(_arpu), point_in_time=True),
    Kpi("churn_rate", "Customer churn", "customers active at T-W whose activity ended by T "
        "/ customers active at T-W", "ratio", ("churned_customers", "active_customers"),
        _reported(_churn)),
    Kpi("retention_rate", "Customer retention", "1 - churn_rate", "ratio",
        ("churned_customers", "active_customers"), _reported(_retention)),
    Kpi("revenue_churn_rate", "Gross MRR churn", "(MRR cancelled + contracted in W, of "
        "subscriptions active at T-W) / mrr(T-W)", "ratio", ("mrr_churned_micro", "mrr_micro"),
        _reported(lambda t: _div(t("mrr_churned_micro"), t("mrr_micro@start")))),
    Kpi("net_new_mrr", "Net new MRR", "mrr(T) - mrr(T-W)", "currency", ("mrr_micro",),
        lambda t: money(t("mrr_micro@at") - t("mrr_micro@start"))),
    Kpi("renewal_rate", "Renewal rate", "renewals / (renewals + cancellations) in W", "ratio",
        ("renewals", "cancellations"),
        _reported(lambda t: _div(t("renewals"), t("renewals") + t("cancellations")))),
    Kpi("cltv", "Customer lifetime value", "arpu * gross_margin / churn_rate(30d)", "currency",
        ("mrr_micro", "active_customers", "churned_customers"), _reported(_cltv), point_in_time=True),
    Kpi("ltv_to_cac", "Lifetime value to acquisition cost", "cltv / cac(30d)", "ratio",
        ("mrr_micro", "active_customers", "churned_customers", "spend_marketing_micro",
         "spend_sales_micro", "new_customers"),
        _reported(lambda t: _div(_cltv(t), _cac(t.reference)))),
    Kpi("retention_cost_per_customer", "Retention spend per active customer",
        "spend_retention / active_customers", "currency", ("spend_retention_micro", "active_customers"),
        _reported(lambda t: _div(Fraction(t("spend_retention_micro"), MICRO), t("active_customers@at")))),
)

SUBSCRIPTIONS = Family(
    name="subscriptions",
    entities=dict.fromkeys(KINDS, Subscription),
    stateless={"subscription.renewed": subscription_renewed},
    kpis=SUBSCRIPTION_KPIS,
    cumulative_fields=frozenset({"mrr_micro", *(window_field("mrr_churned_micro", w) for w in ROLLING_MS)}),
)
