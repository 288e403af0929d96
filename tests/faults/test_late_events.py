"""F15/F16: late and out-of-order events land in the right windows; very late ones still
update entity state.

The history arrives out of order (30% of it hours to days late). After it come events older
than every window and older than the buckets' retention: a subscription started 90 days ago
(it counts in MRR and active customers now), a ticket opened 50 days ago and never solved
(an open ticket now), a deal created 60 days ago and won (by event time) 2 days ago, whose
`deal.won` arrives before its `deal.created` (the sales cycle gains 58 days), and a visit
400 days old (in no window, yet processed). The engine's windows are cut by event time,
never by arrival or wall-clock expiry.

Reproduce: python3 -m pytest tests/faults/test_late_events.py
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from streams.events import format_time_ms
from tests.faults.harness import FX_RATES, GROSS_MARGIN, Deployment, Figures, evaluation_time
from tests.oracle.history import generate_history
from tests.oracle.kpis import compute_kpis

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def _late(event_id: str, event_type: str, days_ago: float, at_ms: int, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "source": "late-test", "type": event_type,
            "occurred_at": format_time_ms(at_ms - int(days_ago * DAY_MS)), "data": data}


def very_late_events(at_ms: int) -> list[dict[str, Any]]:
    return [
        _late("late-sub", "subscription.started", 90, at_ms, subscription_id="late-sub-1",
              customer_id="late-customer-1", mrr=1234.5, plan="pro", region="emea"),
        _late("late-ticket", "ticket.created", 50, at_ms, ticket_id="late-ticket-1",
              priority="high", channel="email"),
        _late("late-won", "deal.won", 2, at_ms, deal_id="late-deal-1", amount=5000, channel="web"),
        _late("late-created", "deal.created", 60, at_ms, deal_id="late-deal-1", amount=5000,
              channel="web"),
        _late("ancient-visit", "site.visit", 400, at_ms, count=3, channel="web"),
    ]


def test_late_and_out_of_order_events(deployment: Deployment, figures: Figures) -> None:
    began = time.monotonic()
    at_ms, at = evaluation_time()
    history = generate_history(50, end=at, n_events=6_000, late_fraction=0.3)
    late = very_late_events(at_ms)
    deployment.add_worker()
    deployment.feeder([*history, *late], chunk=150, pause=0.01).join_checked()
    figures.fault("30% of the history 1 h-5 d late; 5 events 2-400 days old arriving last")
    published = deployment.published()
    deployment.check_against_oracle(published, at_ms, at, figures)
    query = f"/api/kpis?window=30d&at={format_time_ms(at_ms)}"
    _, body = deployment.workers[0].get(query)
    without = compute_kpis(history, at, window="30d", fx_rates=FX_RATES, gross_margin=GROSS_MARGIN)
    assert body["kpis"]["mrr"] == pytest.approx(without["mrr"] + 1234.5, abs=1e-6)
    assert body["kpis"]["active_customers"] == without["active_customers"] + 1
    assert body["kpis"]["open_tickets"] == without["open_tickets"] + 1
    assert body["kpis"]["deals_won"] == without["deals_won"] + 1
    figures.notes["mrr_gain_from_90_day_old_subscription"] = body["kpis"]["mrr"] - without["mrr"]
    figures.seconds = time.monotonic() - began
