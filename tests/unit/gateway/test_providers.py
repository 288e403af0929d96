"""Each provider's documented payloads translate to the canonical events docs/events.md defines."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.events import parse_event
from streams.gateway.providers.base import Malformed, Translation, Untranslatable
from tests.unit.gateway.support import FIXTURES, fixture, translate

SUB = "sub_1PqA2aLkdIwHu7ixSub1"
CUSTOMER = "cus_QhT3s5hGtX0001"
LEAD = "adf21080-0e10-11eb-879b-05d71fb426ec"


def event(source: str, event_id: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "source": source, "type": kind, "occurred_at": at, "data": data}


NO_KPI = Translation([], ignored=1)  # one provider event that maps to no KPI
EXPECTED: dict[str, Translation] = {
    "hubspot/batch.json": Translation(
        [
            event("hubspot", "1001", "lead.created", "2026-03-02T09:00:00.000Z", lead_id="123"),
            event("hubspot", "1002", "deal.created", "2026-03-02T09:01:00.000Z", deal_id="456"),
            event("hubspot", "1003", "deal.updated", "2026-03-02T09:02:00.000Z",
                  deal_id="456", amount=2500.5),
            event("hubspot", "1004", "deal.won", "2026-03-02T09:03:00.000Z", deal_id="456"),
            event("hubspot", "1005", "ticket.created", "2026-03-02T09:04:00.000Z", ticket_id="789"),
        ],
        ignored=1,
    ),
    "hubspot/deal_lost.json": Translation(
        [event("hubspot", "2001", "deal.lost", "2026-03-02T10:00:00.000Z", deal_id="457")]),
    "stripe/subscription_created.json": Translation(
        [event("stripe", "evt_1PqA2bLkdIwHu7ix0Created", "subscription.started",
               "2026-03-02T09:00:00.000Z", subscription_id=SUB, customer_id=CUSTOMER,
               mrr=197.0, currency="EUR", plan="pro")]),
    "stripe/subscription_updated.json": Translation(
        [event("stripe", "evt_1PqB7cLkdIwHu7ix0Updated", "subscription.changed",
               "2026-03-03T09:00:00.000Z", subscription_id=SUB, mrr=245.0, currency="EUR",
               plan="pro")]),
    "stripe/subscription_updated_metadata.json": NO_KPI,
    "stripe/subscription_deleted.json": Translation(
        [event("stripe", "evt_1PqC1eLkdIwHu7ix0Deleted", "subscription.cancelled",
               "2026-04-02T08:55:00.000Z", subscription_id=SUB, customer_id=CUSTOMER,
               reason="involuntary")]),
    "stripe/invoice_paid.json": Translation(
        [event("stripe", "evt_1PqD2fLkdIwHu7ixInvPaid", "subscription.renewed",
               "2026-04-01T09:00:00.000Z", subscription_id=SUB, customer_id=CUSTOMER)]),
    "stripe/invoice_paid_first.json": NO_KPI,
    "stripe/invoice_payment_failed.json": NO_KPI,
    "stripe/checkout_session_completed.json": Translation(
        [event("stripe", "evt_1PqF4hLkdIwHu7ixCheckout", "order.placed",
               "2026-03-02T10:06:40.000Z", order_id="cs_test_a1B2c3D4e5F6",
               customer_id="ada@example.com", amount=25.99, currency="USD")]),
    "zendesk/ticket_created.json": Translation(
        [event("zendesk", "cbe4028c-7239-495d-b020-f22348516046", "ticket.created",
               "2026-03-02T09:00:00.402Z", ticket_id="5158", customer_id="8447388090495",
               channel="web", priority="high")]),
    "zendesk/comment_added.json": Translation(
        [event("zendesk", "4a1b3c2d-0e5f-4a6b-8c7d-9e0f1a2b3c4d", "ticket.replied",
               "2026-03-02T09:12:00.000Z", ticket_id="5158", author="agent", public=True)]),
    "zendesk/comment_added_private.json": NO_KPI,
    "zendesk/status_solved.json": Translation(
        [event("zendesk", "6c3d5e4f-2a7b-4c8d-8e9f-1a2b3c4d5e6f", "ticket.resolved",
               "2026-03-02T11:00:00.000Z", ticket_id="5158")]),
    "zendesk/status_reopened.json": Translation(
        [event("zendesk", "7d4e6f5a-3b8c-4d9e-9fa0-2b3c4d5e6f70", "ticket.reopened",
               "2026-03-03T08:00:00.000Z", ticket_id="5158")]),
    "zendesk/satisfaction_trigger.json": Translation(
        [event("zendesk", "5158:2026-03-02T12:30:00Z:satisfaction", "survey.answered",
               "2026-03-02T12:30:00.000Z", survey="csat", score=2, scale_max=2,
               ticket_id="5158", customer_id="8447388090495")]),
    "intercom/conversation_user_created.json": Translation(
        [event("intercom", "notif_ccd8a4d2-a4a6-4a27-bd13-1e2f0c7a5b01", "ticket.created",
               "2026-03-02T09:00:01.000Z", ticket_id="147",
               customer_id="5310d8e7598c9a0b24000002")]),
    "intercom/conversation_admin_replied.json": Translation(
        [event("intercom", "notif_de9a7c01-5b3f-4e4d-9a7a-2f3b4c5d6e02", "ticket.replied",
               "2026-03-02T09:15:01.000Z", ticket_id="147", author="agent", public=True)]),
    "intercom/conversation_admin_closed.json": Translation(
        [event("intercom", "notif_ef0b8d12-6c4a-4f5e-8b8b-3a4b5c6d7e03", "ticket.resolved",
               "2026-03-02T11:00:01.000Z", ticket_id="147")]),
    "intercom/conversation_admin_noted.json": NO_KPI,
    "pipedrive/lead_created.json": Translation(
        [event("pipedrive", "3232a3c1-4a2c-4d19-9c1e-9b20d1f10001", "lead.created",
               "2026-03-02T09:00:00.512Z", lead_id=LEAD)]),
    "pipedrive/deal_created.json": Translation(
        [event("pipedrive", "1", "deal.created", "2026-03-02T09:05:28.000Z", deal_id="1",
               amount=2.0, currency="USD", customer_id="2")]),
    "pipedrive/deal_won.json": Translation(
        [event("pipedrive", "3232a3c1-4a2c-4d19-9c1e-9b20d1f10003", "deal.won",
               "2026-03-09T15:00:00.120Z", deal_id="1", amount=1500.0, currency="EUR",
               customer_id="2")]),
    "pipedrive/deal_lost.json": Translation(
        [event("pipedrive", "3232a3c1-4a2c-4d19-9c1e-9b20d1f10004", "deal.lost",
               "2026-03-10T10:00:00.000Z", deal_id="2", reason="Too expensive")]),
    "pipedrive/deal_value_changed.json": Translation(
        [event("pipedrive", "99:deal:1:2026-03-05T12:00:00Z", "deal.updated",
               "2026-03-05T12:00:00.000Z", deal_id="1", amount=1800.0, currency="EUR")]),
    "pipedrive/activity_created.json": Translation(
        [event("pipedrive", "3232a3c1-4a2c-4d19-9c1e-9b20d1f10006", "lead.touched",
               "2026-03-02T10:00:00.000Z", lead_id=LEAD, user_id="18487521")]),
    "pipedrive/person_created.json": NO_KPI,
    "freshdesk/ticket_created.json": Translation(
        [event("freshdesk", "4321:ticket_created:2026-03-02T09:00:00Z", "ticket.created",
               "2026-03-02T09:00:00.000Z", ticket_id="4321", customer_id="77000123456",
               priority="high", channel="email")]),
    "freshdesk/agent_reply.json": Translation(
        [event("freshdesk", "4321:agent_reply:2026-03-02T09:30:00Z", "ticket.replied",
               "2026-03-02T09:30:00.000Z", ticket_id="4321", author="agent", public=True)]),
    "freshdesk/ticket_resolved.json": Translation(
        [event("freshdesk", "4321:ticket_resolved:2026-03-02T14:00:00Z", "ticket.resolved",
               "2026-03-02T14:00:00.000Z", ticket_id="4321")]),
    "freshdesk/satisfaction_rated.json": Translation(
        [event("freshdesk", "4321:satisfaction_rated:2026-03-02T15:00:00Z", "survey.answered",
               "2026-03-02T15:00:00.000Z", ticket_id="4321", survey="csat", score=6,
               scale_max=7, customer_id="77000123456")]),
    "freshdesk/priority_changed.json": NO_KPI,
    "salesforce/notifications.xml": Translation(
        [
            event("salesforce", "04l5g00000AbCdEAAV", "lead.created", "2026-03-02T09:00:00.000Z",
                  lead_id="00Q5g00000LeAd1EAB", channel="web"),
            event("salesforce", "04l5g00000AbCdFAAV", "deal.won", "2026-03-02T16:45:00.000Z",
                  deal_id="0065g00000OpPoRAAR", amount=12000.0, currency="USD",
                  customer_id="0015g00000AcCt1AAC"),
            event("salesforce", "04l5g00000AbCdGAAV", "ticket.created",
                  "2026-03-02T10:00:00.000Z", ticket_id="5005g00000CaSe1AAB",
                  customer_id="0015g00000AcCt1AAC", priority="high", channel="email"),
        ],
        ignored=1,
    ),
    "salesforce/case_closed.xml": Translation(
        [event("salesforce", "04l5g00000AbCdJAAV", "ticket.resolved", "2026-03-03T09:30:00.000Z",
               ticket_id="5005g00000CaSe1AAB")]),
}  # fmt: skip
UNTRANSLATABLE = {
    "hubspot/missing_object_id.json": "[0].objectId",
    "stripe/subscription_created_no_customer.json": "data.object.customer",
}


def test_every_fixture_is_covered() -> None:
    files = {str(path.relative_to(FIXTURES)) for path in FIXTURES.glob("*/*") if path.is_file()}
    assert files == {*EXPECTED, *UNTRANSLATABLE, "events/batch.jsonl"}


def translate_fixture(path: str) -> Translation:
    """The translation of a fixture by the provider its folder names."""
    return translate(path.split("/")[0], fixture(path))


@pytest.mark.parametrize("path", list(EXPECTED))
def test_translation(path: str) -> None:
    assert translate_fixture(path) == EXPECTED[path]


@pytest.mark.parametrize("path", list(EXPECTED))
def test_translations_are_valid_canonical_events(path: str) -> None:
    for raw in translate_fixture(path).events:
        parse_event(raw, known_currencies=frozenset({"USD", "EUR"}))


@pytest.mark.parametrize(("path", "field"), list(UNTRANSLATABLE.items()))
def test_missing_field_is_named(path: str, field: str) -> None:
    with pytest.raises(Untranslatable) as failure:
        translate_fixture(path)
    assert failure.value.field == field


def test_canonical_events_arrive_as_object_array_or_json_lines() -> None:
    lines = fixture("events/batch.jsonl")
    events = [orjson.loads(line) for line in lines.splitlines()]
    assert translate("events", lines).events == events
    assert translate("events", orjson.dumps(events)).events == events
    assert translate("events", orjson.dumps(events[0])).events == events[:1]


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"", "no events"), (b"42", "expected an event object"), (b"{}\n{oops", "line 2")],
)
def test_canonical_body_shape(body: bytes, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        translate("events", body)


def stripe_subscription(currency: str, interval: str, count: int, amount: int) -> bytes:
    price = {"unit_amount": amount, "recurring": {"interval": interval, "interval_count": count}}
    items = {"data": [{"quantity": 2, "price": price}]}
    sub = {"id": "sub_1", "customer": "cus_1", "currency": currency, "items": items}
    event = {"id": "evt_1", "created": 1772442000, "type": "customer.subscription.created"}
    return orjson.dumps({**event, "data": {"object": sub}})


@pytest.mark.parametrize(
    ("currency", "interval", "count", "amount", "mrr"),
    [
        ("usd", "month", 3, 3000, 20.0),
        ("jpy", "year", 1, 12000, 2000.0),
        ("kwd", "month", 1, 1500, 3.0),
        ("eur", "week", 1, 1000, 86.666667),
        ("usd", "day", 1, 100, 60.833333),
    ],
)
def test_stripe_mrr_is_monthly_in_major_units(
    currency: str, interval: str, count: int, amount: int, mrr: float
) -> None:
    [started] = translate("stripe", stripe_subscription(currency, interval, count, amount)).events
    assert (started["data"]["mrr"], started["data"]["currency"]) == (mrr, currency.upper())


def test_hubspot_other_deal_stages_map_to_no_kpi() -> None:
    item = {
        "eventId": 9,
        "occurredAt": 1772442000000,
        "objectId": 1,
        "subscriptionType": "deal.propertyChange",
        "propertyName": "dealstage",
        "propertyValue": "appointmentscheduled",
    }
    assert translate("hubspot", orjson.dumps([item])) == NO_KPI


@pytest.mark.parametrize(("rating", "score", "scale_max"), [("Bad, I'm unsatisfied", 0, 2), ("4", 4, 5)])
def test_zendesk_ratings(rating: str, score: int, scale_max: int) -> None:
    hook = {"ticket_id": 1, "updated_at": "2026-03-02T12:30:00Z", "satisfaction_rating": rating}
    [answer] = translate("zendesk", orjson.dumps(hook)).events
    assert (answer["data"]["score"], answer["data"]["scale_max"]) == (score, scale_max)
