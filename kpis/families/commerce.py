"""Commerce: orders, average order value, repeat buyers and abandoned carts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kpis.buckets import SLICE_ONLY, Contribution, Segments
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent
from kpis.families.customers import ORDERS
from kpis.formulas import Kpi, count, fraction_of, mean_money, ratio
from kpis.timebase import DAY_MS, HOUR_RETENTION_MS
from kpis.values import segment, to_micro
from streams.events import Event

# A buyer forgets orders this far behind its newest one: they are older than every kept time
# bucket (events are at most minutes ahead of the clock), so nothing derived from them counts.
ORDER_HORIZON_MS = HOUR_RETENTION_MS + DAY_MS

# (event time, uid) of an order: "latest" orders are the largest stamps.
Stamp = tuple[int, str]


class Buyer(Entity):
    """A customer's recent orders, which count as orders and make it a (repeat) buyer.

    Orders are counted here rather than by a stateless rule since an event type feeds either
    an entity or a stateless rule. A customer has >= 1 order in a window ending at or after
    its events iff its latest order is in the window, and >= 2 iff its second latest is; per
    channel likewise with the channel's own orders, as slice-only contributions (one `web` and
    one `ads` order make a repeat buyer in the total, but in neither slice).
    """

    kind = "buyer"
    key_field = "customer_id"
    fields = ("orders",)

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, list[Any]] = {}  # uid -> [time, channel, micro-units]

    def update(self, event: Event, config: KpiConfig) -> None:
        """Add an order, then forget the orders past the horizon."""
        data = event.data
        channel = segment(data.get("channel"), "channel", config)
        micro = to_micro(data["amount"], data.get("currency"), config)
        self.orders[event.uid] = [event.time_ms, channel, micro]
        horizon = max(time_ms for time_ms, _, _ in self.orders.values()) - ORDER_HORIZON_MS
        self.orders = {uid: order for uid, order in self.orders.items() if order[0] >= horizon}

    def contributions(self, tenant: str) -> list[Contribution]:
        """Each order and its amount, by channel; buyer counts overall and per channel."""
        out: list[Contribution] = []
        stamps: list[Stamp] = []
        by_channel: defaultdict[str, list[Stamp]] = defaultdict(list)
        for uid, (time_ms, channel, micro) in self.orders.items():
            segments = (("channel", channel),)
            out += [
                (time_ms, tenant, "orders", segments, 1),
                (time_ms, tenant, "order_amount_micro", segments, micro),
            ]
            stamps.append((time_ms, uid))
            by_channel[channel].append((time_ms, uid))
        out += _buyer_counts(tenant, stamps, ())
        for channel, stamps in by_channel.items():
            out += _buyer_counts(tenant, stamps, (SLICE_ONLY, ("channel", channel)))
        return out

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """The times of its recent orders, to its customer's churn risk."""
        times = sorted(time_ms for time_ms, _, _ in self.orders.values())
        return [(entity_id, ORDERS, times[-1], {"customer_id": entity_id, "orders": times})] if times else []


def _buyer_counts(tenant: str, stamps: list[Stamp], segments: Segments) -> list[Contribution]:
    """A buyer at the latest order's time, a repeat buyer at the second latest's."""
    latest = sorted(stamps, reverse=True)[:2]
    fields = ("buyers", "repeat_buyers")
    return [(time_ms, tenant, name, segments, 1) for name, (time_ms, _) in zip(fields, latest, strict=False)]


class Cart(Entity):
    """A cart: when and through which channel it was created, and whether it was checked out."""

    kind = "cart"
    key_field = "cart_id"
    fields = ("created", "checked_out")

    def __init__(self) -> None:
        super().__init__()
        self.created: list[Any] | None = None  # [time, uid, channel], earliest
        self.checked_out = False

    def update(self, event: Event, config: KpiConfig) -> None:
        """Record creation (earliest wins) or a checkout."""
        if event.type == "cart.checked_out":
            self.checked_out = True
            return
        place = [event.time_ms, event.uid]
        if self.created is None or place < self.created[:2]:
            self.created = [*place, segment(event.data.get("channel"), "channel", config)]

    def contributions(self, tenant: str) -> list[Contribution]:
        """Created and checked-out counts at creation time."""
        if self.created is None:
            return []
        time_ms, _, channel = self.created
        segments = (("channel", channel),)
        out: list[Contribution] = [(time_ms, tenant, "carts_created", segments, 1)]
        if self.checked_out:
            out.append((time_ms, tenant, "carts_checked_out", segments, 1))
        return out


CHANNEL = ("channel",)

COMMERCE_KPIS = (
    Kpi("orders", "Orders placed", "count of order.placed in W", "count",
        ("orders",), count("orders"), CHANNEL),
    Kpi("avg_order_value", "Average order value", "sum of order amounts in W / orders", "currency",
        ("order_amount_micro", "orders"), mean_money("order_amount_micro", "orders"), CHANNEL),
    Kpi("repeat_purchase_rate", "Share of buyers in W who ordered twice or more",
        "customers with >= 2 orders in W / customers with >= 1 order in W", "ratio",
        ("repeat_buyers", "buyers"), fraction_of("repeat_buyers", "buyers"), CHANNEL),
    Kpi("cart_abandonment_rate", "Share of carts created in W never checked out",
        "(carts created in W - checked out) / carts created in W", "ratio",
        ("carts_created", "carts_checked_out"),
        lambda t: ratio(t("carts_created") - t("carts_checked_out"), t("carts_created")), CHANNEL),
)

COMMERCE = Family(
    name="commerce",
    entities={"order.placed": Buyer, "cart.created": Cart, "cart.checked_out": Cart},
    stateless={},
    kpis=COMMERCE_KPIS,
)
