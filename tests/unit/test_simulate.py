"""The synthetic CRM company: valid, consistent, believable and continuous events."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crmkpi.settings import Settings
from crmkpi.simulate import (
    DAY_MS,
    HOUR_MS,
    CrmCompany,
    run_simulation,
)
from streams.events import EVENT_TYPES, parse_event, parse_time_ms
from streams.gateway.signing import standard_signature

MONDAY_MS = parse_time_ms("2026-11-02T00:00:00Z")
SECRET = "whsec_" + base64.b64encode(b"simulated-company-secret").decode()

Event = dict[str, Any]


@pytest.fixture(scope="module")
def two_days() -> list[Event]:
    """Two days of history at 0.2 events/s, from a Monday."""
    return CrmCompany(rate=0.2, seed=7).events_between(MONDAY_MS, MONDAY_MS + 2 * DAY_MS)


@pytest.fixture(scope="module")
def ten_days() -> list[Event]:
    """Ten days at a low rate: long enough for deals to close and customers to churn."""
    return CrmCompany(rate=0.05, seed=11).events_between(MONDAY_MS, MONDAY_MS + 10 * DAY_MS)


def by_type(events: list[Event], event_type: str) -> list[Event]:
    return [event for event in events if event["type"] == event_type]


def time_ms(event: Event) -> int:
    return parse_time_ms(event["occurred_at"])


def test_the_same_seed_gives_the_same_events() -> None:
    window = (MONDAY_MS, MONDAY_MS + 6 * HOUR_MS)
    first = CrmCompany(rate=0.2, seed=3).events_between(*window)
    again = CrmCompany(rate=0.2, seed=3).events_between(*window)
    other = CrmCompany(rate=0.2, seed=4).events_between(*window)
    assert first == again
    assert first != other


def test_every_event_is_canonical(two_days: list[Event]) -> None:
    for event in two_days:
        parsed = parse_event(event, known_currencies=frozenset({"USD", "EUR", "GBP"}))
        assert parsed.source == "sim"
        assert parsed.tenant == "default"
        assert MONDAY_MS <= parsed.time_ms < MONDAY_MS + 2 * DAY_MS
        assert None not in event["data"].values()
    assert len({event["id"] for event in two_days}) == len(two_days)
    times = [time_ms(event) for event in two_days]
    assert times == sorted(times)


def test_two_days_contain_every_event_type(two_days: list[Event]) -> None:
    assert {event["type"] for event in two_days} == set(EVENT_TYPES)


def test_segments_cover_channels_regions_and_missing_values(two_days: list[Event]) -> None:
    leads = by_type(two_days, "lead.created")
    channels = Counter(lead["data"].get("channel") for lead in leads)
    assert {"web", "ads", "email", "social", "referral", "partner", None} <= set(channels)
    assert channels[None] < 0.1 * len(leads)
    assert {lead["data"]["region"] for lead in leads} == {"na", "emea", "apac", "latam"}
    amounts = [deal["data"]["amount"] for deal in by_type(two_days, "deal.created")]
    assert all(round(amount, 2) == amount > 0 for amount in amounts)
    currencies = {deal["data"]["currency"] for deal in by_type(two_days, "deal.created")}
    assert currencies == {"USD", "EUR", "GBP"}


def test_the_funnel_is_believable(ten_days: list[Event]) -> None:
    counts = Counter(event["type"] for event in ten_days)
    win_rate = counts["deal.won"] / (counts["deal.won"] + counts["deal.lost"])
    assert 0.1 <= win_rate <= 0.6
    assert 0 < counts["lead.converted"] < 0.3 * counts["lead.created"]
    reasons = {event["data"]["reason"] for event in by_type(ten_days, "subscription.cancelled")}
    assert reasons == {"voluntary", "involuntary"}
    assert counts["subscription.renewed"] > 5 * counts["subscription.cancelled"]
    checked_out = counts["cart.checked_out"] / counts["cart.created"]
    assert 0.15 < checked_out < 0.6
    buyers = Counter(event["data"]["customer_id"] for event in by_type(ten_days, "order.placed"))
    assert any(orders >= 2 for orders in buyers.values())


ORIGIN_IDS = {"lead.created": "lead_id", "deal.created": "deal_id", "ticket.created": "ticket_id",
              "subscription.started": "subscription_id", "cart.created": "cart_id"}
FOLLOW_UP_IDS = {
    "lead.touched": "lead_id", "lead.converted": "lead_id", "deal.updated": "deal_id",
    "deal.won": "deal_id", "deal.lost": "deal_id", "ticket.replied": "ticket_id",
    "ticket.resolved": "ticket_id", "ticket.reopened": "ticket_id", "survey.answered": "ticket_id",
    "subscription.changed": "subscription_id", "subscription.renewed": "subscription_id",
    "subscription.cancelled": "subscription_id", "cart.checked_out": "cart_id",
}


def test_entities_are_referred_to_after_they_are_created(ten_days: list[Event]) -> None:
    origins: dict[str, Event] = {}
    for event in ten_days:
        if event["type"] in ORIGIN_IDS:
            origins.setdefault(event["data"][ORIGIN_IDS[event["type"]]], event)
        elif event["type"] in FOLLOW_UP_IDS:
            origin = origins[event["data"][FOLLOW_UP_IDS[event["type"]]]]
            assert time_ms(origin) <= time_ms(event)
            if event["type"] == "deal.won":
                assert event["data"]["customer_id"] == origin["data"]["customer_id"]
    orders = {event["data"]["order_id"] for event in by_type(ten_days, "order.placed")}
    assert {event["data"]["order_id"] for event in by_type(ten_days, "cart.checked_out")} <= orders


def test_tickets_get_bot_agent_and_private_replies_after_creation(ten_days: list[Event]) -> None:
    created = {event["data"]["ticket_id"]: time_ms(event)
               for event in by_type(ten_days, "ticket.created")}
    replies = by_type(ten_days, "ticket.replied")
    assert {(reply["data"]["author"], reply["data"].get("public")) for reply in replies} == {
        ("bot", None), ("agent", True), ("agent", False), ("customer", None)}
    first_agent_reply: dict[str, int] = {}
    for reply in replies:
        assert time_ms(reply) > created[reply["data"]["ticket_id"]]
        if reply["data"].get("public") is True:
            first_agent_reply.setdefault(reply["data"]["ticket_id"], time_ms(reply))
    delays_s = sorted((first_agent_reply[ticket] - created[ticket]) / 1000
                      for ticket in first_agent_reply)
    assert 60 < delays_s[len(delays_s) // 2] < 6 * 3600


def test_surveys_use_their_scales(ten_days: list[Event]) -> None:
    scores: dict[str, set[int]] = {"nps": set(), "csat": set(), "ces": set()}
    for survey in by_type(ten_days, "survey.answered"):
        scores[survey["data"]["survey"]].add(survey["data"]["score"])
    assert scores["nps"] <= set(range(11)) and len(scores["nps"]) > 5
    assert scores["csat"] <= set(range(1, 6))
    assert scores["ces"] <= set(range(1, 8))


def test_working_hours_and_weekdays_are_busier(ten_days: list[Event]) -> None:
    spontaneous = {"site.visit", "lead.created", "cart.created", "record.created"}
    hours = Counter((time_ms(event) % DAY_MS) // HOUR_MS
                    for event in ten_days[len(ten_days) // 5:] if event["type"] in spontaneous)
    assert hours[10] + hours[14] > 3 * (hours[2] + hours[3])
    days = Counter((time_ms(event) - MONDAY_MS) // DAY_MS
                   for event in ten_days if event["type"] in spontaneous)
    assert days[5] + days[6] < 0.7 * (days[2] + days[3])


def test_the_average_rate_is_honoured() -> None:
    company = CrmCompany(rate=0.1, seed=5)
    company.events_between(MONDAY_MS, MONDAY_MS + DAY_MS)
    week = company.events_between(MONDAY_MS + DAY_MS, MONDAY_MS + 8 * DAY_MS)
    assert 0.75 < len(week) / (0.1 * 7 * 86400) < 1.3


def test_consecutive_windows_continue_pending_entities() -> None:
    whole = CrmCompany(rate=0.1, seed=9).events_between(MONDAY_MS, MONDAY_MS + 4 * DAY_MS)
    company = CrmCompany(rate=0.1, seed=9)
    split = MONDAY_MS + 2 * DAY_MS + 12345
    first = company.events_between(MONDAY_MS, split)
    second = company.events_between(split, MONDAY_MS + 4 * DAY_MS)
    assert first + second == whole
    assert all(time_ms(event) >= split for event in second)
    created_first = {event["data"]["deal_id"] for event in by_type(first, "deal.created")}
    won_second = {event["data"]["deal_id"] for event in by_type(second, "deal.won")}
    assert created_first & won_second


def test_windows_must_be_contiguous() -> None:
    company = CrmCompany(rate=0.1, seed=1)
    company.events_between(MONDAY_MS, MONDAY_MS + HOUR_MS)
    with pytest.raises(ValueError, match="contiguous"):
        company.events_between(MONDAY_MS + 2 * HOUR_MS, MONDAY_MS + 3 * HOUR_MS)
    with pytest.raises(ValueError, match="rate"):
        CrmCompany(rate=0)


def test_pending_state_stays_bounded() -> None:
    company = CrmCompany(rate=0.02, seed=2)
    company.events_between(MONDAY_MS, MONDAY_MS + 14 * DAY_MS)
    after_two_weeks = company.pending
    company.events_between(MONDAY_MS + 14 * DAY_MS, MONDAY_MS + 42 * DAY_MS)
    assert company.pending < 1.5 * after_two_weeks


def test_standard_webhooks_signature_matches_the_published_vector() -> None:
    signature = standard_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                      "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                      b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_history_is_written_as_json_lines(tmp_path: Path) -> None:
    output = tmp_path / "history.jsonl"
    sent = await run_simulation(Settings(_env_file=None), rate=0.05, duration=0,
                                history_days=1, output=output, webhooks=False, seed=1)
    lines = output.read_bytes().splitlines()
    assert sent == len(lines) > 1000
    for line in lines:
        parse_event(orjson.loads(line))


def gateway(received: list[Event], statuses: list[int]) -> Callable[[web.Request],
                                                                   Any]:
    """A fake gateway that checks signatures and answers the given statuses, then 202."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        expected = standard_signature(SECRET, headers["webhook-id"],
                                         int(headers["webhook-timestamp"]), body)
        if headers["webhook-signature"] != expected:
            return web.Response(status=401)
        if statuses:
            return web.Response(status=statuses.pop(0))
        received.extend(orjson.loads(body))
        return web.json_response({"accepted": len(received)}, status=202)

    return handle


async def test_webhooks_are_signed_and_retried_on_503() -> None:
    received: list[Event] = []
    app = web.Application()
    app.router.add_post("/webhooks/events", gateway(received, [503, 503]))
    async with TestServer(app, host="127.0.0.1") as server:
        settings = Settings(_env_file=None, secret_standard=SECRET, gateway_port=server.port)
        sent = await run_simulation(settings, rate=0.05, duration=1.5, history_days=0.05,
                                    output=None, webhooks=True, seed=2)
    assert sent == len(received) > 0
    assert len({event["id"] for event in received}) == sent
