"""Commerce: distinct repeat buyers in the total and in channel slices, carts, forgotten orders."""

from __future__ import annotations

from datetime import timedelta

from kpis.config import KpiConfig
from kpis.families.commerce import Buyer
from streams.events import parse_event
from tests.unit.kpis.engine import T_MS, event, kpis

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
COMMERCE = ("orders", "avg_order_value", "repeat_purchase_rate", "cart_abandonment_rate")


def order(event_id: str, customer: str, before_t: timedelta, channel: str, amount: float) -> dict:
    return event(event_id, "order.placed", before_t, order_id=f"o{event_id}", customer_id=customer,
                 channel=channel, amount=amount)


def test_a_buyer_through_two_channels_repeats_in_the_total_only() -> None:
    events = [
        order("1", "mixed", 3 * HOUR, "web", 10.0),
        order("2", "mixed", 2 * HOUR, "ads", 20.0),
        order("3", "loyal", 5 * HOUR, "web", 30.0),
        order("4", "loyal", 4 * HOUR, "web", 40.0),
        order("5", "once", 1 * HOUR, "ads", 50.0),
        order("6", "lapsed", 2 * DAY, "web", 60.0),  # outside 24h: not a repeat there
        order("7", "lapsed", 1 * HOUR, "web", 70.0),
        event("8", "cart.created", 6 * HOUR, cart_id="c1", channel="web"),
        event("9", "cart.checked_out", 5 * HOUR, cart_id="c1"),
        event("10", "cart.created", 6 * HOUR, cart_id="c2", channel="ads"),
    ]
    assert {by: kpis(events, COMMERCE, "24h", by=by) for by in (None, "channel")} == {
        None: {"orders": 6, "avg_order_value": 220 / 6, "repeat_purchase_rate": 2 / 4,
               "cart_abandonment_rate": 1 / 2},
        "channel": {
            "orders": {"web": 4, "ads": 2},
            "avg_order_value": {"web": 150 / 4, "ads": 70 / 2},
            "repeat_purchase_rate": {"web": 1 / 3, "ads": 0.0},
            "cart_abandonment_rate": {"web": 0.0, "ads": 1.0},
        },
    }


def test_a_buyer_forgets_orders_older_than_every_bucket() -> None:
    buyer = Buyer()
    for event_id, before_t in (("1", 40 * DAY), ("2", 2 * DAY), ("3", HOUR)):
        raw = order(event_id, "c", before_t, "web", 1.0)
        buyer.apply(parse_event(raw, now_ms=T_MS), KpiConfig())
    web = (("channel", "web"),)
    two_days, hour = T_MS - 2 * 86_400_000, T_MS - 3_600_000
    assert sorted(buyer.contributions("default")) == sorted([
        (two_days, "default", "orders", web, 1),
        (two_days, "default", "order_amount_micro", web, 1_000_000),
        (hour, "default", "orders", web, 1),
        (hour, "default", "order_amount_micro", web, 1_000_000),
        (hour, "default", "buyers", (), 1),
        (two_days, "default", "repeat_buyers", (), 1),
        (hour, "default", "buyers", (("", "slice-only"), *web), 1),
        (two_days, "default", "repeat_buyers", (("", "slice-only"), *web), 1),
    ])
