"""Deterministic synthetic CRM histories in arrival order, to check the engine against the oracle.

A small company per tenant: leads and deals (USD/EUR/GBP), site visits and spend, tickets with
bot/private/public replies, surveys, subscriptions with changes, renewals, cancellations and
reactivations (same and new ids), orders and carts, CRM user activity. Arrival order is event
order perturbed: jitter of up to 3 hours, `late_fraction` up to 5 days late, `duplicate_rate`
exact re-deliveries up to 3 days later, and forced inversions (a `deal.won` before its
`deal.created`, a `subscription.changed` before its `started`).

Evaluate with `FX_RATES` and the reporting currency USD: a USD amount may omit its currency.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.oracle.events import DEFAULT_ALLOW_LISTS, datetime_to_ms

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
SUBSCRIPTION_HISTORY_DAYS = 120
FX_RATES = {"EUR": "1.08", "GBP": "1.26735"}  # 5 decimals: conversions hit half-even rounding
FAMILIES = ("sales", "marketing", "support", "surveys", "subscriptions", "commerce", "adoption")
FAMILY_WEIGHTS = {
    "sales": 20,
    "marketing": 8,
    "support": 22,
    "surveys": 6,
    "subscriptions": 14,
    "commerce": 15,
    "adoption": 15,
}
OFF_LIST_VALUES = {  # normalised by the engine to an allowed value, `other` or `unknown`
    "channel": ("tiktok", " Web ", "ADS", ""),
    "region": ("mena", " EMEA", ""),
    "priority": ("critical", "High ", ""),
    "plan": ("legacy", "Pro"),
}
PLAN_MRR = {"free": (0, 0), "starter": (19, 49), "pro": (99, 299), "enterprise": (800, 3000)}
EMPLOYEES = tuple(f"usr_{number:03d}" for number in range(1, 31))
TEAMS = ("sales", "support", "success")


@dataclass
class Draft:
    """A generated event, its event time, and a forced arrival time if any."""

    event: dict[str, Any]
    time_ms: int
    arrival_ms: int | None = None


@dataclass
class Company:
    """One tenant's simulated company: id counters, customers and the events it emitted."""

    rng: random.Random
    tenant: str
    end_ms: int
    days: int
    event_numbers: Counter[str]
    drafts: list[Draft] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    entity_numbers: Counter[str] = field(default_factory=Counter)

    def entity_id(self, prefix: str) -> str:
        """A new id for an entity of this kind, unique within the tenant."""
        self.entity_numbers[prefix] += 1
        return f"{prefix}_{self.entity_numbers[prefix]:05d}"

    def known_id(self, prefix: str) -> str:
        """An id of an entity of this kind already created (or the first one)."""
        return f"{prefix}_{self.rng.randint(1, max(1, self.entity_numbers[prefix])):05d}"

    def customer(self, p_new: float = 0.3) -> str:
        """An existing customer, or with probability `p_new` a new one."""
        if not self.customers or self.rng.random() < p_new:
            self.customers.append(self.entity_id("cus"))
            return self.customers[-1]
        return self.rng.choice(self.customers)

    def employee(self) -> str:
        """A CRM user."""
        return self.rng.choice(EMPLOYEES)

    def recent_time(self, days: int | None = None) -> int:
        """A random event time within the last `days` (default: the history's span)."""
        return self.end_ms - self.rng.randint(1, (days or self.days) * DAY_MS)

    def segment(self, dimension: str) -> dict[str, str]:
        """A segment field: mostly allowed, sometimes off-list, empty or missing."""
        draw = self.rng.random()
        if draw < 0.07:
            return {}
        values = OFF_LIST_VALUES if draw < 0.17 else DEFAULT_ALLOW_LISTS
        return {dimension: self.rng.choice(values[dimension])}

    def currency(self) -> str:
        """Mostly USD, some EUR and GBP."""
        return self.rng.choices(("USD", "EUR", "GBP"), (6, 3, 1))[0]

    def amount(self, low: float, high: float) -> float:
        """A money amount with 2 decimals."""
        return round(self.rng.uniform(low, high), 2)

    def priced(self, amount: float | None, currency: str) -> dict[str, Any]:
        """`amount` and `currency` fields (a USD amount sometimes omits its currency)."""
        if amount is None:
            return {}
        if currency == "USD" and self.rng.random() < 0.5:
            return {"amount": amount}
        return {"amount": amount, "currency": currency}

    def emit(self, source: str, event_type: str, time_ms: int, data: dict[str, Any]) -> Draft | None:
        """Record an event, unless its time is not before `end` (it has not happened yet)."""
        time_ms -= 0 if time_ms % 1000 else 1  # never on a whole second
        if time_ms >= self.end_ms:
            return None
        self.event_numbers[source] += 1
        event = {
            "id": f"evt_{self.event_numbers[source]:07d}",  # ids collide across sources
            "source": source,
            "type": event_type,
            "occurred_at": _rfc3339(time_ms, self.rng),
            "data": data,
        }
        if self.tenant != "default" or self.rng.random() < 0.7:
            event["tenant"] = self.tenant
        self.drafts.append(Draft(event, time_ms))
        return self.drafts[-1]


def _rfc3339(time_ms: int, rng: random.Random) -> str:
    """Mostly `...sss.mmmZ`; some with a UTC offset, some with sub-millisecond digits."""
    utc = datetime.fromtimestamp(time_ms // 1000, UTC)
    millis = f"{time_ms % 1000:03d}"
    style = rng.random()
    if style < 0.05:
        offset_minutes = rng.choice((60, -300, 330))
        local = utc + timedelta(minutes=offset_minutes)
        sign = "+" if offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        return f"{local:%Y-%m-%dT%H:%M:%S}.{millis}{sign}{hours:02d}:{minutes:02d}"
    if style < 0.10:
        millis += f"{rng.randint(0, 999):03d}"
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{millis}Z"


def _deliver_before(first: Draft, then: Draft, rng: random.Random) -> None:
    """Force `first` to arrive before `then`, whatever their event times."""
    first.arrival_ms = first.time_ms
    then.arrival_ms = first.time_ms + rng.randint(1, 2 * HOUR_MS)


# ---------------------------------------------------------------------------- sales


def lead_story(co: Company) -> None:
    """A lead, maybe touched, maybe converted into a customer."""
    lead_id = co.entity_id("lead")
    t = co.recent_time()
    segments = {**co.segment("channel"), **co.segment("region")}
    co.emit("hubspot", "lead.created", t, {"lead_id": lead_id, **segments})
    touched = co.rng.random() < 0.6
    for _ in range(co.rng.randint(1, 3) if touched else 0):
        t += co.rng.randint(10 * MINUTE_MS, 3 * DAY_MS)
        co.emit("hubspot", "lead.touched", t, {"lead_id": lead_id, "user_id": co.employee()})
    if co.rng.random() < (0.35 if touched else 0.05):
        t += co.rng.randint(HOUR_MS, 10 * DAY_MS)
        data = {"lead_id": lead_id, "customer_id": co.customer(p_new=1.0)}
        co.emit("hubspot", "lead.converted", t, data)


def deal_story(co: Company) -> None:
    """A deal created (rarely unknown), updated, then won, lost or still open."""
    rng = co.rng
    deal_id = co.entity_id("deal")
    currency = co.currency()
    amount = co.amount(300, 25_000) if rng.random() < 0.92 else None
    segments = {**co.segment("channel"), **co.segment("region")}
    customer = co.customer() if rng.random() < 0.9 else None
    t = co.recent_time(co.days + 20)
    created_data = {"deal_id": deal_id, **segments, **co.priced(amount, currency)}
    if customer is not None and rng.random() < 0.5:
        created_data["customer_id"] = customer
    created = co.emit("hubspot", "deal.created", t, created_data) if rng.random() < 0.95 else None
    for _ in range(rng.choice((0, 0, 1, 2))):
        t += rng.randint(HOUR_MS, 5 * DAY_MS)
        amount = None if amount is None else round(amount * rng.uniform(0.8, 1.25), 2)
        co.emit("hubspot", "deal.updated", t, {"deal_id": deal_id, **co.priced(amount, currency)})
    t += rng.randint(HOUR_MS, 30 * DAY_MS)
    if rng.random() < 0.15:
        segments = {**co.segment("channel"), **co.segment("region")}  # slices use the close event
    outcome = rng.random()
    if outcome < 0.4:
        data = {"deal_id": deal_id, **segments}
        if customer is not None:  # always on the won event when the deal has one
            data["customer_id"] = customer
        if rng.random() < 0.6:
            data |= co.priced(amount, currency)
        won = co.emit("hubspot", "deal.won", t, data)
        if won and created and rng.random() < 0.1:
            _deliver_before(won, created, rng)
    elif outcome < 0.75:
        reason = rng.choice(("price", "competitor", "no_budget", "timing"))
        co.emit("hubspot", "deal.lost", t, {"deal_id": deal_id, **segments, "reason": reason})


# ---------------------------------------------------------------------------- marketing


def visit_story(co: Company) -> None:
    """Pre-aggregated web sessions (a missing count means 1)."""
    data: dict[str, Any] = co.segment("channel")
    if co.rng.random() < 0.9:
        data["count"] = co.rng.randint(1, 60)
    co.emit("sim", "site.visit", co.recent_time(), data)


def spend_story(co: Company) -> None:
    """Money spent in one category."""
    category = co.rng.choices(("marketing", "sales", "retention", "crm"), (5, 2, 2, 1))[0]
    amount = co.amount(20, 4000)
    data = {"category": category, **co.priced(amount, co.currency()), **co.segment("channel")}
    co.emit("hubspot", "spend.recorded", co.recent_time(), data)


# ---------------------------------------------------------------------------- support


def ticket_story(co: Company) -> None:
    """A ticket with bot, private and customer replies, a first public reply, resolutions."""
    rng = co.rng
    ticket_id = co.entity_id("tkt")
    opened = co.recent_time()
    if rng.random() < 0.96:  # otherwise created before the integration: creation unknown
        segments = {**co.segment("channel"), **co.segment("priority")}
        data = {"ticket_id": ticket_id, "customer_id": co.customer(), **segments}
        co.emit("sim", "ticket.created", opened, data)

    def reply(t: int, author: str, **extra: bool) -> None:
        co.emit("sim", "ticket.replied", t, {"ticket_id": ticket_id, "author": author, **extra})

    if rng.random() < 0.3:
        reply(opened + rng.randint(5_000, 2 * MINUTE_MS), "bot", public=True)
    if rng.random() < 0.25:
        reply(opened + rng.randint(MINUTE_MS, HOUR_MS), "agent", public=False)
    if rng.random() < 0.3:
        reply(opened + rng.randint(MINUTE_MS, DAY_MS), "customer")
    t = opened
    if rng.random() < 0.85:
        t += min(int(rng.lognormvariate(math.log(2 * HOUR_MS), 1.2)), 10 * DAY_MS)
        reply(t, "agent", **({"public": True} if rng.random() < 0.5 else {}))
        if rng.random() < 0.5:
            reply(t + rng.randint(MINUTE_MS, DAY_MS), "agent")
    if rng.random() < 0.7:
        _resolve(co, ticket_id, t + rng.randint(10 * MINUTE_MS, 4 * DAY_MS))


def _resolve(co: Company, ticket_id: str, t: int) -> None:
    co.emit("sim", "ticket.resolved", t, {"ticket_id": ticket_id})
    if co.rng.random() < 0.15:
        t += co.rng.randint(HOUR_MS, 3 * DAY_MS)
        co.emit("sim", "ticket.reopened", t, {"ticket_id": ticket_id})
        if co.rng.random() < 0.6:
            t += co.rng.randint(HOUR_MS, 2 * DAY_MS)
            co.emit("sim", "ticket.resolved", t, {"ticket_id": ticket_id})


# ---------------------------------------------------------------------------- surveys


def survey_story(co: Company) -> None:
    """One NPS, CSAT (scale 5 or 10, scale sometimes implicit) or CES answer."""
    rng = co.rng
    survey = rng.choices(("nps", "csat", "ces"), (4, 4, 2))[0]
    data: dict[str, Any] = {"survey": survey, "customer_id": co.customer(p_new=0.1)}
    if survey == "nps":
        data["score"] = rng.choices(range(11), (1, 1, 1, 1, 2, 3, 4, 6, 9, 10, 8))[0]
    elif survey == "ces":
        data["score"] = rng.choices(range(1, 8), (6, 8, 6, 4, 3, 2, 1))[0]
    else:
        scale = rng.choice((5, 5, 10))
        if scale == 10 or rng.random() < 0.5:
            data["scale_max"] = scale
        data["score"] = rng.choices(range(1, scale + 1), range(1, scale + 1))[0]
    if rng.random() < 0.4:
        data["ticket_id"] = co.known_id("tkt")
    co.emit("sim", "survey.answered", co.recent_time(), data)


# ---------------------------------------------------------------------------- subscriptions


def subscription_story(co: Company) -> None:
    """A subscription started up to 120 days back, with its life and reactivations."""
    customer = co.customer(p_new=0.7)
    start = co.recent_time(SUBSCRIPTION_HISTORY_DAYS)
    _subscription_life(co, co.entity_id("sub"), customer, start, reactivations_left=2)


def _subscription_life(
    co: Company, subscription_id: str, customer: str, start: int, reactivations_left: int
) -> None:
    rng = co.rng
    plan = rng.choices(tuple(PLAN_MRR), (1, 4, 4, 1))[0]
    currency = co.currency()
    mrr = co.amount(*PLAN_MRR[plan])
    started = co.emit(
        "stripe",
        "subscription.started",
        start,
        _started_data(co, subscription_id, customer, plan, mrr, currency),
    )
    if started is None:
        return
    cancel_at = start + rng.randint(DAY_MS, 150 * DAY_MS) if rng.random() < 0.4 else None
    horizon = min(cancel_at or co.end_ms, co.end_ms)
    _changes(co, subscription_id, mrr, currency, start, horizon, started)
    _renewals(co, subscription_id, customer, start, horizon)
    if cancel_at is None:
        return
    reason = rng.choices(("voluntary", "involuntary"), (7, 3))[0]
    data = {"subscription_id": subscription_id, "customer_id": customer, "reason": reason}
    cancelled = co.emit("stripe", "subscription.cancelled", cancel_at, data)
    if cancelled and reactivations_left and rng.random() < 0.3:
        restart_id = subscription_id if rng.random() < 0.5 else co.entity_id("sub")
        restart = cancel_at + rng.randint(DAY_MS, 40 * DAY_MS)
        _subscription_life(co, restart_id, customer, restart, reactivations_left - 1)


def _started_data(
    co: Company, subscription_id: str, customer: str, plan: str, mrr: float, currency: str
) -> dict[str, Any]:
    off_list = co.rng.random() < 0.1
    return {
        "subscription_id": subscription_id,
        "customer_id": customer,
        "mrr": mrr,
        "currency": currency,
        "plan": co.rng.choice(OFF_LIST_VALUES["plan"]) if off_list else plan,
        **co.segment("region"),
    }


def _renewals(co: Company, subscription_id: str, customer: str, start: int, horizon: int) -> None:
    """A renewal every 30 days of the subscription's life until `horizon`."""
    for cycle in range(1, 1 + (horizon - start) // (30 * DAY_MS)):
        data = {"subscription_id": subscription_id}
        if co.rng.random() < 0.5:
            data["customer_id"] = customer
        co.emit("stripe", "subscription.renewed", start + cycle * 30 * DAY_MS, data)


def _changes(
    co: Company,
    subscription_id: str,
    mrr: float,
    currency: str,
    start: int,
    horizon: int,
    started: Draft,
) -> None:
    """Expansions and contractions strictly inside `(start, horizon)`."""
    rng = co.rng
    if mrr == 0 or horizon - start <= 2 * HOUR_MS:
        return
    times = sorted(rng.randint(start + HOUR_MS, horizon - HOUR_MS) for _ in range(rng.choice((0, 1, 2))))
    for number, t in enumerate(times):
        mrr = round(mrr * rng.uniform(0.5, 1.7), 2)
        data = {"subscription_id": subscription_id, "mrr": mrr, "currency": currency}
        changed = co.emit("stripe", "subscription.changed", t, data)
        if changed and number == 0 and rng.random() < 0.15:
            _deliver_before(changed, started, rng)


# ---------------------------------------------------------------------------- commerce


def order_story(co: Company) -> None:
    """One to four orders of a customer, sometimes through different channels."""
    customer = co.customer(p_new=0.4)
    t = co.recent_time()
    channel = co.segment("channel")
    for _ in range(co.rng.choices((1, 2, 3, 4), (5, 3, 1, 1))[0]):
        if co.rng.random() < 0.3:
            channel = co.segment("channel")
        _place_order(co, co.entity_id("ord"), customer, t, channel)
        t += co.rng.randint(HOUR_MS, 12 * DAY_MS)


def cart_story(co: Company) -> None:
    """A cart, checked out into an order or abandoned."""
    cart_id = co.entity_id("cart")
    customer = co.customer(p_new=0.4)
    channel = co.segment("channel")
    t = co.recent_time()
    co.emit("sim", "cart.created", t, {"cart_id": cart_id, "customer_id": customer, **channel})
    if co.rng.random() < 0.55:
        t += co.rng.randint(MINUTE_MS, 2 * DAY_MS)
        order_id = co.entity_id("ord")
        co.emit("sim", "cart.checked_out", t, {"cart_id": cart_id, "order_id": order_id})
        _place_order(co, order_id, customer, t + co.rng.randint(1, 5_000), channel)


def _place_order(co: Company, order_id: str, customer: str, t: int, channel: dict[str, str]) -> None:
    priced = co.priced(co.amount(5, 400), co.currency())
    data = {"order_id": order_id, "customer_id": customer, **priced, **channel}
    co.emit("stripe", "order.placed", t, data)


# ---------------------------------------------------------------------------- adoption


def adoption_story(co: Company) -> None:
    """A CRM user's session: a login, some records, some routine tasks."""
    rng = co.rng
    user = co.employee()
    team = TEAMS[EMPLOYEES.index(user) % len(TEAMS)]
    t = co.recent_time()
    co.emit("sim", "user.login", t, {"user_id": user, "team": team})
    for _ in range(rng.randint(0, 4)):
        t += rng.randint(MINUTE_MS, 2 * HOUR_MS)
        record = rng.choice(("contact", "company", "deal", "note"))
        co.emit("sim", "record.created", t, {"user_id": user, "object": record, "team": team})
    for _ in range(rng.randint(0, 3)):
        t += rng.randint(MINUTE_MS, 2 * HOUR_MS)
        duration = rng.randint(5, 900) if rng.random() < 0.7 else round(rng.uniform(5, 900), 1)
        kind = rng.choice(("call_log", "email_log", "data_entry", "follow_up"))
        data = {"user_id": user, "duration_seconds": duration, "kind": kind, "team": team}
        co.emit("sim", "task.completed", t, data)


Story = Callable[[Company], None]
FAMILY_STORIES: dict[str, tuple[tuple[Story, int], ...]] = {
    "sales": ((lead_story, 3), (deal_story, 2)),
    "marketing": ((visit_story, 7), (spend_story, 3)),
    "support": ((ticket_story, 1),),
    "surveys": ((survey_story, 1),),
    "subscriptions": ((subscription_story, 1),),
    "commerce": ((order_story, 1), (cart_story, 1)),
    "adoption": ((adoption_story, 1),),
}


def _grow(co: Company, family: str, budget: int) -> None:
    """Run the family's stories until it emitted about `budget` events."""
    stories, weights = zip(*FAMILY_STORIES[family], strict=True)
    first = len(co.drafts)
    while len(co.drafts) - first < budget:
        co.rng.choices(stories, weights)[0](co)


# ---------------------------------------------------------------------------- arrival order


def _arrival_order(
    drafts: list[Draft], rng: random.Random, late_fraction: float, duplicate_rate: float
) -> list[dict[str, Any]]:
    deliveries = [(_arrival_ms(draft, rng, late_fraction), draft.event) for draft in drafts]
    for _ in range(round(duplicate_rate * len(drafts))):
        arrival_ms, event = rng.choice(deliveries[: len(drafts)])
        deliveries.append((arrival_ms + rng.randint(1, 3 * DAY_MS), copy.deepcopy(event)))
    order = sorted(range(len(deliveries)), key=lambda index: (deliveries[index][0], index))
    return [deliveries[index][1] for index in order]


def _arrival_ms(draft: Draft, rng: random.Random, late_fraction: float) -> int:
    if draft.arrival_ms is not None:
        return draft.arrival_ms
    if rng.random() < late_fraction:
        return draft.time_ms + rng.randint(HOUR_MS, 5 * DAY_MS)
    return draft.time_ms + rng.randint(0, 3 * HOUR_MS)


def generate_history(
    seed: int,
    *,
    end: datetime,
    days: int = 35,
    n_events: int = 20_000,
    tenants: Iterable[str] = ("default",),
    duplicate_rate: float = 0.05,
    late_fraction: float = 0.1,
    families: Iterable[str] = FAMILIES,
) -> list[dict[str, Any]]:
    """About `n_events` distinct canonical events (plus duplicates), all before `end`."""
    unknown = set(families) - set(FAMILY_STORIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; expected some of {FAMILIES}")
    rng = random.Random(seed)
    tenants = tuple(tenants)
    weights = {family: FAMILY_WEIGHTS[family] for family in families}
    share = n_events / (sum(weights.values()) * len(tenants))
    event_numbers: Counter[str] = Counter()
    drafts: list[Draft] = []
    for tenant in tenants:
        company = Company(rng, tenant, datetime_to_ms(end), days, event_numbers)
        for family, weight in weights.items():
            _grow(company, family, round(weight * share))
        drafts += company.drafts
    return _arrival_order(drafts, rng, late_fraction, duplicate_rate)


def write_jsonl(events: Iterable[Mapping[str, Any]], path: str | Path) -> None:
    """Write events as JSON Lines, one compact object per line."""
    with Path(path).open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
