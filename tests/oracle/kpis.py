"""The oracle: every KPI of kpis.md, evaluated literally at T over the deduplicated history.

Plain by design, for checking the engine: dedup, rebuild each entity from its events by event
time, then apply each definition with exact window bounds and `Fraction` arithmetic.

Choices where the specification is silent (the engine must match them):
- "Now" facts (a lead converted or touched, a cart checked out, a deal's amount, a ticket's
  creation, first reply and resolution) use every event of the history, whatever its time;
  point-in-time states (subscription activity and MRR, open tickets) use events at or before
  their instant. Windowed counts only see events in the window, so never events after T.
- Counts are of events: two `deal.won` events for one deal count twice (likewise orders for
  `repeat_purchase_rate`, cancellations and renewals for `renewal_rate`).
- A customer's `deal.won` is one whose own `customer_id` names it (the `deal.created`
  customer is not consulted); a won deal's cycle uses its earliest `deal.created`.
- A ticket reply is public unless `public` is `false` (absent or null mean true).
- `revenue_churn_rate` counts, for each subscription active at T-W, every MRR decrease of its
  `changed` events in W and, for every cancellation in W that ends one of its activity periods,
  the MRR in effect just before it: a same-id reactivation in W that contracts or cancels again
  counts again (a `cancelled` that ends no period is ignored here, but counts in `renewal_rate`).
- `task.completed.duration_seconds` becomes integer ms, sub-millisecond digits truncated.
- With `by`, a KPI's slice is present iff it holds at least one fact the KPI reads (see
  `SliceableKpi.kinds`): e.g. `traffic_to_lead_rate` is present (maybe null) for a channel with
  leads or visits, `won_revenue` for one with a `deal.won` (maybe 0.0, amount unknown).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tests.oracle.events import (
    MICROS_PER_UNIT,
    Event,
    Money,
    allow_lists,
    datetime_to_ms,
    decimal_of,
    first_copies,
    is_valid,
    segment_label,
    tenant_events,
)
from tests.oracle.subscriptions import (
    Period,
    Subscription,
    build_subscriptions,
    customer_intervals,
)

Exact = int | Fraction | None
FactValues = Mapping[str, list[Any]]

ROLLING_WINDOWS_MS = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000}
WINDOWS = (*ROLLING_WINDOWS_MS, "mtd")
SLICE_DIMENSIONS = ("channel", "region", "priority")
SPEND_CATEGORIES = ("marketing", "sales", "retention", "crm")

CATALOGUE = (
    "leads_created",
    "visits",
    "traffic_to_lead_rate",
    "lead_conversion_rate",
    "lead_abandonment_rate",
    "deals_won",
    "deals_lost",
    "win_rate",
    "won_revenue",
    "avg_deal_size",
    "sales_cycle_seconds_avg",
    "new_customers",
    "spend_marketing",
    "spend_sales",
    "spend_retention",
    "spend_crm",
    "cac",
    "marketing_roi",
    "crm_roi",
    "tickets_created",
    "first_response_seconds_avg",
    "first_response_seconds_p50",
    "first_response_seconds_p90",
    "resolution_seconds_avg",
    "open_tickets",
    "nps",
    "csat",
    "ces",
    "mrr",
    "active_customers",
    "arpu",
    "churn_rate",
    "retention_rate",
    "revenue_churn_rate",
    "net_new_mrr",
    "renewal_rate",
    "cltv",
    "ltv_to_cac",
    "retention_cost_per_customer",
    "orders",
    "avg_order_value",
    "repeat_purchase_rate",
    "cart_abandonment_rate",
    "active_users",
    "records_created",
    "routine_task_seconds_avg",
)


# ---------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """`(start, end]` for rolling windows, `[start, end]` for mtd; `start` is "T-W"."""

    start_ms: int
    end_ms: int
    includes_start: bool

    def contains(self, t_ms: int) -> bool:
        """Whether an event time lies in the window."""
        after_start = t_ms >= self.start_ms if self.includes_start else t_ms > self.start_ms
        return after_start and t_ms <= self.end_ms


def make_window(name: str, at: datetime, tz: str) -> Window:
    """The window `name` evaluated at `at`; `mtd` starts at midnight of day 1 in `tz`."""
    end_ms = datetime_to_ms(at)
    if name in ROLLING_WINDOWS_MS:
        return Window(end_ms - ROLLING_WINDOWS_MS[name], end_ms, includes_start=False)
    if name != "mtd":
        raise ValueError(f"unknown window {name!r}; expected one of {WINDOWS}")
    local = at.astimezone(ZoneInfo(tz))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return Window(datetime_to_ms(month_start), end_ms, includes_start=True)


# ---------------------------------------------------------------------------- history


@dataclass(frozen=True)
class History:
    """One tenant's deduplicated events, sorted by event time, with entity lookups."""

    by_type: Mapping[str, list[Event]]
    money: Money
    subscriptions: list[Subscription]
    customers: Mapping[str, list[Period]]

    def of(self, event_type: str) -> list[Event]:
        """Events of one type in event-time order."""
        return self.by_type.get(event_type, [])

    def ids(self, event_type: str, field: str) -> set[str]:
        """Entity ids named by at least one event of this type."""
        return {str(event.data[field]) for event in self.of(event_type)}

    def earliest(self, events: Iterable[Event], field: str) -> dict[str, Event]:
        """Per entity id, its earliest event among `events` (given in event-time order)."""
        first: dict[str, Event] = {}
        for event in events:
            first.setdefault(str(event.data[field]), event)
        return first


def build_history(events: list[Event], money: Money) -> History:
    """Index a tenant's events and rebuild its subscriptions and customers."""
    by_type: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.key):
        by_type[event.type].append(event)
    subscriptions = build_subscriptions(events, money)
    return History(by_type, money, subscriptions, customer_intervals(subscriptions))


# ---------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Fact:
    """One input of the sliceable KPIs, sliced by the segment fields of `labelled_by`."""

    kind: str
    labelled_by: Event
    value: Any


class LeadFate(NamedTuple):
    """A lead created in the window: converted or touched now."""

    converted: bool
    touched: bool


class WonDeal(NamedTuple):
    """A `deal.won` in the window: its deal's amount and cycle, when known."""

    amount_micros: int | None
    cycle_ms: int | None


class Order(NamedTuple):
    """An `order.placed` in the window."""

    customer_id: str
    amount_micros: int


def collect_facts(history: History, window: Window) -> list[Fact]:
    """Every sliceable fact of the window."""
    return [
        *_lead_facts(history, window),
        *_visit_facts(history, window),
        *_deal_facts(history, window),
        *_spend_facts(history, window),
        *_ticket_facts(history, window),
        *_order_facts(history, window),
        *_cart_facts(history, window),
    ]


def _in(history: History, event_type: str, window: Window) -> list[Event]:
    return [event for event in history.of(event_type) if window.contains(event.time_ms)]


def _lead_facts(history: History, window: Window) -> list[Fact]:
    converted = history.ids("lead.converted", "lead_id")
    touched = history.ids("lead.touched", "lead_id")
    facts = []
    for event in _in(history, "lead.created", window):
        lead_id = str(event.data["lead_id"])
        facts.append(Fact("lead", event, LeadFate(lead_id in converted, lead_id in touched)))
    return facts


def _visit_facts(history: History, window: Window) -> list[Fact]:
    return [Fact("visit", e, int(e.data.get("count", 1))) for e in _in(history, "site.visit", window)]


def _deal_facts(history: History, window: Window) -> list[Fact]:
    created = history.earliest(history.of("deal.created"), "deal_id")
    amounts = _deal_amounts(history)
    won = []
    for event in _in(history, "deal.won", window):
        deal_id = str(event.data["deal_id"])
        start = created.get(deal_id)
        cycle_ms = None if start is None else event.time_ms - start.time_ms
        won.append(Fact("won", event, WonDeal(amounts.get(deal_id), cycle_ms)))
    lost = [Fact("lost", e, None) for e in _in(history, "deal.lost", window)]
    return won + lost


def _deal_amounts(history: History) -> dict[str, int]:
    """Each deal's amount: that of its latest created/updated/won event carrying one."""
    carrying = [
        event
        for event_type in ("deal.created", "deal.updated", "deal.won")
        for event in history.of(event_type)
        if event.data.get("amount") is not None
    ]
    latest = {str(e.data["deal_id"]): e for e in sorted(carrying, key=lambda e: e.key)}
    return {deal_id: history.money.amount_micros(event) for deal_id, event in latest.items()}


def _spend_facts(history: History, window: Window) -> list[Fact]:
    return [
        Fact(f"spend_{e.data['category']}", e, history.money.amount_micros(e))
        for e in _in(history, "spend.recorded", window)
    ]


def _ticket_facts(history: History, window: Window) -> list[Fact]:
    created = history.earliest(history.of("ticket.created"), "ticket_id")
    public_agent_replies = [e for e in history.of("ticket.replied") if _is_public_agent_reply(e)]
    milestones = {
        "first_reply": history.earliest(public_agent_replies, "ticket_id"),
        "resolution": history.earliest(history.of("ticket.resolved"), "ticket_id"),
    }
    facts = [Fact("ticket", e, None) for e in _in(history, "ticket.created", window)]
    for kind, reached in milestones.items():
        for ticket_id, event in reached.items():
            if ticket_id in created and window.contains(event.time_ms):
                opened = created[ticket_id]
                facts.append(Fact(kind, opened, event.time_ms - opened.time_ms))
    return facts


def _is_public_agent_reply(reply: Event) -> bool:
    return reply.data["author"] == "agent" and reply.data.get("public") is not False


def _order_facts(history: History, window: Window) -> list[Fact]:
    return [
        Fact("order", e, Order(str(e.data["customer_id"]), history.money.amount_micros(e)))
        for e in _in(history, "order.placed", window)
    ]


def _cart_facts(history: History, window: Window) -> list[Fact]:
    checked_out = history.ids("cart.checked_out", "cart_id")
    return [
        Fact("cart", e, str(e.data["cart_id"]) in checked_out) for e in _in(history, "cart.created", window)
    ]


def values_by_kind(facts: Iterable[Fact]) -> FactValues:
    """Fact values grouped by kind (a missing kind reads as no values)."""
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for fact in facts:
        grouped[fact.kind].append(fact.value)
    return grouped


# ---------------------------------------------------------------------------- arithmetic


def ratio(numerator: Exact, denominator: Exact) -> Fraction | None:
    """Exact `numerator / denominator`, or None when either is undefined or the divisor is 0."""
    if numerator is None or not denominator:
        return None
    return Fraction(numerator) / Fraction(denominator)


def money(micros: int) -> Fraction:
    """Micro-units as exact currency units."""
    return Fraction(micros, MICROS_PER_UNIT)


def mean_seconds(durations_ms: Sequence[int]) -> Fraction | None:
    """Mean of integer-ms durations, in seconds."""
    return ratio(sum(durations_ms), 1000 * len(durations_ms))


def quantile_seconds(durations_ms: Sequence[int], q: Fraction) -> Fraction | None:
    """Value at rank q(n-1), interpolated linearly between its two order statistics."""
    if not durations_ms:
        return None
    ordered = sorted(durations_ms)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return Fraction(ordered[low] + (rank - low) * (ordered[high] - ordered[low]), 1000)


# ---------------------------------------------------------------------------- sliceable KPIs

CHANNEL = ("channel",)
CHANNEL_REGION = ("channel", "region")
CHANNEL_PRIORITY = ("channel", "priority")


@dataclass(frozen=True)
class SliceableKpi:
    """A KPI computed from facts only: `kinds` it reads, `dimensions` it is sliceable by."""

    kinds: tuple[str, ...]
    dimensions: tuple[str, ...]
    formula: Callable[[FactValues], Exact]


def _won_revenue_micros(facts: FactValues) -> int:
    return sum(deal.amount_micros for deal in facts["won"] if deal.amount_micros is not None)


def _avg_deal_size(facts: FactValues) -> Fraction | None:
    priced = [deal for deal in facts["won"] if deal.amount_micros is not None]
    return ratio(money(_won_revenue_micros(facts)), len(priced))


def _sales_cycle(facts: FactValues) -> Fraction | None:
    return mean_seconds([deal.cycle_ms for deal in facts["won"] if deal.cycle_ms is not None])


def _roi(gain_micros: Fraction | int, spend_micros: int) -> Fraction | None:
    return ratio(gain_micros - spend_micros, spend_micros)


def _repeat_purchase_rate(facts: FactValues) -> Fraction | None:
    orders_per_customer = Counter(order.customer_id for order in facts["order"])
    repeaters = sum(1 for count in orders_per_customer.values() if count >= 2)
    return ratio(repeaters, len(orders_per_customer))


def _spend_kpi(category: str) -> SliceableKpi:
    kind = f"spend_{category}"
    return SliceableKpi((kind,), CHANNEL, lambda facts: money(sum(facts[kind])))


def sliceable_kpis(gross_margin: Fraction) -> dict[str, SliceableKpi]:
    """Every KPI that a segment dimension can slice, by id."""
    return {
        "leads_created": SliceableKpi(("lead",), CHANNEL_REGION, lambda f: len(f["lead"])),
        "visits": SliceableKpi(("visit",), CHANNEL, lambda f: sum(f["visit"])),
        "traffic_to_lead_rate": SliceableKpi(
            ("lead", "visit"), CHANNEL, lambda f: ratio(len(f["lead"]), sum(f["visit"]))
        ),
        "lead_conversion_rate": SliceableKpi(
            ("lead",),
            CHANNEL_REGION,
            lambda f: ratio(sum(lead.converted for lead in f["lead"]), len(f["lead"])),
        ),
        "lead_abandonment_rate": SliceableKpi(
            ("lead",),
            CHANNEL,
            lambda f: ratio(sum(not any(lead) for lead in f["lead"]), len(f["lead"])),
        ),
        "deals_won": SliceableKpi(("won",), CHANNEL_REGION, lambda f: len(f["won"])),
        "deals_lost": SliceableKpi(("lost",), CHANNEL_REGION, lambda f: len(f["lost"])),
        "win_rate": SliceableKpi(
            ("won", "lost"),
            CHANNEL_REGION,
            lambda f: ratio(len(f["won"]), len(f["won"]) + len(f["lost"])),
        ),
        "won_revenue": SliceableKpi(("won",), CHANNEL_REGION, lambda f: money(_won_revenue_micros(f))),
        "avg_deal_size": SliceableKpi(("won",), CHANNEL_REGION, _avg_deal_size),
        "sales_cycle_seconds_avg": SliceableKpi(("won",), CHANNEL, _sales_cycle),
        **{f"spend_{category}": _spend_kpi(category) for category in SPEND_CATEGORIES},
        "marketing_roi": SliceableKpi(
            ("won", "spend_marketing"),
            CHANNEL,
            lambda f: _roi(_won_revenue_micros(f), sum(f["spend_marketing"])),
        ),
        "crm_roi": SliceableKpi(
            ("won", "spend_crm"),
            CHANNEL,
            lambda f: _roi(_won_revenue_micros(f) * gross_margin, sum(f["spend_crm"])),
        ),
        "tickets_created": SliceableKpi(("ticket",), CHANNEL_PRIORITY, lambda f: len(f["ticket"])),
        "first_response_seconds_avg": SliceableKpi(
            ("first_reply",), CHANNEL_PRIORITY, lambda f: mean_seconds(f["first_reply"])
        ),
        "first_response_seconds_p50": SliceableKpi(
            ("first_reply",),
            CHANNEL_PRIORITY,
            lambda f: quantile_seconds(f["first_reply"], Fraction(1, 2)),
        ),
        "first_response_seconds_p90": SliceableKpi(
            ("first_reply",),
            CHANNEL_PRIORITY,
            lambda f: quantile_seconds(f["first_reply"], Fraction(9, 10)),
        ),
        "resolution_seconds_avg": SliceableKpi(
            ("resolution",), CHANNEL_PRIORITY, lambda f: mean_seconds(f["resolution"])
        ),
        "orders": SliceableKpi(("order",), CHANNEL, lambda f: len(f["order"])),
        "avg_order_value": SliceableKpi(
            ("order",),
            CHANNEL,
            lambda f: ratio(money(sum(o.amount_micros for o in f["order"])), len(f["order"])),
        ),
        "repeat_purchase_rate": SliceableKpi(("order",), CHANNEL, _repeat_purchase_rate),
        "cart_abandonment_rate": SliceableKpi(
            ("cart",), CHANNEL, lambda f: ratio(sum(not done for done in f["cart"]), len(f["cart"]))
        ),
    }


def sliced(
    kpis: Mapping[str, SliceableKpi], facts: list[Fact], dimension: str, allowed: frozenset[str]
) -> dict[str, dict[str, Exact]]:
    """`{kpi: {label: value}}` for the KPIs sliceable by `dimension`, non-empty slices only."""
    by_label: defaultdict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_label[segment_label(fact.labelled_by.data.get(dimension), allowed)].append(fact)
    values = {label: values_by_kind(group) for label, group in by_label.items()}
    return {
        kpi_id: {
            label: kpi.formula(slice_values)
            for label, slice_values in values.items()
            if any(slice_values[kind] for kind in kpi.kinds)
        }
        for kpi_id, kpi in kpis.items()
        if dimension in kpi.dimensions
    }


# ---------------------------------------------------------------------------- other KPIs


def acquisition_times(history: History) -> dict[str, int]:
    """Per customer, the earliest of its `deal.won` and `subscription.started` event times."""
    acquired: dict[str, int] = {}
    for event in [*history.of("deal.won"), *history.of("subscription.started")]:
        customer_id = event.data.get("customer_id")
        if customer_id is not None:
            key = str(customer_id)
            acquired[key] = min(acquired.get(key, event.time_ms), event.time_ms)
    return acquired


def new_customers(history: History, window: Window) -> int:
    """Customers whose acquisition time is in the window."""
    return sum(1 for t_ms in acquisition_times(history).values() if window.contains(t_ms))


def cac(history: History, window: Window) -> Fraction | None:
    """`(spend_marketing + spend_sales) / new_customers` over the window."""
    facts = values_by_kind(collect_facts(history, window))
    spend = sum(facts["spend_marketing"]) + sum(facts["spend_sales"])
    return ratio(money(spend), new_customers(history, window))


def survey_kpis(history: History, window: Window) -> dict[str, Exact]:
    """NPS, CSAT (top-2 box, percent) and CES (mean score) over the window's responses."""
    scores: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for event in _in(history, "survey.answered", window):
        scale_max = int(event.data.get("scale_max") or 5)
        scores[event.data["survey"]].append((int(event.data["score"]), scale_max))
    nps = [score for score, _ in scores["nps"]]
    csat = scores["csat"]
    ces = [score for score, _ in scores["ces"]]
    promoters_minus_detractors = sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)
    return {
        "nps": ratio(100 * promoters_minus_detractors, len(nps)),
        "csat": ratio(100 * sum(score >= scale - 1 for score, scale in csat), len(csat)),
        "ces": ratio(sum(ces), len(ces)),
    }


def open_tickets(history: History, t_ms: int) -> int:
    """Tickets whose latest status event at or before t is `created` or `reopened`."""
    status_types = ("ticket.created", "ticket.resolved", "ticket.reopened")
    status_events = [e for kind in status_types for e in history.of(kind) if e.time_ms <= t_ms]
    latest = {str(e.data["ticket_id"]): e for e in sorted(status_events, key=lambda e: e.key)}
    return sum(1 for event in latest.values() if event.type != "ticket.resolved")


def mrr_at(history: History, t_ms: int) -> int:
    """Sum of the MRR (micro-units) of the subscriptions active at t."""
    return sum(sub.mrr_at(t_ms) for sub in history.subscriptions if sub.period_at(t_ms))


def active_customers(history: History, t_ms: int) -> int:
    """Customers with an active subscription at t."""
    return sum(1 for intervals in history.customers.values() if any(i.active_at(t_ms) for i in intervals))


def churn_rate(history: History, window: Window) -> Fraction | None:
    """Customers active at T-W whose interval ends by T, over customers active at T-W."""
    at_start = [
        interval
        for intervals in history.customers.values()
        for interval in intervals
        if interval.active_at(window.start_ms)
    ]
    churned = [interval for interval in at_start if interval.end_ms <= window.end_ms]
    return ratio(len(churned), len(at_start))


def revenue_churn_rate(history: History, window: Window) -> Fraction | None:
    """Contraction and cancellation MRR in W of subscriptions active at T-W, over mrr(T-W)."""
    lost_micros = sum(
        _mrr_lost(subscription, window)
        for subscription in history.subscriptions
        if subscription.period_at(window.start_ms) is not None
    )
    return ratio(lost_micros, mrr_at(history, window.start_ms))


def _mrr_lost(subscription: Subscription, window: Window) -> int:
    contraction = sum(
        subscription.mrr_decrease(step)
        for step in subscription.steps
        if step.is_change and window.contains(step.key[0])
    )
    churned = sum(
        subscription.mrr_before(period.end_key)
        for period in subscription.periods
        if period.end_key is not None and window.contains(period.end_key[0])
    )
    return contraction + churned


def renewal_rate(history: History, window: Window) -> Fraction | None:
    """Renewals in W over renewals plus cancellations in W."""
    renewals = len(_in(history, "subscription.renewed", window))
    cancellations = len(_in(history, "subscription.cancelled", window))
    return ratio(renewals, renewals + cancellations)


def adoption_kpis(history: History, window: Window) -> dict[str, Exact]:
    """Distinct users who logged in, records created and mean routine-task time in W."""
    logins = _in(history, "user.login", window)
    durations_ms = [
        int(decimal_of(e.data["duration_seconds"]) * 1000) for e in _in(history, "task.completed", window)
    ]
    return {
        "active_users": len({str(e.data["user_id"]) for e in logins}),
        "records_created": len(_in(history, "record.created", window)),
        "routine_task_seconds_avg": mean_seconds(durations_ms),
    }


def subscription_kpis(
    history: History, window: Window, spend_retention: Fraction, gross_margin: Fraction
) -> dict[str, Exact]:
    """MRR, customers, churn, renewals and the LTV family (which always use 30d)."""
    t_ms = window.end_ms
    mrr_now = money(mrr_at(history, t_ms))
    customers_now = active_customers(history, t_ms)
    churn = churn_rate(history, window)
    arpu = ratio(mrr_now, customers_now)
    month = Window(t_ms - ROLLING_WINDOWS_MS["30d"], t_ms, includes_start=False)
    cltv = ratio(None if arpu is None else arpu * gross_margin, churn_rate(history, month))
    return {
        "mrr": mrr_now,
        "active_customers": customers_now,
        "arpu": arpu,
        "churn_rate": churn,
        "retention_rate": None if churn is None else 1 - churn,
        "revenue_churn_rate": revenue_churn_rate(history, window),
        "net_new_mrr": mrr_now - money(mrr_at(history, window.start_ms)),
        "renewal_rate": renewal_rate(history, window),
        "cltv": cltv,
        "ltv_to_cac": ratio(cltv, cac(history, month)),
        "retention_cost_per_customer": ratio(spend_retention, customers_now),
    }


# ---------------------------------------------------------------------------- entry points


def compute_kpis(
    events: Iterable[Mapping[str, Any]],
    at: datetime,
    *,
    window: str,
    by: str | None = None,
    tenant: str = "default",
    timezone: str = "UTC",
    reporting_currency: str = "USD",
    fx_rates: dict[str, str] | None = None,
    gross_margin: str = "1.0",
    segments: dict[str, list[str]] | None = None,
) -> dict[str, object]:
    """Every catalogue KPI of `tenant` at `at` over `window`, optionally sliced `by` a dimension.

    Counts are int, other values float (correctly rounded from the exact value) or None.
    """
    if by is not None and by not in SLICE_DIMENSIONS:
        raise ValueError(f"cannot slice by {by!r}; expected one of {SLICE_DIMENSIONS}")
    money_rules = Money.configured(reporting_currency, fx_rates)
    history = build_history(tenant_events(events, tenant), money_rules)
    span = make_window(window, at, timezone)
    margin = Fraction(Decimal(gross_margin))
    facts = collect_facts(history, span)
    kpis = sliceable_kpis(margin)
    values: dict[str, Any] = {kpi_id: kpi.formula(values_by_kind(facts)) for kpi_id, kpi in kpis.items()}
    values |= {
        "new_customers": new_customers(history, span),
        "cac": cac(history, span),
        "open_tickets": open_tickets(history, span.end_ms),
        **survey_kpis(history, span),
        **subscription_kpis(history, span, values["spend_retention"], margin),
        **adoption_kpis(history, span),
    }
    if by is not None:
        values |= sliced(kpis, facts, by, allow_lists(segments)[by])
    return {kpi_id: _reported(values[kpi_id]) for kpi_id in CATALOGUE}


def _reported(value: Exact | dict[str, Exact]) -> object:
    if isinstance(value, dict):
        return {label: _reported(v) for label, v in value.items()}
    return float(value) if isinstance(value, Fraction) else value


def events_processed(events: Iterable[Mapping[str, Any]]) -> int:
    """Distinct `(source, id)` among valid events, all tenants."""
    return len(first_copies(events))


def events_rejected(events: Iterable[Mapping[str, Any]]) -> int:
    """Deliveries skipped as invalid (unknown type), every copy counted."""
    return sum(1 for raw in events if not is_valid(raw))
