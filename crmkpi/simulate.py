"""`crm-kpi simulate`: a synthetic CRM company emitting canonical events (docs/events.md).

The company is a discrete-event simulation: an agenda of pending actions ordered by event time.
Spontaneous arrivals (visits, leads, carts, orders, tickets, staff work) follow a Poisson
process shaped by working hours, weekends and slow monthly growth; each arrival schedules its
follow-ups (a lead's touches, its deal, the deal's subscription, its renewals...). Follow-ups
beyond a window stay on the agenda, so consecutive `events_between` windows continue each
other exactly. The first window opens with the company's existing book (subscriptions of
current customers and open deals) being synced during its first hour.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from crmkpi.discovery import find_services
from crmkpi.settings import Settings, publisher_for
from streams.events import format_time_ms
from streams.gateway.signing import standard_signature

log = logging.getLogger(__name__)

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MONTH_MS = 30 * DAY_MS

# Activity by UTC hour of day and by weekday (Monday first); `activity` divides by their weekly
# mean, so an average week runs at the configured rate.
HOURLY_ACTIVITY = (0.30, 0.25, 0.20, 0.20, 0.25, 0.35, 0.55, 0.85, 1.25, 1.50, 1.60, 1.55,
                   1.35, 1.50, 1.60, 1.55, 1.40, 1.15, 0.90, 0.75, 0.65, 0.55, 0.45, 0.35)
WEEKDAY_ACTIVITY = (1.05, 1.10, 1.10, 1.05, 0.95, 0.45, 0.35)
ACTIVITY_MEAN = sum(h * w for h in HOURLY_ACTIVITY for w in WEEKDAY_ACTIVITY) / (24 * 7)
MONTHLY_GROWTH = 0.02

# Spontaneous arrivals by kind, and the average number of events per arrival (including the
# follow-ups and the renewals of the customers they bring), measured on long runs.
ARRIVAL_WEIGHTS = {"visit": 0.325, "lead": 0.06, "cart": 0.16, "order": 0.08, "ticket": 0.025,
                   "staff": 0.35}
EVENTS_PER_ARRIVAL = 1.43

CHANNELS = ("web", "ads", "email", "social", "referral", "partner", "podcast", None)
LEAD_CHANNEL_WEIGHTS = (0.30, 0.20, 0.12, 0.12, 0.10, 0.08, 0.03, 0.05)
VISIT_CHANNEL_WEIGHTS = (0.40, 0.20, 0.10, 0.15, 0.08, 0.02, 0.01, 0.04)
REGIONS = ("na", "emea", "apac", "latam")
REGION_WEIGHTS = (0.45, 0.30, 0.15, 0.10)
WIN_PROBABILITY = {"referral": 0.45, "partner": 0.40, "web": 0.30, "email": 0.25, "ads": 0.20,
                   "social": 0.18}
DEFAULT_WIN_PROBABILITY = 0.25
LOSS_REASONS = ("price", "competitor", "no_decision", "timing")

P_LEAD_TOUCHED = 0.75
P_TOUCHED_LEAD_CONVERTS = 0.22
P_UNTOUCHED_LEAD_SIGNS_UP = 0.03
MEAN_WIN_RATE = 0.28
BOOK_DAYS_OF_WINS = 150
MAX_SYNCED = 100_000  # existing customers and open deals synced at most, whatever the rate
SALES_CYCLE_MEDIAN_DAYS = 12

P_VOLUNTARY_CHURN = 0.025
P_INVOLUNTARY_CHURN = 0.01
P_PLAN_CHANGE = 0.06
P_EXPANSION = 0.65
P_REACTIVATION = 0.12

TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_PRIORITY_WEIGHTS = (0.30, 0.45, 0.18, 0.07)
FIRST_REPLY_MEDIAN_S = {"low": 5 * 3600, "normal": 2 * 3600, "high": 1800, "urgent": 600}
TICKET_CHANNELS = ("email", "web", "chat")
TICKET_CHANNEL_WEIGHTS = (0.45, 0.30, 0.25)
NPS_WEIGHTS = (2, 1, 1, 2, 2, 3, 5, 13, 22, 25, 24)
CSAT_WEIGHTS = (5, 7, 13, 35, 40)
CSAT_WEIGHTS_AFTER_SLOW_REPLY = (12, 13, 20, 30, 25)
CES_WEIGHTS = (3, 5, 8, 14, 25, 28, 17)
SLOW_FIRST_REPLY_MS = 8 * HOUR_MS

SHOP_CHANNELS = ("web", "email", "ads", "social", None)
SHOP_CHANNEL_WEIGHTS = (0.50, 0.20, 0.15, 0.10, 0.05)
P_CART_CHECKED_OUT = 0.32
P_REPEAT_BUYER = 0.45

TEAMS = (("sales", 8), ("support", 7), ("marketing", 3), ("success", 2))
RECORD_OBJECTS = ("contact", "company", "deal", "ticket", "note", "task")
TASK_KINDS = ("call", "email", "follow_up", "data_entry", "meeting_notes")

MARKETING_SPLIT = {"ads": 0.40, "web": 0.15, "social": 0.15, "email": 0.10, "partner": 0.10,
                   "referral": 0.10}
MARKETING_PER_WIN = 1500.0
SALES_PER_WIN = 1200.0
RETENTION_PER_CUSTOMER_DAY = 0.15
CRM_PER_USER_DAY = 6.0
SPEND_HOUR = 23

Data = dict[str, Any]
Event = dict[str, Any]


def activity(time_ms: int, origin_ms: int) -> float:
    """How busy the company is at `time_ms` relative to its average at `origin_ms` (1.0)."""
    hour = time_ms % DAY_MS // HOUR_MS
    seasonal = HOURLY_ACTIVITY[hour] * WEEKDAY_ACTIVITY[weekday(time_ms)] / ACTIVITY_MEAN
    return seasonal * growth(time_ms, origin_ms)


def growth(time_ms: int, origin_ms: int) -> float:
    """The slow monthly growth of the business since `origin_ms`."""
    return (1 + MONTHLY_GROWTH) ** ((time_ms - origin_ms) / MONTH_MS)


def weekday(time_ms: int) -> int:
    """Day of the week in UTC, Monday = 0 (1970-01-01 was a Thursday)."""
    return (time_ms // DAY_MS + 3) % 7


def _compact(**fields: Any) -> Data:
    """The fields that have a value: optional data is omitted, never null."""
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(slots=True)
class Customer:
    """A company that buys from the simulated company."""

    id: str
    region: str
    channel: str | None
    currency: str


@dataclass(slots=True)
class Lead:
    """A prospect in the funnel."""

    id: str
    channel: str | None
    region: str
    touches_left: int


@dataclass(slots=True)
class Deal:
    """An opportunity with a customer-to-be."""

    id: str
    customer: Customer
    amount: float


@dataclass(slots=True)
class Subscription:
    """A customer's recurring plan."""

    id: str
    customer: Customer
    mrr: float

    @property
    def plan(self) -> str:
        """The plan tier its monthly amount buys."""
        return plan_for_mrr(self.mrr)


@dataclass(slots=True)
class Ticket:
    """A support request and how far its conversation has got."""

    id: str
    customer: Customer
    priority: str
    created_ms: int
    first_reply_ms: int | None = None
    exchanges_left: int = 0
    reopened: bool = False


def plan_for_mrr(mrr: float) -> str:
    """Plan tier by monthly amount."""
    if mrr < 1:
        return "free"
    if mrr < 200:
        return "starter"
    return "pro" if mrr < 1500 else "enterprise"


class World:
    """Shared machinery: the random source, the agenda of pending actions, ids and output."""

    def __init__(self, rng: random.Random, run_id: str) -> None:
        self.rng = rng
        self.run_id = run_id
        self.now_ms = 0
        self._agenda: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = itertools.count()
        self._ids = itertools.count(1)
        self._events = itertools.count(1)
        self._output: list[Event] = []

    def at(self, time_ms: int, action: Callable[..., None], *args: Any) -> None:
        """Run `action(*args)` at event time `time_ms` (never before now)."""
        entry = (max(time_ms, self.now_ms), next(self._sequence), action, args)
        heapq.heappush(self._agenda, entry)

    def after(self, delay_s: float, action: Callable[..., None], *args: Any) -> None:
        """Run `action(*args)` `delay_s` seconds from now."""
        self.at(self.now_ms + round(delay_s * SECOND_MS), action, *args)

    def run_until(self, end_ms: int) -> list[Event]:
        """Run every action due before `end_ms`; returns the events they emitted, by time."""
        self._output = []
        while self._agenda and self._agenda[0][0] < end_ms:
            self.now_ms, _, action, args = heapq.heappop(self._agenda)
            action(*args)
        return self._output

    @property
    def pending(self) -> int:
        """How many actions wait on the agenda."""
        return len(self._agenda)

    def new_id(self, kind: str) -> str:
        """A fresh entity id, unique within the run."""
        return f"{kind}-{self.run_id}-{next(self._ids)}"

    def emit(self, event_type: str, data: Data) -> None:
        """Emit a canonical event at the current event time."""
        self._output.append({
            "id": f"sim-{self.run_id}-{next(self._events)}",
            "source": "sim",
            "type": event_type,
            "occurred_at": format_time_ms(self.now_ms),
            "tenant": "default",
            "data": data,
        })

    def chance(self, probability: float) -> bool:
        """True with the given probability."""
        return self.rng.random() < probability

    def pick(self, options: Sequence[Any], weights: Sequence[float]) -> Any:
        """One option, drawn by weight."""
        return self.rng.choices(options, weights)[0]

    def lognormal(self, median: float, sigma: float) -> float:
        """A positive, right-skewed amount around `median`."""
        return median * math.exp(sigma * self.rng.gauss())

    def money(self, median: float, sigma: float) -> float:
        """A right-skewed amount of money with 2 decimals."""
        return round(self.lognormal(median, sigma), 2)


class Customers:
    """The active customers, for O(1) random choice and removal; plus recent buyers."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._active: list[Customer] = []
        self._index: dict[str, int] = {}
        self.recent_buyers: deque[Customer] = deque(maxlen=500)

    def __len__(self) -> int:
        return len(self._active)

    def new(self, region: str, channel: str | None) -> Customer:
        """A new (not yet active) customer, billed in its region's currency."""
        currency = "USD"
        if region == "emea":
            currency = self.world.pick(("EUR", "GBP"), (0.6, 0.4))
        return Customer(self.world.new_id("cust"), region, channel, currency)

    def activate(self, customer: Customer) -> None:
        """The customer now has an active subscription."""
        if customer.id not in self._index:
            self._index[customer.id] = len(self._active)
            self._active.append(customer)

    def deactivate(self, customer: Customer) -> None:
        """The customer churned (swap-remove)."""
        position = self._index.pop(customer.id, None)
        if position is None:
            return
        last = self._active.pop()
        if last is not customer:
            self._active[position] = last
            self._index[last.id] = position

    def any(self) -> Customer | None:
        """A random active customer, or None when there is none."""
        if not self._active:
            return None
        return self._active[self.world.rng.randrange(len(self._active))]

    def buyer(self) -> Customer | None:
        """Who places an order: often someone who bought recently."""
        if self.recent_buyers and self.world.chance(P_REPEAT_BUYER):
            return self.world.rng.choice(self.recent_buyers)
        return self.any()


class Team:
    """The ~20 CRM users: daily logins, records and routine tasks."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.users = [(f"user-{number:02d}", team)
                      for number, team in enumerate(
                          (team for team, size in TEAMS for _ in range(size)), start=1)]
        self.sales_ids = [user_id for user_id, team in self.users if team == "sales"]

    def start_day(self) -> None:
        """Plan today's logins (most users on workdays, few at weekends), then tomorrow's."""
        world = self.world
        midnight = world.now_ms - world.now_ms % DAY_MS
        presence = 0.95 if weekday(midnight) < 5 else 0.10
        for user in self.users:
            if world.chance(presence):
                self._login_at(midnight + int(world.rng.uniform(7, 10) * HOUR_MS), user)
                if world.chance(0.5):
                    self._login_at(midnight + int(world.rng.uniform(13, 15) * HOUR_MS), user)
        world.at(midnight + DAY_MS, self.start_day)

    def _login_at(self, time_ms: int, user: tuple[str, str]) -> None:
        if time_ms >= self.world.now_ms:
            self.world.at(time_ms, self.login, user)

    def login(self, user: tuple[str, str]) -> None:
        """A user signs in."""
        self.world.emit("user.login", {"user_id": user[0], "team": user[1]})

    def work(self) -> None:
        """A user creates a record or completes a routine task."""
        user_id, team = self.world.rng.choice(self.users)
        if self.world.chance(0.5):
            record = self.world.rng.choice(RECORD_OBJECTS)
            self.world.emit("record.created", {"user_id": user_id, "object": record, "team": team})
            return
        duration = round(min(self.world.lognormal(240, 0.8), 4 * 3600), 1)
        data: Data = {"user_id": user_id, "duration_seconds": duration, "team": team,
                      "kind": self.world.rng.choice(TASK_KINDS)}
        self.world.emit("task.completed", data)


class Billing:
    """Subscriptions: starts, monthly renewals, plan changes, cancellations, reactivations."""

    def __init__(self, world: World, customers: Customers) -> None:
        self.world = world
        self.customers = customers

    def start(self, customer: Customer, mrr: float) -> None:
        """A new subscription for a customer (after a won deal or a self-serve signup)."""
        subscription = Subscription(self.world.new_id("sub"), customer, round(mrr, 2))
        self._activate(subscription)
        self._plan_period(subscription, self.world.now_ms + MONTH_MS)

    def sync_existing(self, customer: Customer, mrr: float) -> None:
        """A subscription of the existing book: its next renewal is sometime this month."""
        subscription = Subscription(self.world.new_id("sub"), customer, round(mrr, 2))
        self._activate(subscription)
        self._plan_period(subscription, self.world.now_ms + self.world.rng.randrange(1, MONTH_MS))

    def _activate(self, subscription: Subscription) -> None:
        customer = subscription.customer
        self.customers.activate(customer)
        data = {"subscription_id": subscription.id, "customer_id": customer.id,
                "mrr": subscription.mrr, "currency": customer.currency,
                "plan": subscription.plan, "region": customer.region}
        self.world.emit("subscription.started", data)

    def _plan_period(self, subscription: Subscription, renewal_ms: int) -> None:
        """Decide the period up to `renewal_ms`: a voluntary cancellation, or a renewal."""
        now = self.world.now_ms
        if self.world.chance(P_VOLUNTARY_CHURN):
            cancel_ms = self.world.rng.randrange(now, renewal_ms)
            self.world.at(cancel_ms, self._cancel, subscription, "voluntary")
            return
        if self.world.chance(P_PLAN_CHANGE):
            self.world.at(self.world.rng.randrange(now, renewal_ms), self._change, subscription)
        self.world.at(renewal_ms, self._renew, subscription)

    def _renew(self, subscription: Subscription) -> None:
        if self.world.chance(P_INVOLUNTARY_CHURN):
            self._cancel(subscription, "involuntary")
            return
        if subscription.mrr > 0:
            data = {"subscription_id": subscription.id,
                    "customer_id": subscription.customer.id}
            self.world.emit("subscription.renewed", data)
        self._plan_period(subscription, self.world.now_ms + MONTH_MS)

    def _change(self, subscription: Subscription) -> None:
        """Expansion (or a free plan's upgrade) or contraction."""
        if subscription.mrr < 1:
            subscription.mrr = self.world.money(79, 0.3)
        elif self.world.chance(P_EXPANSION):
            subscription.mrr = round(subscription.mrr * self.world.rng.uniform(1.1, 1.6), 2)
        else:
            subscription.mrr = round(subscription.mrr * self.world.rng.uniform(0.6, 0.9), 2)
        data = {"subscription_id": subscription.id, "mrr": subscription.mrr,
                "currency": subscription.customer.currency, "plan": subscription.plan}
        self.world.emit("subscription.changed", data)

    def _cancel(self, subscription: Subscription, reason: str) -> None:
        self.customers.deactivate(subscription.customer)
        data = {"subscription_id": subscription.id, "customer_id": subscription.customer.id,
                "reason": reason}
        self.world.emit("subscription.cancelled", data)
        if self.world.chance(P_REACTIVATION):
            self.world.after(self.world.lognormal(14, 0.7) * 86400, self._reactivate, subscription)

    def _reactivate(self, subscription: Subscription) -> None:
        """The same subscription id starts a new activity period."""
        self._activate(subscription)
        self._plan_period(subscription, self.world.now_ms + MONTH_MS)


class Sales:
    """Leads (touched, converted, abandoned) and the deals they become."""

    def __init__(self, world: World, customers: Customers, billing: Billing, team: Team) -> None:
        self.world = world
        self.customers = customers
        self.billing = billing
        self.team = team

    def new_lead(self) -> None:
        """A lead arrives from a channel and region; most get touched, some convert."""
        world = self.world
        channel = world.pick(CHANNELS, LEAD_CHANNEL_WEIGHTS)
        region = world.pick(REGIONS, REGION_WEIGHTS)
        lead = Lead(world.new_id("lead"), channel, region, world.rng.randint(1, 4))
        world.emit("lead.created", _compact(lead_id=lead.id, channel=channel, region=region))
        if world.chance(P_LEAD_TOUCHED):
            world.after(world.lognormal(3 * 3600, 1.0), self._touch, lead)
        elif world.chance(P_UNTOUCHED_LEAD_SIGNS_UP):
            world.after(world.lognormal(1800, 1.0), self._self_serve_signup, lead)

    def _touch(self, lead: Lead) -> None:
        world = self.world
        data = {"lead_id": lead.id, "user_id": world.rng.choice(self.team.sales_ids)}
        world.emit("lead.touched", data)
        lead.touches_left -= 1
        if lead.touches_left > 0:
            world.after(world.lognormal(86400, 0.8), self._touch, lead)
        elif world.chance(P_TOUCHED_LEAD_CONVERTS):
            world.after(world.lognormal(86400, 0.8), self._convert, lead)

    def _convert(self, lead: Lead) -> None:
        customer = self.customers.new(lead.region, lead.channel)
        self.world.emit("lead.converted", {"lead_id": lead.id, "customer_id": customer.id})
        self.world.after(self.world.rng.uniform(600, 7200), self.open_deal, customer)

    def _self_serve_signup(self, lead: Lead) -> None:
        customer = self.customers.new(lead.region, lead.channel)
        self.world.emit("lead.converted", {"lead_id": lead.id, "customer_id": customer.id})
        self.billing.start(customer, 0.0)

    def open_deal(self, customer: Customer, *, cycle_share: float = 1.0) -> None:
        """A deal for an annual contract; updated along the way, won or lost after days.

        `cycle_share` is the part of the sales cycle still ahead (the existing pipeline is
        synced part-way through its cycles).
        """
        world = self.world
        mrr = self.contract_mrr()
        deal = Deal(world.new_id("deal"), customer, round(mrr * 12, 2))
        world.emit("deal.created", self._deal_data(deal, customer_id=customer.id,
                                                   amount=deal.amount, currency=customer.currency))
        cycle_s = min(world.lognormal(SALES_CYCLE_MEDIAN_DAYS, 0.7), 90) * 86400 * cycle_share
        for _ in range(world.rng.randint(0, 3)):
            world.after(world.rng.uniform(0, cycle_s), self._update, deal)
        world.after(cycle_s + 60, self._close, deal)

    def contract_mrr(self) -> float:
        """The monthly amount of a new contract, by plan tier."""
        plan = self.world.pick(("starter", "pro", "enterprise"), (0.45, 0.40, 0.15))
        if plan == "starter":
            return round(self.world.rng.uniform(29, 149), 2)
        if plan == "pro":
            return min(max(self.world.money(500, 0.4), 200), 1499)
        return max(self.world.money(3500, 0.5), 1500)

    @staticmethod
    def _deal_data(deal: Deal, **fields: Any) -> Data:
        customer = deal.customer
        return _compact(deal_id=deal.id, channel=customer.channel, region=customer.region,
                        **fields)

    def _update(self, deal: Deal) -> None:
        deal.amount = round(deal.amount * self.world.rng.uniform(0.85, 1.15), 2)
        data = self._deal_data(deal, amount=deal.amount, currency=deal.customer.currency)
        self.world.emit("deal.updated", data)

    def _close(self, deal: Deal) -> None:
        world = self.world
        customer = deal.customer
        if world.chance(WIN_PROBABILITY.get(customer.channel or "", DEFAULT_WIN_PROBABILITY)):
            data = self._deal_data(deal, customer_id=customer.id, amount=deal.amount,
                                   currency=customer.currency)
            world.emit("deal.won", data)
            world.after(world.rng.uniform(3600, 48 * 3600), self.billing.start, customer,
                        deal.amount / 12)
            return
        reason = world.rng.choice(LOSS_REASONS)
        world.emit("deal.lost", self._deal_data(deal, reason=reason))


class Support:
    """Tickets from customers: bot and agent replies, notes, resolutions, reopens, surveys."""

    def __init__(self, world: World, customers: Customers) -> None:
        self.world = world
        self.customers = customers

    def new_ticket(self) -> None:
        """A customer asks for help; a bot may answer first, agents reply after minutes-hours."""
        world = self.world
        customer = self.customers.any()
        if customer is None:
            return
        priority = world.pick(TICKET_PRIORITIES, TICKET_PRIORITY_WEIGHTS)
        channel = world.pick(TICKET_CHANNELS, TICKET_CHANNEL_WEIGHTS)
        ticket = Ticket(world.new_id("ticket"), customer, priority, world.now_ms,
                        exchanges_left=world.rng.choice((0, 0, 1, 2)))
        data = {"ticket_id": ticket.id, "customer_id": customer.id, "channel": channel,
                "priority": priority}
        world.emit("ticket.created", data)
        first_reply_s = world.lognormal(FIRST_REPLY_MEDIAN_S[priority], 0.9)
        if channel == "chat":
            first_reply_s /= 4
        if world.chance(0.3):
            world.after(world.rng.uniform(5, 60), self._reply, ticket, "bot", None)
        if world.chance(0.2):
            world.after(first_reply_s * world.rng.random(), self._reply, ticket, "agent", False)
        world.after(first_reply_s, self._agent_answers, ticket)

    def _reply(self, ticket: Ticket, author: str, public: bool | None) -> None:
        data = _compact(ticket_id=ticket.id, author=author, public=public)
        self.world.emit("ticket.replied", data)

    def _agent_answers(self, ticket: Ticket) -> None:
        world = self.world
        self._reply(ticket, "agent", True)
        if ticket.first_reply_ms is None:
            ticket.first_reply_ms = world.now_ms
        if ticket.exchanges_left > 0:
            ticket.exchanges_left -= 1
            world.after(world.lognormal(3 * 3600, 1.0), self._customer_follows_up, ticket)
        else:
            world.after(world.lognormal(2 * 3600, 1.2), self._resolve, ticket)

    def _customer_follows_up(self, ticket: Ticket) -> None:
        self._reply(ticket, "customer", None)
        self.world.after(self.world.lognormal(2 * 3600, 1.0), self._agent_answers, ticket)

    def _resolve(self, ticket: Ticket) -> None:
        world = self.world
        world.emit("ticket.resolved", {"ticket_id": ticket.id})
        if not ticket.reopened and world.chance(0.08):
            ticket.reopened = True
            world.after(world.lognormal(86400, 1.0), self._reopen, ticket)
            return
        for survey, probability in (("csat", 0.35), ("ces", 0.15), ("nps", 0.10)):
            if world.chance(probability):
                world.after(world.lognormal(3600, 1.5), self._survey, ticket, survey)

    def _reopen(self, ticket: Ticket) -> None:
        self.world.emit("ticket.reopened", {"ticket_id": ticket.id})
        self.world.after(self.world.lognormal(3600, 1.0), self._agent_answers, ticket)

    def _survey(self, ticket: Ticket, survey: str) -> None:
        data: Data = {"survey": survey, "customer_id": ticket.customer.id,
                      "ticket_id": ticket.id}
        if survey == "nps":
            data["score"] = self.world.pick(range(11), NPS_WEIGHTS)
        elif survey == "ces":
            data["score"] = self.world.pick(range(1, 8), CES_WEIGHTS)
        else:
            first_reply_ms = ticket.first_reply_ms or ticket.created_ms
            slow = first_reply_ms - ticket.created_ms > SLOW_FIRST_REPLY_MS
            weights = CSAT_WEIGHTS_AFTER_SLOW_REPLY if slow else CSAT_WEIGHTS
            data["score"] = self.world.pick(range(1, 6), weights)
            data["scale_max"] = 5
        self.world.emit("survey.answered", data)


class Shop:
    """Carts (most abandoned, some checked out into orders) and direct repeat orders."""

    def __init__(self, world: World, customers: Customers) -> None:
        self.world = world
        self.customers = customers

    def new_cart(self) -> None:
        """A customer fills a cart; about a third check out within minutes."""
        customer = self.customers.buyer()
        if customer is None:
            return
        channel = self.world.pick(SHOP_CHANNELS, SHOP_CHANNEL_WEIGHTS)
        cart_id = self.world.new_id("cart")
        data = _compact(cart_id=cart_id, customer_id=customer.id, channel=channel)
        self.world.emit("cart.created", data)
        if self.world.chance(P_CART_CHECKED_OUT):
            delay_s = self.world.lognormal(900, 0.8)
            self.world.after(delay_s, self._check_out, cart_id, customer, channel)

    def _check_out(self, cart_id: str, customer: Customer, channel: str | None) -> None:
        order_id = self.world.new_id("order")
        self.world.emit("cart.checked_out", {"cart_id": cart_id, "order_id": order_id})
        self._place(order_id, customer, channel)

    def new_order(self) -> None:
        """A direct order, often by a repeat buyer."""
        customer = self.customers.buyer()
        if customer is not None:
            channel = self.world.pick(SHOP_CHANNELS, SHOP_CHANNEL_WEIGHTS)
            self._place(self.world.new_id("order"), customer, channel)

    def _place(self, order_id: str, customer: Customer, channel: str | None) -> None:
        data = _compact(order_id=order_id, customer_id=customer.id,
                        amount=self.world.money(80, 0.7), currency=customer.currency,
                        channel=channel)
        self.world.emit("order.placed", data)
        self.customers.recent_buyers.append(customer)


class Marketing:
    """Site traffic and the daily spend of every department."""

    def __init__(self, world: World, customers: Customers, wins_per_day: float,
                 users: int) -> None:
        self.world = world
        self.customers = customers
        self.wins_per_day = wins_per_day
        self.users = users

    def visits(self) -> None:
        """A pre-aggregated batch of web sessions from one channel."""
        channel = self.world.pick(CHANNELS, VISIT_CHANNEL_WEIGHTS)
        count = self.world.rng.randint(1, 15)
        self.world.emit("site.visit", _compact(count=count, channel=channel))

    def record_spend(self, origin_ms: int) -> None:
        """The day's spend, booked daily at 23:00 UTC: marketing by channel, sales, etc."""
        world = self.world
        scale = growth(world.now_ms, origin_ms)
        for channel, share in MARKETING_SPLIT.items():
            amount = self.wins_per_day * MARKETING_PER_WIN * share * scale
            self._spend("marketing", amount, channel)
        self._spend("sales", self.wins_per_day * SALES_PER_WIN * scale, None)
        self._spend("retention", len(self.customers) * RETENTION_PER_CUSTOMER_DAY, None)
        self._spend("crm", self.users * CRM_PER_USER_DAY, None)
        world.after(DAY_MS / SECOND_MS, self.record_spend, origin_ms)

    def _spend(self, category: str, amount: float, channel: str | None) -> None:
        amount = round(amount * self.world.rng.uniform(0.8, 1.2), 2)
        data = _compact(category=category, amount=amount, currency="USD", channel=channel)
        self.world.emit("spend.recorded", data)


class CrmCompany:
    """A believable synthetic CRM company; `events_between` advances it window by window."""

    def __init__(self, *, rate: float = 1.0, seed: int | None = None,
                 run_id: str | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of events per second")
        rng = random.Random(seed)
        self.rate = rate
        self.world = World(rng, run_id or f"{rng.getrandbits(32):08x}")
        self.customers = Customers(self.world)
        self.team = Team(self.world)
        self.billing = Billing(self.world, self.customers)
        self.sales = Sales(self.world, self.customers, self.billing, self.team)
        self.support = Support(self.world, self.customers)
        self.shop = Shop(self.world, self.customers)
        self.marketing = Marketing(self.world, self.customers, self._wins_per_day(),
                                   len(self.team.users))
        self._arrivals: dict[str, Callable[[], None]] = {
            "visit": self.marketing.visits, "lead": self.sales.new_lead,
            "cart": self.shop.new_cart, "order": self.shop.new_order,
            "ticket": self.support.new_ticket, "staff": self.team.work,
        }
        self._arrival_kinds = list(ARRIVAL_WEIGHTS)
        self._arrival_weights = list(itertools.accumulate(ARRIVAL_WEIGHTS.values()))
        self._origin_ms = 0
        self._clock_ms: int | None = None

    @property
    def pending(self) -> int:
        """Actions waiting for a later window (bounded: finished entities are dropped)."""
        return self.world.pending

    def events_between(self, start_ms: int, end_ms: int) -> list[Event]:
        """The events whose time is in `[start_ms, end_ms)`, by time.

        Windows must be contiguous: each call starts where the previous one ended.
        """
        if end_ms < start_ms:
            raise ValueError("a window must not end before it starts")
        if self._clock_ms is None:
            self._found(start_ms)
        elif start_ms != self._clock_ms:
            raise ValueError(f"windows must be contiguous: expected start {self._clock_ms}")
        self._clock_ms = end_ms
        return self.world.run_until(end_ms)

    def _arrivals_per_second(self) -> float:
        return self.rate / EVENTS_PER_ARRIVAL

    def _wins_per_day(self) -> float:
        leads = self._arrivals_per_second() * ARRIVAL_WEIGHTS["lead"] * 86400
        return leads * P_LEAD_TOUCHED * P_TOUCHED_LEAD_CONVERTS * MEAN_WIN_RATE

    def _found(self, start_ms: int) -> None:
        """Start the company at `start_ms`: recurring routines and the existing book."""
        world = self.world
        self._origin_ms = start_ms
        world.now_ms = start_ms
        world.at(start_ms, self._arrive)
        world.at(start_ms, self.team.start_day)
        spend_ms = start_ms - start_ms % DAY_MS + SPEND_HOUR * HOUR_MS
        world.at(spend_ms if spend_ms >= start_ms else spend_ms + DAY_MS,
                 self.marketing.record_spend, start_ms)
        book = self._wins_per_day() * BOOK_DAYS_OF_WINS
        for _ in range(min(max(20, round(book)), MAX_SYNCED)):
            world.at(start_ms + world.rng.randrange(HOUR_MS), self._sync_customer)
        open_deals = self._wins_per_day() / MEAN_WIN_RATE * SALES_CYCLE_MEDIAN_DAYS
        for _ in range(min(max(5, round(open_deals)), MAX_SYNCED)):
            world.at(start_ms + world.rng.randrange(HOUR_MS), self._sync_open_deal)

    def _sync_customer(self) -> None:
        customer = self.customers.new(self.world.pick(REGIONS, REGION_WEIGHTS),
                                      self.world.pick(CHANNELS, LEAD_CHANNEL_WEIGHTS))
        mrr = 0.0 if self.world.chance(0.15) else self.sales.contract_mrr()
        self.billing.sync_existing(customer, mrr)

    def _sync_open_deal(self) -> None:
        customer = self.customers.new(self.world.pick(REGIONS, REGION_WEIGHTS),
                                      self.world.pick(CHANNELS, LEAD_CHANNEL_WEIGHTS))
        self.sales.open_deal(customer, cycle_share=self.world.rng.random())

    def _arrive(self) -> None:
        """One spontaneous arrival, then the next after an exponential gap at today's pace."""
        world = self.world
        kind = world.rng.choices(self._arrival_kinds, cum_weights=self._arrival_weights)[0]
        self._arrivals[kind]()
        intensity = self._arrivals_per_second() * activity(world.now_ms, self._origin_ms)
        world.after(world.rng.expovariate(intensity), self._arrive)


# Delivery: JSON Lines file, signed webhooks to the gateway, or Kafka.

Send = Callable[[list[Event]], Awaitable[object]]

HISTORY_WINDOW_MS = HOUR_MS
BATCH = 1000
WEBHOOK_ATTEMPTS = 10
WEBHOOK_BACKOFF_S = 0.5
WEBHOOK_BACKOFF_CAP_S = 10.0


class WebhookRejected(RuntimeError):
    """The gateway refused a batch, or stayed unavailable through every retry."""


class WebhookSender:
    """POSTs batches of canonical events to the gateway's `/webhooks/events`, signed."""

    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str,
                 run_id: str) -> None:
        self.session = session
        self.url = url
        self.secret = secret
        self.run_id = run_id
        self._messages = itertools.count(1)

    async def send(self, events: list[Event]) -> None:
        """Deliver one batch; retries with backoff while the gateway answers 503 or is down."""
        body = orjson.dumps(events)
        message_id = f"msg-{self.run_id}-{next(self._messages)}"
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                if await self._post(message_id, body):
                    return
            except aiohttp.ClientConnectionError as exc:
                log.warning("gateway unreachable (%s), retrying", exc)
            await asyncio.sleep(min(WEBHOOK_BACKOFF_S * 2**attempt, WEBHOOK_BACKOFF_CAP_S))
        raise WebhookRejected(f"{self.url} still unavailable after {WEBHOOK_ATTEMPTS} attempts")

    async def _post(self, message_id: str, body: bytes) -> bool:
        """One attempt: True when accepted, False on 503; raises on any other refusal."""
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(self.secret, message_id, timestamp, body),
        }
        async with self.session.post(self.url, data=body, headers=headers) as response:
            if response.status == 503:
                return False
            if response.status >= 300:
                problem = (await response.text())[:500]
                raise WebhookRejected(f"{self.url} answered {response.status}: {problem}")
            return True


@asynccontextmanager
async def json_lines_sink(path: Path) -> AsyncIterator[Send]:
    """Write events to a JSON Lines file (replaced if it exists)."""
    with path.open("wb") as file:

        async def send(events: list[Event]) -> None:
            file.write(b"".join(orjson.dumps(event) + b"\n" for event in events))

        yield send


@asynccontextmanager
async def webhook_sink(settings: Settings, run_id: str) -> AsyncIterator[Send]:
    """POST signed batches to the local gateway."""
    if settings.secret_standard is None:
        raise ValueError("CRMKPI_SECRET_STANDARD (whsec_...) is required to send webhooks")
    url = f"http://127.0.0.1:{settings.gateway_port}/webhooks/events"
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(session, url, settings.secret_standard.get_secret_value(), run_id)
        yield sender.send


@asynccontextmanager
async def kafka_sink(settings: Settings) -> AsyncIterator[Send]:
    """Publish straight to the events topic (created first if missing)."""
    bootstrap = settings.kafka_bootstrap or find_services(settings).kafka_bootstrap
    publisher = await publisher_for(settings, bootstrap)
    try:
        yield publisher.publish
    finally:
        await publisher.stop()


def open_sink(settings: Settings, *, output: Path | None, webhooks: bool,
              run_id: str) -> AbstractAsyncContextManager[Send]:
    """The destination: the output file, else the gateway's webhooks, else Kafka."""
    if output is not None:
        return json_lines_sink(output)
    if webhooks:
        return webhook_sink(settings, run_id)
    return kafka_sink(settings)


def windows(start_ms: int, end_ms: int, size_ms: int) -> Iterator[tuple[int, int]]:
    """Contiguous `[start, end)` windows of at most `size_ms` covering `[start_ms, end_ms)`."""
    for window_start in range(start_ms, end_ms, size_ms):
        yield window_start, min(window_start + size_ms, end_ms)


async def send_between(company: CrmCompany, send: Send, start_ms: int, end_ms: int) -> int:
    """Generate and send the events of `[start_ms, end_ms)` in batches; returns the count."""
    sent = 0
    for window_start, window_end in windows(start_ms, end_ms, HISTORY_WINDOW_MS):
        events = company.events_between(window_start, window_end)
        for first in range(0, len(events), BATCH):
            await send(events[first:first + BATCH])
        sent += len(events)
    return sent


async def run_live(company: CrmCompany, send: Send, start_ms: int,
                   duration: float | None) -> int:
    """Emit events in real time, once a second, from `start_ms` until `duration` elapses."""
    sent = 0
    began = time.monotonic()
    elapsed = 0.0
    while duration is None or elapsed < duration:
        elapsed = elapsed + 1 if duration is None else min(elapsed + 1, duration)
        await asyncio.sleep(max(0.0, began + elapsed - time.monotonic()))
        end_ms = _now_ms()
        sent += await send_between(company, send, start_ms, end_ms)
        start_ms = end_ms
    return sent


async def run_simulation(settings: Settings, *, rate: float, duration: float | None,
                         history_days: float, output: Path | None, webhooks: bool,
                         seed: int | None) -> int:
    """Backfill `history_days` of history, then emit live at `rate` for `duration` seconds.

    `duration=None` runs until cancelled, except with `output`, where only the history is
    written. Returns the number of events sent.
    """
    run_id = secrets.token_hex(4)
    company = CrmCompany(rate=rate, seed=seed, run_id=run_id)
    async with open_sink(settings, output=output, webhooks=webhooks, run_id=run_id) as send:
        now_ms = _now_ms()
        sent = await send_between(company, send, now_ms - round(history_days * DAY_MS), now_ms)
        log.info("simulated %d events of history (%.3g days)", sent, history_days)
        if output is not None and duration is None:
            return sent
        return sent + await run_live(company, send, now_ms, duration)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
