"""Tickets: what counts as a first response, first resolution, open status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.kpis.engine import T, event, kpis

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SUPPORT = ("tickets_created", "first_response_seconds_avg", "first_response_seconds_p50",
           "first_response_seconds_p90", "resolution_seconds_avg", "open_tickets")


def test_bot_customer_and_private_replies_are_not_first_responses() -> None:
    events = [
        event("1", "ticket.created", 50 * MINUTE, ticket_id="t1", channel="web", priority="high"),
        event("2", "ticket.replied", 49 * MINUTE, ticket_id="t1", author="bot", public=True),
        event("3", "ticket.replied", 48 * MINUTE, ticket_id="t1", author="agent", public=False),
        event("4", "ticket.replied", 47 * MINUTE, ticket_id="t1", author="customer"),
        event("5", "ticket.replied", 40 * MINUTE, ticket_id="t1", author="agent"),
        event("6", "ticket.replied", 30 * MINUTE, ticket_id="t1", author="agent", public=True),
        event("7", "ticket.created", 20 * MINUTE, ticket_id="t2", channel="email", priority="low"),
        event("8", "ticket.replied", 10 * MINUTE, ticket_id="t2", author="bot"),
    ]
    assert kpis(events, SUPPORT, "1h", by="priority") == {
        "tickets_created": {"high": 1, "low": 1},
        "first_response_seconds_avg": {"high": 600.0},
        "first_response_seconds_p50": {"high": pytest.approx(600.0, rel=0.005)},
        "first_response_seconds_p90": {"high": pytest.approx(600.0, rel=0.005)},
        "resolution_seconds_avg": {},
        "open_tickets": 2,
    }


def test_a_reopen_keeps_the_first_resolution() -> None:
    events = [  # delivered out of order: the second resolution of t1 first
        event("4", "ticket.resolved", 90 * MINUTE, ticket_id="t1"),
        event("1", "ticket.created", 5 * HOUR, ticket_id="t1", channel="web", priority="normal"),
        event("3", "ticket.reopened", 150 * MINUTE, ticket_id="t1"),
        event("2", "ticket.resolved", 210 * MINUTE, ticket_id="t1"),
        event("5", "ticket.created", 6 * HOUR, ticket_id="t2", channel="web", priority="normal"),
        event("6", "ticket.resolved", 330 * MINUTE, ticket_id="t2"),
        event("7", "ticket.reopened", 30 * MINUTE, ticket_id="t2"),
    ]
    assert {
        before_t: kpis(events, ("resolution_seconds_avg", "open_tickets"), "24h", at=T - before_t)
        for before_t in (4 * HOUR, 3 * HOUR, 2 * HOUR, timedelta(0))
    } == {
        4 * HOUR: {"resolution_seconds_avg": 1800.0, "open_tickets": 1},
        3 * HOUR: {"resolution_seconds_avg": 3600.0, "open_tickets": 0},
        2 * HOUR: {"resolution_seconds_avg": 3600.0, "open_tickets": 1},
        timedelta(0): {"resolution_seconds_avg": 3600.0, "open_tickets": 1},
    }
