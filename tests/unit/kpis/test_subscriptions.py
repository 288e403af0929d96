"""Subscription and revenue KPIs on hand-computed histories: explicit event times, a fixed T.

Events go through the worker's record path (both stages) and every KPI of the family is read
at T = 2026-11-20T12:00Z, the engine clock. MRR amounts are whole so the expected values can
be checked by hand; gross margin is 1.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from kpis.config import KpiConfig
from kpis.families.customers import SUBSCRIPTION_PERIODS, Customer
from kpis.families.subscriptions import SUBSCRIPTION_KPIS
from kpis.timebase import WINDOWS
from streams.events import Event
from tests.support.pure_engine import PureEngine, Stage
from tests.unit.kpis.engine import T_MS, T

DAY = timedelta(days=1)
CONFIG = KpiConfig()
NUMBERS = itertools.count(1)


def event(event_type: str, at: datetime, **data: Any) -> dict[str, Any]:
    """A canonical event of the default tenant at `at`."""
    return {"id": f"evt_{next(NUMBERS)}", "source": "test", "type": event_type,
            "occurred_at": at.isoformat(), "data": data}


def started(sub: str, customer: str, at: datetime, mrr: int) -> dict[str, Any]:
    return event("subscription.started", at, subscription_id=sub, customer_id=customer, mrr=mrr, plan="pro")


def cancelled(sub: str, at: datetime, reason: str = "voluntary") -> dict[str, Any]:
    return event("subscription.cancelled", at, subscription_id=sub, reason=reason)


def changed(sub: str, at: datetime, mrr: int) -> dict[str, Any]:
    return event("subscription.changed", at, subscription_id=sub, mrr=mrr)


def run(events: list[dict[str, Any]], config: KpiConfig = CONFIG) -> PureEngine:
    engine = PureEngine(config)
    engine.publish(events)
    engine.run(T_MS)
    return engine


def kpis(engine: PureEngine, window: str) -> dict[str, Any]:
    """The family's KPIs at T."""
    values = engine.kpis(window, T_MS, T_MS)
    return {kpi.id: values[kpi.id] for kpi in SUBSCRIPTION_KPIS}


def test_a_join_and_churn_inside_the_window_is_not_churn() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 40 * DAY, 100), cancelled("sub_a", T - 5 * DAY),
        started("sub_b", "cus_b", T - 10 * DAY, 50), cancelled("sub_b", T - 2 * DAY, "involuntary"),
        started("sub_c", "cus_c", T - 40 * DAY, 30),
    ])
    # At T-30d a and c are active; a churns; b joins and churns inside the window.
    assert kpis(engine, "30d") == {
        "new_customers": 1, "cac": 0.0, "mrr": 30.0, "active_customers": 1, "arpu": 30.0,
        "churn_rate": 0.5, "retention_rate": 0.5, "revenue_churn_rate": float(Fraction(100, 130)),
        "net_new_mrr": -100.0, "renewal_rate": 0.0, "cltv": 60.0, "ltv_to_cac": None,
        "retention_cost_per_customer": 0.0,
    }


def test_a_reactivation_under_the_same_id_is_a_churn_then_a_new_interval() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 50 * DAY, 100),
        started("sub_a", "cus_a", T - 10 * DAY, 80),  # arrives before the cancellation it follows
        cancelled("sub_a", T - 20 * DAY),
        event("subscription.renewed", T - 1 * DAY, subscription_id="sub_a"),
    ])
    assert kpis(engine, "30d") == {
        "new_customers": 0, "cac": None, "mrr": 80.0, "active_customers": 1, "arpu": 80.0,
        "churn_rate": 1.0, "retention_rate": 0.0, "revenue_churn_rate": 1.0,
        "net_new_mrr": -20.0, "renewal_rate": 0.5, "cltv": 80.0, "ltv_to_cac": None,
        "retention_cost_per_customer": 0.0,
    }


def test_touching_periods_of_two_subscriptions_are_one_interval() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 40 * DAY, 100), cancelled("sub_a", T - 10 * DAY),
        started("sub_b", "cus_a", T - 10 * DAY, 70),
    ])
    # The customer never left: no churn, but sub_a's MRR is lost revenue.
    assert kpis(engine, "30d") == {
        "new_customers": 0, "cac": None, "mrr": 70.0, "active_customers": 1, "arpu": 70.0,
        "churn_rate": 0.0, "retention_rate": 1.0, "revenue_churn_rate": 1.0,
        "net_new_mrr": -30.0, "renewal_rate": 0.0, "cltv": None, "ltv_to_cac": None,
        "retention_cost_per_customer": 0.0,
    }


def test_contractions_of_subscriptions_active_at_the_window_start_are_revenue_churn() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 40 * DAY, 200),
        changed("sub_a", T - 10 * DAY, 150),  # -50: contraction
        changed("sub_a", T - 5 * DAY, 300),  # expansion: not churn
        started("sub_b", "cus_b", T - 3 * DAY, 100),
        changed("sub_b", T - 2 * DAY, 20),  # not active at T-30d: not churn
    ])
    assert kpis(engine, "30d") == {
        "new_customers": 1, "cac": 0.0, "mrr": 320.0, "active_customers": 2, "arpu": 160.0,
        "churn_rate": 0.0, "retention_rate": 1.0, "revenue_churn_rate": 0.25,
        "net_new_mrr": 120.0, "renewal_rate": None, "cltv": None, "ltv_to_cac": None,
        "retention_cost_per_customer": 0.0,
    }


def test_a_cancellation_and_a_change_before_their_start_are_replayed_in_event_time() -> None:
    engine = run([
        cancelled("sub_a", T - 5 * DAY),
        changed("sub_a", T - 20 * DAY, 60),
        started("sub_a", "cus_a", T - 40 * DAY, 100),
    ])
    # Contraction 40, then the cancellation of the remaining 60: all of mrr(T-30d) = 100.
    assert kpis(engine, "30d") == {
        "new_customers": 0, "cac": None, "mrr": 0.0, "active_customers": 0, "arpu": None,
        "churn_rate": 1.0, "retention_rate": 0.0, "revenue_churn_rate": 1.0,
        "net_new_mrr": -100.0, "renewal_rate": 0.0, "cltv": None, "ltv_to_cac": None,
        "retention_cost_per_customer": None,
    }


def test_cltv_is_null_without_churn_and_cac_counts_customers_won_by_deals() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 40 * DAY, 100),
        event("spend.recorded", T - 3 * DAY, category="marketing", amount=300),
        event("spend.recorded", T - 2 * DAY, category="sales", amount=100),
        event("spend.recorded", T - 2 * DAY, category="retention", amount=50),
        event("deal.won", T - 1 * DAY, deal_id="deal_b", customer_id="cus_b"),  # acquires cus_b
    ])
    assert kpis(engine, "30d") == {
        "new_customers": 1, "cac": 400.0, "mrr": 100.0, "active_customers": 1, "arpu": 100.0,
        "churn_rate": 0.0, "retention_rate": 1.0, "revenue_churn_rate": 0.0,
        "net_new_mrr": 0.0, "renewal_rate": None, "cltv": None, "ltv_to_cac": None,
        "retention_cost_per_customer": 50.0,
    }


def test_mtd_churn_starts_at_the_month_start_of_the_configured_zone() -> None:
    # November 2026 starts at 04:00Z in New York (still EDT); in UTC at 00:00Z.
    nov_1 = datetime(2026, 11, 1, tzinfo=UTC)
    oct_1 = datetime(2026, 10, 1, tzinfo=UTC)
    engine = run([
        started("sub_a", "cus_a", datetime(2026, 10, 15, tzinfo=UTC), 10),
        cancelled("sub_a", nov_1 + timedelta(hours=2)),  # October in New York
        started("sub_b", "cus_b", oct_1, 20), cancelled("sub_b", nov_1 + timedelta(hours=6)),
        started("sub_c", "cus_c", nov_1 + timedelta(hours=3), 40),  # October in New York
        cancelled("sub_c", nov_1 + 9 * DAY),
        started("sub_d", "cus_d", nov_1 + timedelta(hours=5), 80), cancelled("sub_d", nov_1 + 11 * DAY),
        started("sub_e", "cus_e", oct_1, 160),
        started("sub_f", "cus_f", oct_1, 320), cancelled("sub_f", nov_1 + timedelta(hours=1)),
    ], replace(CONFIG, timezone="America/New_York"))
    # Active at 04:00Z: b, c, e (mrr 220); b and c churn, d joins and churns.
    # cltv: 30d churn is a, b, f of a, b, e, f active at T-30d.
    assert kpis(engine, "mtd") == {
        "new_customers": 1, "cac": 0.0, "mrr": 160.0, "active_customers": 1, "arpu": 160.0,
        "churn_rate": float(Fraction(2, 3)), "retention_rate": float(Fraction(1, 3)),
        "revenue_churn_rate": float(Fraction(60, 220)), "net_new_mrr": -60.0, "renewal_rate": 0.0,
        "cltv": float(Fraction(640, 3)), "ltv_to_cac": None, "retention_cost_per_customer": 0.0,
    }


def test_the_customer_keeps_the_last_upsert_of_each_subscription() -> None:
    def periods(*spans: tuple[int, int | None]) -> Event:
        data = {"customer_id": "cus_a", "subscription_id": "sub_a", "started_ms": 1_000,
                "periods": [[start, end, "pro", "na", "voluntary"] for start, end in spans]}
        return Event(f"v{len(spans)}", "crm-kpi", SUBSCRIPTION_PERIODS, 1_000, "default", data)

    older, newer = periods((1_000, 5_000)), periods((1_000, 5_000), (9_000, None))
    customer = Customer()
    applied = [customer.apply(upsert, CONFIG) for upsert in (older, newer, newer, older, newer)]
    assert (applied, customer.intervals()) == (
        [True, True, False, True, True],
        [[1_000, 5_000, "pro", "na", "voluntary"], [9_000, None, "pro", "na", "voluntary"]],
    )


def test_a_crash_of_the_customer_stage_and_redelivery_changes_nothing() -> None:
    engine = run([
        started("sub_a", "cus_a", T - 40 * DAY, 100), cancelled("sub_a", T - 5 * DAY),
        started("sub_a", "cus_a", T - 3 * DAY, 90), started("sub_b", "cus_a", T - 20 * DAY, 10),
        started("sub_c", "cus_c", T - 10 * DAY, 30), cancelled("sub_c", T - 2 * DAY),
    ])
    expected = {window: kpis(engine, window) for window in WINDOWS}
    # Half of the customer stage's changelog survives; every internal record is redelivered.
    lost = engine.customers
    kept = {p: len(records) // 2 for p, records in lost.table.changelog.items()}
    engine.customers = Stage("customers", CONFIG, engine.partitions, lost.table.recovered(kept))
    engine.customers.log = lost.log
    engine.run(T_MS)
    assert {window: kpis(engine, window) for window in WINDOWS} == expected
