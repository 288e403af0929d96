"""The oracle on hand-computed histories: explicit event times, explicit T, one exact assertion.

Every expected value below was computed by hand from kpis.md and docs/semantics.md; a float is
written as the decimal or `int / int` whose correctly rounded value the KPI must equal.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from tests.oracle.events import datetime_to_ms, first_copies, parse_time_ms
from tests.oracle.history import FX_RATES, generate_history
from tests.oracle.kpis import compute_kpis, events_processed, events_rejected

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EUR = {"EUR": "1.08"}
Row = tuple[str, str, dict[str, Any]]

EMPTY: dict[str, Any] = {
    "leads_created": 0,
    "visits": 0,
    "traffic_to_lead_rate": None,
    "lead_conversion_rate": None,
    "lead_abandonment_rate": None,
    "deals_won": 0,
    "deals_lost": 0,
    "win_rate": None,
    "won_revenue": 0.0,
    "avg_deal_size": None,
    "sales_cycle_seconds_avg": None,
    "new_customers": 0,
    "spend_marketing": 0.0,
    "spend_sales": 0.0,
    "spend_retention": 0.0,
    "spend_crm": 0.0,
    "cac": None,
    "marketing_roi": None,
    "crm_roi": None,
    "tickets_created": 0,
    "first_response_seconds_avg": None,
    "first_response_seconds_p50": None,
    "first_response_seconds_p90": None,
    "resolution_seconds_avg": None,
    "open_tickets": 0,
    "nps": None,
    "csat": None,
    "ces": None,
    "mrr": 0.0,
    "active_customers": 0,
    "arpu": None,
    "churn_rate": None,
    "retention_rate": None,
    "revenue_churn_rate": None,
    "net_new_mrr": 0.0,
    "renewal_rate": None,
    "cltv": None,
    "ltv_to_cac": None,
    "retention_cost_per_customer": None,
    "orders": 0,
    "avg_order_value": None,
    "repeat_purchase_rate": None,
    "cart_abandonment_rate": None,
    "active_users": 0,
    "records_created": 0,
    "routine_task_seconds_avg": None,
}

CHANNEL_SLICEABLE = (
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
    "spend_marketing",
    "spend_sales",
    "spend_retention",
    "spend_crm",
    "marketing_roi",
    "crm_roi",
    "tickets_created",
    "first_response_seconds_avg",
    "first_response_seconds_p50",
    "first_response_seconds_p90",
    "resolution_seconds_avg",
    "orders",
    "avg_order_value",
    "repeat_purchase_rate",
    "cart_abandonment_rate",
)
REGION_SLICEABLE = (
    "leads_created",
    "lead_conversion_rate",
    "deals_won",
    "deals_lost",
    "win_rate",
    "won_revenue",
    "avg_deal_size",
)
PRIORITY_SLICEABLE = (
    "tickets_created",
    "first_response_seconds_avg",
    "first_response_seconds_p50",
    "first_response_seconds_p90",
    "resolution_seconds_avg",
)


def empty_slices(sliceable: tuple[str, ...]) -> dict[str, Any]:
    """The output for no events when sliced: every sliceable KPI has no slice."""
    return EMPTY | {kpi: {} for kpi in sliceable}


def ago(**delta: float) -> str:
    """RFC 3339 text of T minus a timedelta."""
    return (T - timedelta(**delta)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(
    event_id: str, event_type: str, occurred_at: str, data: dict[str, Any], source: str = "sim"
) -> dict[str, Any]:
    """A canonical event."""
    return {
        "id": event_id,
        "source": source,
        "type": event_type,
        "occurred_at": occurred_at,
        "data": data,
    }


def history(*rows: Row) -> list[dict[str, Any]]:
    """Events in the given arrival order, with ids e1, e2, ..."""
    return [event(f"e{n}", kind, when, data) for n, (kind, when, data) in enumerate(rows, 1)]


def exact(value: Any) -> Any:
    """Values tagged with their type, so that 0 and 0.0 (or 1 and 1.0) differ."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    return (type(value).__name__, value)


DEALS = history(
    ("deal.won", ago(days=1), {"deal_id": "d1", "customer_id": "c1"}),  # before its created
    ("deal.created", ago(days=3), {"deal_id": "d1", "amount": 999.99, "currency": "EUR"}),
    ("deal.created", ago(days=20), {"deal_id": "d2", "amount": 500}),
    ("deal.updated", ago(days=10), {"deal_id": "d2", "amount": 2000, "currency": "USD"}),
    ("deal.won", ago(days=2), {"deal_id": "d2", "amount": 2500.5, "customer_id": "c2"}),
    ("deal.won", ago(days=3), {"deal_id": "d3"}),  # no amount, creation unknown
    ("deal.lost", ago(hours=1), {"deal_id": "d4", "reason": "price"}),
    ("deal.won", ago(days=8), {"deal_id": "d5", "amount": 999, "customer_id": "c2"}),
)


def test_deals_with_eur_conversion() -> None:
    # d1: 999.99 EUR * 1.08 = 1079.9892 USD, cycle 2 d; d2: 2500.5 USD (latest), cycle 18 d;
    # d3 counts as won without amount; d5 is outside 7d but acquires c2 before the window.
    assert exact(compute_kpis(DEALS, T, window="7d", fx_rates=EUR)) == exact(
        EMPTY
        | {
            "deals_won": 3,
            "deals_lost": 1,
            "win_rate": 0.75,
            "won_revenue": 3580.4892,
            "avg_deal_size": 1790.2446,
            "sales_cycle_seconds_avg": 864000.0,
            "new_customers": 1,
            "cac": 0.0,
        }
    )


def test_deals_by_region_use_the_close_event_fields() -> None:
    events = history(
        ("deal.created", ago(days=2), {"deal_id": "d1", "amount": 100, "region": "na"}),
        ("deal.won", ago(days=1), {"deal_id": "d1", "amount": 100, "region": " EMEA "}),
        ("deal.won", ago(hours=5), {"deal_id": "d2", "amount": 300, "currency": "EUR", "region": "mena"}),
        ("deal.lost", ago(hours=3), {"deal_id": "d3"}),
        ("deal.lost", ago(hours=2), {"deal_id": "d4", "region": "na"}),
        ("lead.created", ago(days=1), {"lead_id": "l1", "region": "apac", "channel": "web"}),
        ("site.visit", ago(hours=4), {"count": 10, "channel": "web"}),
    )
    assert exact(compute_kpis(events, T, window="7d", by="region", fx_rates=EUR)) == exact(
        empty_slices(REGION_SLICEABLE)
        | {
            "leads_created": {"apac": 1},
            "visits": 10,
            "traffic_to_lead_rate": 0.1,
            "lead_conversion_rate": {"apac": 0.0},
            "lead_abandonment_rate": 1.0,
            "deals_won": {"emea": 1, "other": 1},
            "deals_lost": {"unknown": 1, "na": 1},
            "win_rate": {"emea": 1.0, "other": 1.0, "unknown": 0.0, "na": 0.0},
            "won_revenue": {"emea": 100.0, "other": 324.0},
            "avg_deal_size": {"emea": 100.0, "other": 324.0},
            "sales_cycle_seconds_avg": 86400.0,
        }
    )


def test_lead_cohort_converted_after_the_window_start() -> None:
    events = history(
        ("lead.converted", ago(hours=1), {"lead_id": "L1", "customer_id": "c9"}),
        ("lead.created", ago(days=6), {"lead_id": "L1", "channel": "web"}),
        ("lead.created", ago(days=5), {"lead_id": "L2", "channel": "ads"}),
        ("lead.touched", ago(days=4), {"lead_id": "L2", "user_id": "u1"}),
        ("lead.created", ago(days=2), {"lead_id": "L3"}),
        ("lead.created", ago(days=10), {"lead_id": "L4"}),  # converted in W, created before
        ("lead.converted", ago(days=3), {"lead_id": "L4"}),
        ("lead.created", ago(days=7), {"lead_id": "L5"}),  # exactly T-W: outside (T-W, T]
        ("site.visit", ago(days=1), {"count": 30, "channel": "web"}),
        ("site.visit", ago(hours=2), {}),
        ("site.visit", ago(days=8), {"count": 100}),
    )
    assert exact(compute_kpis(events, T, window="7d")) == exact(
        EMPTY
        | {
            "leads_created": 3,
            "visits": 31,
            "traffic_to_lead_rate": 3 / 31,
            "lead_conversion_rate": 1 / 3,
            "lead_abandonment_rate": 1 / 3,
        }
    )


def test_money_is_exact_and_converted_per_event_half_even() -> None:
    # 0.03 GBP * 1.26735 = 0.0380205 -> 0.038020 (half-even) per event: 0.076040 in all, where
    # converting the sum gives 0.076041 and half-up 0.076042. 0.1 + 0.2 USD is exactly 0.3.
    def spend(category: str, amount: float, **currency: str) -> Row:
        return ("spend.recorded", ago(hours=2), {"category": category, "amount": amount, **currency})

    events = history(
        spend("marketing", 0.03, currency="GBP"),
        spend("marketing", 0.03, currency="gbp"),
        spend("sales", 0.1, currency="USD"),
        spend("sales", 0.2),
        spend("crm", 200),
        ("deal.won", ago(hours=1), {"deal_id": "d1", "amount": 1000}),
    )
    kpis = compute_kpis(events, T, window="24h", fx_rates={"GBP": "1.26735"}, gross_margin="0.3")
    assert exact(kpis) == exact(
        EMPTY
        | {
            "deals_won": 1,
            "win_rate": 1.0,
            "won_revenue": 1000.0,
            "avg_deal_size": 1000.0,
            "spend_marketing": 0.07604,
            "spend_sales": 0.3,
            "spend_crm": 200.0,
            "marketing_roi": (1_000_000_000 - 76_040) / 76_040,
            "crm_roi": 0.5,
        }
    )


def _started(sub: str, customer: str, when: str, mrr: float, **extra: str) -> Row:
    data = {"subscription_id": sub, "customer_id": customer, "mrr": mrr, **extra}
    return ("subscription.started", when, data)


def _changed(sub: str, when: str, mrr: float, **extra: str) -> Row:
    return ("subscription.changed", when, {"subscription_id": sub, "mrr": mrr, **extra})


def _cancelled(sub: str, when: str) -> Row:
    return ("subscription.cancelled", when, {"subscription_id": sub})


def test_churn_excludes_join_and_churn_and_counts_a_reactivated_churn() -> None:
    # At T-30d: A, B, C, E active (E's two subscriptions overlap), D joins and churns inside,
    # F's first period ended before. A and C churn in W; C then reactivates (same id).
    events = history(
        _started("a1", "A", ago(days=60), 100),
        _cancelled("a1", ago(days=10)),
        _started("b1", "B", ago(days=50), 50),
        ("subscription.renewed", ago(days=20), {"subscription_id": "b1"}),
        _started("c1", "C", ago(days=40), 30),
        _cancelled("c1", ago(days=20)),
        _started("c1", "C", ago(days=5), 40),
        _started("d1", "D", ago(days=10), 15),
        _cancelled("d1", ago(days=5)),
        _started("e1", "E", ago(days=45), 20),
        _cancelled("e1", ago(days=15)),
        _started("e2", "E", ago(days=20), 25),
        _started("f1", "F", ago(days=90), 5),
        _cancelled("f1", ago(days=35)),
        _started("f2", "F", ago(days=3), 10),
        ("spend.recorded", ago(days=1), {"category": "marketing", "amount": 100}),
        ("spend.recorded", ago(days=2), {"category": "retention", "amount": 40}),
    )
    assert exact(compute_kpis(events, T, window="30d", gross_margin="0.8")) == exact(
        EMPTY
        | {
            "new_customers": 1,
            "spend_marketing": 100.0,
            "spend_retention": 40.0,
            "cac": 100.0,
            "marketing_roi": -1.0,
            "mrr": 125.0,
            "active_customers": 4,
            "arpu": 31.25,
            "churn_rate": 0.5,
            "retention_rate": 0.5,
            "revenue_churn_rate": 0.75,
            "net_new_mrr": -75.0,
            "renewal_rate": 0.2,
            "cltv": 50.0,
            "ltv_to_cac": 0.5,
            "retention_cost_per_customer": 10.0,
        }
    )


def test_revenue_churn_counts_contractions_and_cancellations() -> None:
    # mrr(T-7d) = 200 + 80 EUR (86.4) + 10 = 296.4. Lost in W: s1 200->150 (50), 150->180 not,
    # cancelled at 180; s2 86.4->64.8 (21.6); s4 cancelled at 10, reactivated (same id), 12->9
    # (3), cancelled again at 9; s3 started inside W. 273.6 / 296.4 = 228 / 247.
    events = history(
        _changed("s1", ago(days=3), 150),  # arrives before its started
        _started("s1", "a", ago(days=40), 200),
        _changed("s1", ago(days=2), 180),
        _cancelled("s1", ago(days=1)),
        _started("s2", "b", ago(days=20), 100, currency="EUR"),
        _changed("s2", ago(days=10), 80, currency="EUR"),
        _changed("s2", ago(days=1), 60, currency="EUR"),
        _started("s3", "c", ago(days=2), 500),
        _changed("s3", ago(days=1), 100),
        _started("s4", "d", ago(days=30), 10),  # exactly T-30d: active then, not acquired in 30d
        _cancelled("s4", ago(days=6)),
        _started("s4", "d", ago(days=4), 12),
        _changed("s4", ago(days=3), 9),
        _cancelled("s4", ago(days=2)),
    )
    # At T-7d a, b, d are active; a and d churn. At T-30d a and d are active and both churn.
    assert exact(compute_kpis(events, T, window="7d", fx_rates=EUR)) == exact(
        EMPTY
        | {
            "new_customers": 1,
            "cac": 0.0,
            "mrr": 164.8,
            "active_customers": 2,
            "arpu": 82.4,
            "churn_rate": 2 / 3,
            "retention_rate": 1 / 3,
            "revenue_churn_rate": 228 / 247,
            "net_new_mrr": -131.6,
            "renewal_rate": 0.0,
            "cltv": 82.4,
            "retention_cost_per_customer": 0.0,
        }
    )


def test_surveys() -> None:
    def answer(when: str, survey: str, score: int, **extra: int) -> Row:
        return ("survey.answered", when, {"survey": survey, "score": score, **extra})

    events = history(
        *(answer(ago(hours=n + 1), "nps", score) for n, score in enumerate((10, 9, 9, 8, 3))),
        answer(ago(days=2), "nps", 0),
        answer(ago(hours=1), "csat", 5),
        answer(ago(hours=2), "csat", 4, scale_max=5),
        answer(ago(hours=3), "csat", 3),
        answer(ago(hours=4), "csat", 9, scale_max=10),
        answer(ago(hours=5), "csat", 8, scale_max=10),
        answer(ago(hours=1), "ces", 2),
        answer(ago(hours=2), "ces", 5),
        answer(ago(hours=3), "ces", 6),
    )
    assert exact(compute_kpis(events, T, window="24h")) == exact(
        EMPTY | {"nps": 40.0, "csat": 60.0, "ces": 13 / 3}
    )


def _reply(ticket: str, when: str, author: str, **extra: bool) -> Row:
    return ("ticket.replied", when, {"ticket_id": ticket, "author": author, **extra})


def _ticket(ticket: str, when: str, **fields: str) -> Row:
    return ("ticket.created", when, {"ticket_id": ticket, **fields})


TICKETS = history(
    _ticket("t1", ago(hours=5), priority="high", channel="email"),
    _reply("t1", ago(hours=4, minutes=59, seconds=50), "bot"),
    _reply("t1", ago(hours=4, minutes=59), "agent", public=False),
    _reply("t1", ago(hours=4), "customer"),
    _reply("t1", ago(hours=4, minutes=30), "agent"),  # first public agent reply: 1800 s
    ("ticket.resolved", ago(hours=2), {"ticket_id": "t1"}),
    _ticket("t2", ago(hours=30), priority="urgent"),  # created before W, first reply in W
    _reply("t2", ago(hours=20), "agent", public=True),
    ("ticket.resolved", ago(hours=19), {"ticket_id": "t2"}),
    _ticket("t3", ago(hours=1)),
    _reply("t3", ago(minutes=50), "agent"),
    _reply("t3", ago(minutes=40), "agent"),
    ("ticket.resolved", ago(minutes=30), {"ticket_id": "t3"}),
    ("ticket.reopened", ago(minutes=10), {"ticket_id": "t3"}),
    _ticket("t4", ago(hours=3), priority="P1"),
    _reply("t5", ago(hours=1), "agent"),  # creation unknown
    _ticket("t6", ago(hours=26), priority="low"),
    _reply("t6", ago(hours=25), "agent"),  # first reply before W
)


def test_first_response_ignores_bot_and_private_replies() -> None:
    # First replies in W: 600, 1800, 36000 s; p90 = 1800 + 0.8 * 34200. Resolutions: 10800,
    # 39600, 1800 s. Open at T: t3 (reopened), t4, t6.
    assert exact(compute_kpis(TICKETS, T, window="24h")) == exact(
        EMPTY
        | {
            "tickets_created": 3,
            "first_response_seconds_avg": 12800.0,
            "first_response_seconds_p50": 1800.0,
            "first_response_seconds_p90": 29160.0,
            "resolution_seconds_avg": 17400.0,
            "open_tickets": 3,
        }
    )


def test_ticket_kpis_by_priority_use_the_created_fields() -> None:
    assert exact(compute_kpis(TICKETS, T, window="24h", by="priority")) == exact(
        EMPTY
        | {
            "tickets_created": {"high": 1, "unknown": 1, "other": 1},
            "first_response_seconds_avg": {"high": 1800.0, "urgent": 36000.0, "unknown": 600.0},
            "first_response_seconds_p50": {"high": 1800.0, "urgent": 36000.0, "unknown": 600.0},
            "first_response_seconds_p90": {"high": 1800.0, "urgent": 36000.0, "unknown": 600.0},
            "resolution_seconds_avg": {"high": 10800.0, "urgent": 39600.0, "unknown": 1800.0},
            "open_tickets": 3,
        }
    )


def _order(order: str, customer: str, when: str, amount: float, **channel: str) -> Row:
    data = {"order_id": order, "customer_id": customer, "amount": amount, **channel}
    return ("order.placed", when, data)


ORDERS = history(
    _order("o1", "A", ago(days=1), 100, channel="web"),
    _order("o2", "A", ago(days=2), 50, channel="ads"),
    _order("o3", "B", ago(days=3), 20, channel="web"),
    _order("o4", "B", ago(hours=1), 30, channel=" Web"),
    _order("o5", "C", ago(days=1), 10, channel="TikTok"),
    _order("o6", "C", ago(days=2), 5),
    _order("o7", "D", ago(days=9), 1000, channel="web"),
    ("cart.created", ago(days=1), {"cart_id": "k1", "customer_id": "A", "channel": "web"}),
    ("cart.checked_out", ago(hours=20), {"cart_id": "k1", "order_id": "o1"}),
    ("cart.created", ago(days=2), {"cart_id": "k2", "customer_id": "B", "channel": "web"}),
)


def test_repeat_purchases() -> None:
    assert exact(compute_kpis(ORDERS, T, window="7d")) == exact(
        EMPTY
        | {
            "orders": 6,
            "avg_order_value": 215 / 6,
            "repeat_purchase_rate": 1.0,
            "cart_abandonment_rate": 0.5,
        }
    )


def test_repeat_purchases_by_channel_count_within_each_slice() -> None:
    # A's web and ads orders make A a repeat buyer overall, but in neither slice.
    assert exact(compute_kpis(ORDERS, T, window="7d", by="channel")) == exact(
        empty_slices(CHANNEL_SLICEABLE)
        | {
            "orders": {"web": 3, "ads": 1, "other": 1, "unknown": 1},
            "avg_order_value": {"web": 50.0, "ads": 50.0, "other": 10.0, "unknown": 5.0},
            "repeat_purchase_rate": {"web": 0.5, "ads": 0.0, "other": 0.0, "unknown": 0.0},
            "cart_abandonment_rate": {"web": 0.5},
        }
    )


def test_mtd_in_new_york_across_the_month_boundary() -> None:
    # T is 2026-11-30 23:30 EST; November starts at 2026-11-01T00:00-04:00 (DST ends that day).
    at = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
    events = history(
        ("lead.created", "2026-11-01T03:59:59.999Z", {"lead_id": "l0"}),  # Oct 31 in NY
        ("lead.created", "2026-11-01T04:00:00.000Z", {"lead_id": "l1"}),  # the month start
        ("lead.created", "2026-11-15T10:00:00-05:00", {"lead_id": "l2"}),
        ("lead.created", "2026-12-01T04:30:00Z", {"lead_id": "l3"}),  # exactly T
        ("lead.created", "2026-12-01T04:30:00.001Z", {"lead_id": "l4"}),  # after T
        _started("s1", "a", "2026-10-15T00:00:00Z", 10),
        _cancelled("s1", "2026-11-01T03:00:00Z"),
        _started("s2", "b", "2026-10-20T00:00:00Z", 20),
        _cancelled("s2", "2026-11-15T00:00:00Z"),
        _started("s3", "c", "2026-11-01T04:00:00Z", 30),
    )
    # At the month start b and c are active and b churns; at T-30d (04:30Z) as well, so the
    # 30d churn is 1/2 too, and c's acquisition is in mtd but not in 30d (no 30d CAC).
    assert exact(compute_kpis(events, at, window="mtd", timezone="America/New_York")) == exact(
        EMPTY
        | {
            "leads_created": 3,
            "lead_conversion_rate": 0.0,
            "lead_abandonment_rate": 1.0,
            "new_customers": 1,
            "cac": 0.0,
            "mrr": 30.0,
            "active_customers": 1,
            "arpu": 30.0,
            "churn_rate": 0.5,
            "retention_rate": 0.5,
            "revenue_churn_rate": 0.4,
            "net_new_mrr": -20.0,
            "renewal_rate": 0.0,
            "cltv": 60.0,
            "retention_cost_per_customer": 0.0,
        }
    )


def test_duplicates_count_once_and_the_first_copy_wins() -> None:
    won = event("e1", "deal.won", ago(hours=1), {"deal_id": "d1", "amount": 100}, "hubspot")
    order = event("e2", "order.placed", ago(hours=3), {"order_id": "o1", "customer_id": "A", "amount": 40})
    events = [
        won,
        event("e1", "deal.won", ago(hours=1), {"deal_id": "d1", "amount": 999}, "hubspot"),
        event("e1", "lead.created", ago(hours=2), {"lead_id": "L1"}),  # same id, other source
        order,
        event("e3", "user.login", ago(hours=1), {"user_id": "u1"}),
        dict(order),
        event("e4", "user.login", ago(hours=2), {"user_id": "u1"}),
        dict(won),
    ]
    assert exact(compute_kpis(events, T, window="24h")) == exact(
        EMPTY
        | {
            "leads_created": 1,
            "lead_conversion_rate": 0.0,
            "lead_abandonment_rate": 1.0,
            "deals_won": 1,
            "win_rate": 1.0,
            "won_revenue": 100.0,
            "avg_deal_size": 100.0,
            "orders": 1,
            "avg_order_value": 40.0,
            "repeat_purchase_rate": 0.0,
            "active_users": 1,
        }
    )


def test_zero_denominators_are_null() -> None:
    # No visits, no priced won deal, no new customer, no reply, MRR 0 at T-24h, no 30d base.
    events = history(
        ("lead.created", ago(hours=1), {"lead_id": "L1"}),
        ("deal.won", ago(hours=2), {"deal_id": "d1"}),
        ("spend.recorded", ago(hours=3), {"category": "marketing", "amount": 50}),
        ("spend.recorded", ago(hours=4), {"category": "retention", "amount": 20}),
        _ticket("t1", ago(hours=5)),
        _started("s1", "a", ago(days=3), 0),
    )
    assert exact(compute_kpis(events, T, window="24h")) == exact(
        EMPTY
        | {
            "leads_created": 1,
            "lead_conversion_rate": 0.0,
            "lead_abandonment_rate": 1.0,
            "deals_won": 1,
            "win_rate": 1.0,
            "spend_marketing": 50.0,
            "spend_retention": 20.0,
            "marketing_roi": -1.0,
            "tickets_created": 1,
            "open_tickets": 1,
            "mrr": 0.0,
            "active_customers": 1,
            "arpu": 0.0,
            "churn_rate": 0.0,
            "retention_rate": 1.0,
            "retention_cost_per_customer": 20.0,
        }
    )


def test_tenants_adoption_and_unknown_types() -> None:
    def acme(raw: dict[str, Any]) -> dict[str, Any]:
        return raw | {"tenant": "acme"}

    events = [
        event("e1", "user.login", ago(hours=1), {"user_id": "u1"}),  # no tenant: default
        event("e2", "user.login", ago(hours=2), {"user_id": "u2"}) | {"tenant": "default"},
        acme(event("e3", "user.login", ago(hours=3), {"user_id": "u3"})),
        event("e4", "record.created", ago(hours=1), {"user_id": "u1", "object": "contact"}),
        acme(event("e5", "record.created", ago(hours=1), {"user_id": "u3", "object": "deal"})),
        event("e6", "task.completed", ago(hours=1), {"user_id": "u1", "duration_seconds": 30}),
        event("e7", "task.completed", ago(hours=2), {"user_id": "u2", "duration_seconds": 45.5}),
        event("e8", "task.completed", ago(hours=3), {"user_id": "u2", "duration_seconds": 0.0005}),
        event("e9", "deal.exploded", ago(hours=1), {"deal_id": "d1"}),
    ]
    # Durations are integer ms, truncated: (30000 + 45500 + 0) / 3 ms = 151/6 s.
    assert exact(compute_kpis(events, T, window="24h")) == exact(
        EMPTY | {"active_users": 2, "records_created": 1, "routine_task_seconds_avg": 151 / 6}
    )


def test_events_processed_counts_distinct_valid_events() -> None:
    login = event("e1", "user.login", ago(hours=1), {"user_id": "u1"})
    bad = event("e2", "deal.exploded", ago(hours=1), {})
    events = [login, dict(login), login | {"source": "hubspot"}, bad, dict(bad)]
    assert (events_processed(events), events_rejected(events)) == (2, 2)


def _arrives_before_earlier(events: list[dict[str, Any]], first: str, then: str, field: str) -> bool:
    """Whether some entity's `first` event is delivered before its earlier `then` event."""
    latest_first: dict[str, int] = {}
    for raw in first_copies(events):
        entity, t = raw["data"].get(field), parse_time_ms(raw["occurred_at"])
        if raw["type"] == first:
            latest_first[entity] = max(latest_first.get(entity, t), t)
        elif raw["type"] == then and t < latest_first.get(entity, t):
            return True
    return False


def test_generator_is_deterministic_messy_and_in_the_past() -> None:
    end = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    events = generate_history(11, end=end, n_events=3000)
    keys = [(raw["source"], raw["id"]) for raw in events]
    times = [parse_time_ms(raw["occurred_at"]) for raw in events]
    copies: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, raw in zip(keys, events, strict=True):
        copies.setdefault(key, []).append(raw)
    summary = {
        "deterministic": events == generate_history(11, end=end, n_events=3000),
        "seed_matters": events != generate_history(12, end=end, n_events=3000),
        "about_n_events": 2900 <= len(copies) <= 3100,
        "duplicates": len(copies) < len(keys),
        "exact_copies": all(group.count(group[0]) == len(group) for group in copies.values()),
        "out_of_order": any(later < earlier for earlier, later in itertools.pairwise(times)),
        "won_before_created": _arrives_before_earlier(events, "deal.won", "deal.created", "deal_id"),
        "changed_before_started": _arrives_before_earlier(
            events, "subscription.changed", "subscription.started", "subscription_id"
        ),
        "all_before_end": max(times) < datetime_to_ms(end),
        "never_on_a_whole_second": all(t % 1000 for t in times),
        "all_valid": events_processed(events) == len(copies),
    }
    assert summary == dict.fromkeys(summary, True)


def test_sliced_counts_add_up_to_the_unsliced_count() -> None:
    end = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    events = generate_history(5, end=end, n_events=4000)
    plain = compute_kpis(events, end, window="30d", fx_rates=FX_RATES)
    counts = {"leads_created", "visits", "deals_won", "deals_lost", "tickets_created", "orders"}
    totals = {}
    for dimension, sliceable in (
        ("channel", CHANNEL_SLICEABLE),
        ("region", REGION_SLICEABLE),
        ("priority", PRIORITY_SLICEABLE),
    ):
        sliced = compute_kpis(events, end, window="30d", by=dimension, fx_rates=FX_RATES)
        for kpi in counts.intersection(sliceable):
            totals[dimension, kpi] = sum(cast(dict[str, int], sliced[kpi]).values())
    assert totals == {key: plain[key[1]] for key in totals}
