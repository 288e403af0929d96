"""Churn risk through the worker's record path: tickets, answers, orders and subscriptions reach
the customer stage, a planted at-risk customer ranks first, and the at-risk counts in the
buckets agree with scoring every customer."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from agents.exporters.insights import riskiest
from kpis.config import KpiConfig
from kpis.families.customers import Customer
from kpis.insights.risk import AT_RISK_POINTS, FACTORS, at_risk, risk_spans, score
from kpis.timebase import DAY_MS
from tests.support.pure_engine import PureEngine
from tests.unit.kpis.engine import T_MS, event

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
IDS = itertools.count()


def customer(cid: str, plan: str, subscriptions: int = 1) -> list[dict[str, Any]]:
    return [event(f"e{next(IDS)}", "subscription.started", 50 * DAY, subscription_id=f"{cid}-s{n}",
                  customer_id=cid, mrr=100, plan=plan) for n in range(subscriptions)]


def tickets(cid: str, n: int, reply_after: timedelta, first: timedelta = 20 * DAY) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        ticket, opened = f"{cid}-t{k}", first - k * DAY
        out += [event(f"e{next(IDS)}", "ticket.created", opened, ticket_id=ticket, customer_id=cid),
                event(f"e{next(IDS)}", "ticket.replied", opened - reply_after, ticket_id=ticket,
                      author="agent", public=True)]
    return out


def answer(cid: str | None, survey: str, score: int, before: timedelta) -> dict[str, Any]:
    data = {"survey": survey, "score": score} | ({} if cid is None else {"customer_id": cid})
    return event(f"e{next(IDS)}", "survey.answered", before, **data)


def order(cid: str, before: timedelta) -> dict[str, Any]:
    return event(f"e{next(IDS)}", "order.placed", before, order_id=f"o{next(IDS)}", customer_id=cid,
                 amount=10)


HISTORY = [
    # planted: slow support, two detractors, a downgrade -> 20 + 20 + 25 + 15 = 80
    *customer("c-risk", "pro"), *tickets("c-risk", 5, 6 * HOUR),
    answer("c-risk", "nps", 3, 5 * DAY), answer("c-risk", "nps", 2, 4 * DAY),
    event("e-down", "subscription.changed", 3 * DAY, subscription_id="c-risk-s0", mrr=60),
    # one quick ticket -> 4
    *customer("c-ok", "pro"), *tickets("c-ok", 1, timedelta(minutes=10)),
    # slow tickets but buying -> 12 + 20 - 25 = 7
    *customer("c-buyer", "starter"), *tickets("c-buyer", 3, 5 * HOUR),
    *(order("c-buyer", d * DAY) for d in (1, 2, 3)),
    # two unsatisfied CSAT answers and a ticket -> 25 + 4 = 29; a promoter changes nothing
    *customer("c-mild", "starter"), *tickets("c-mild", 1, HOUR),
    answer("c-mild", "csat", 1, 2 * DAY), answer("c-mild", "csat", 3, DAY), answer("c-mild", "nps", 10, DAY),
    # one of two subscriptions lost to a failed payment, one detractor -> 20 + 12.5 = 32.5
    *customer("c-invol", "enterprise", 2), answer("c-invol", "nps", 0, DAY),
    event("e-invol", "subscription.cancelled", 2 * DAY, subscription_id="c-invol-s1", reason="involuntary"),
    # risky, but gone: not listed
    *customer("c-gone", "pro"), *tickets("c-gone", 5, 9 * HOUR),
    answer("c-gone", "nps", 1, 3 * DAY), answer("c-gone", "nps", 1, 3 * DAY),
    event("e-gone", "subscription.cancelled", DAY, subscription_id="c-gone-s0"),
    answer(None, "nps", 4, DAY),  # no customer: counted, routed by its own id
]


@pytest.fixture(scope="module")
def engine() -> PureEngine:
    engine = PureEngine(KpiConfig())
    engine.publish(HISTORY)
    engine.run(T_MS)
    return engine


def customer_states(engine: PureEngine) -> list[Any]:
    return [engine.customers.keeper.state(p) for p in range(engine.partitions)]


def test_a_planted_at_risk_customer_ranks_first_with_its_factors(engine: PureEngine) -> None:
    ranked = riskiest(customer_states(engine), "default", T_MS, 10)
    assert [(c["customer_id"], c["score"], c["at_risk"]) for c in ranked] == [
        ("c-risk", 80.0, True), ("c-invol", 32.5, False), ("c-mild", 29.0, False),
        ("c-buyer", 7.0, False), ("c-ok", 4.0, False),
    ]
    top = ranked[0]
    assert top["plan"] == "pro"
    assert top["factors"] == {
        "ticket_load": {"count": 5, "points": 20.0},
        "slow_first_responses": {"count": 5, "points": 20.0},
        "negative_feedback": {"count": 2, "points": 25.0},
        "involuntary_cancellations": {"count": 0, "points": 0.0},
        "mrr_contractions": {"count": 1, "points": 15.0},
        "recent_orders": {"count": 0, "points": 0.0},
    }
    assert riskiest(customer_states(engine), "default", T_MS, 2)[1]["customer_id"] == "c-invol"
    assert riskiest(customer_states(engine), "other", T_MS, 10) == []


@pytest.mark.parametrize("days_before", [25, 12, 3, 0, -15, -40])
def test_the_at_risk_count_in_the_buckets_equals_scoring_every_customer(engine: PureEngine,
                                                                          days_before: int) -> None:
    at_ms = T_MS - days_before * DAY_MS + 1
    scanned = sum(1 for state in customer_states(engine) for record in state.entities.values()
                  if isinstance(record.entity, Customer)
                  and (risk := record.entity.risk_at(at_ms)) is not None and at_risk(risk[0]))
    sums = engine.totals("1h", at_ms, T_MS)
    assert sums.get(("default", "at_risk_customers@at", "", ""), 0) == scanned
    if days_before == 0:
        assert scanned == 1
        assert sums[("default", "at_risk_customers@at", "plan", "pro")] == 1


def test_survey_scores_count_every_answer_whatever_its_route(engine: PureEngine) -> None:
    nps = engine.kpis("7d", T_MS, T_MS)["nps"]
    # c-risk 3, 2 (the c-risk answers at 4-5 days), c-mild 10, c-invol 0, c-gone 1, 1, anonymous 4
    assert nps == 100 * (1 - 6) / 7


def test_risk_spans_follow_the_lookback_and_activity() -> None:
    # 12.5 at 10, 22.5 at 12, 32.5 at 14, 52.5 at 15 (at risk), 65 at 20; 52.5 once the answer of
    # 10 leaves the lookback, 42.5 once the slow reply of 12 does
    facts = {"negative_feedback": [10, 20], "involuntary_cancellations": [15],
             "slow_first_responses": [12, 14]}
    end = 12 + 30 * DAY_MS
    assert risk_spans(facts, [[0, None, "pro"]]) == [(15, end, "pro")]
    assert risk_spans(facts, [[0, 15, "pro"], [18, None, "free"]]) == [(18, end, "free")]
    assert risk_spans(facts, [[0, 16, "pro"], [16, None, "free"]]) == [(15, 16, "pro"), (16, end, "free")]
    assert risk_spans({}, [[0, None, "pro"]]) == []
    assert score([0] * len(FACTORS)) == 0.0 < AT_RISK_POINTS
