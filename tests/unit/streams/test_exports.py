"""CRM export rows to canonical events: each format from a small fixture, exactly; parsing."""

from __future__ import annotations

import csv
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.events import parse_event
from streams.exports import FORMATS, Row, Unmappable
from streams.exports.fields import parse_amount, parse_flag, parse_time_ms
from streams.exports.salesforce import id18

FIXTURES = Path(__file__).parents[2] / "fixtures" / "exports"


def read(name: str, zone: str) -> list[Any]:
    """Each record row's events, or the message of its `Unmappable` (footers skipped)."""
    export = FORMATS[name]
    results: list[Any] = []
    with (FIXTURES / f"{name}.csv").open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        for values in reader:
            if len(values) < 2:
                continue
            try:
                events = export.events(export.row(dict(zip(header, values, strict=True)), ZoneInfo(zone)))
            except Unmappable as error:
                results.append(str(error))
                continue
            for event in events:
                parse_event(event)
            results.append(events)
    return results


def event(fmt: str, source: str, record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
    return {"id": f"import:{fmt}:{record}:{kind}", "source": source, "type": kind,
            "occurred_at": at, "data": data}


def test_hubspot_deals() -> None:
    def deal(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("hubspot-deals", "hubspot", record, kind, at, deal_id=record, **data)

    acme = {"channel": "ads", "amount": 12500.5, "customer_id": "5001"}
    assert read("hubspot-deals", "America/New_York") == [
        [deal("9001", "deal.created", "2024-01-10T14:00:00.000Z", **acme),  # EST
         deal("9001", "deal.won", "2024-03-15T13:30:00.000Z", **acme)],  # EDT
        [deal("9002", "deal.created", "2024-02-01T19:15:00.000Z", channel="organic", amount=800.0),
         deal("9002", "deal.lost", "2024-02-20T21:45:00.000Z", channel="organic",
              reason="Went with a competitor")],
        [deal("9003", "deal.created", "2024-03-01T13:00:00.000Z", channel="referral", amount=3000.0,
              customer_id="5003")],
        "Close Date: is required for a closed won deal",
    ]


def test_hubspot_contacts() -> None:
    def lead(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("hubspot-contacts", "hubspot", record, kind, at, lead_id=record, **data)

    assert read("hubspot-contacts", "America/New_York") == [
        [lead("101", "lead.created", "2024-06-03T14:00:00.000Z", channel="organic"),
         lead("101", "lead.converted", "2024-06-20T19:30:00.000Z", customer_id="7001")],
        [lead("102", "lead.created", "2024-06-04T15:00:00.000Z", channel="web")],
        "Became a Customer Date: is required when Lifecycle Stage is Customer",
    ]


def test_hubspot_tickets() -> None:
    def ticket(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("hubspot-tickets", "hubspot", record, kind, at, ticket_id=record, **data)

    assert read("hubspot-tickets", "Europe/Berlin") == [
        [ticket("301", "ticket.created", "2024-11-04T08:00:00.000Z", channel="email", priority="high"),
         ticket("301", "ticket.replied", "2024-11-04T08:42:00.000Z", author="agent", public=True),
         ticket("301", "ticket.resolved", "2024-11-04T16:45:00.000Z")],
        [ticket("302", "ticket.created", "2024-11-05T09:00:00.000Z", channel="chat", priority="normal")],
        [ticket("303", "ticket.created", "2024-11-06T10:00:00.000Z", channel="web"),
         ticket("303", "ticket.replied", "2024-11-06T10:05:00.000Z", author="agent", public=True)],
    ]


def test_salesforce_opportunities() -> None:
    def deal(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("salesforce-opportunities", "salesforce", record, kind, at, deal_id=record, **data)

    acme = {"channel": "partner", "amount": 12000.0, "currency": "USD", "customer_id": "0015g00000XyZaBAAV"}
    assert read("salesforce-opportunities", "America/Los_Angeles") == [
        [deal("0065g00000AbCdEAAV", "deal.created", "2024-01-08T08:00:00.000Z", **acme),
         deal("0065g00000AbCdEAAV", "deal.won", "2024-02-14T08:00:00.000Z", **acme)],
        [deal("0065G00000fGhIjQAK", "deal.created", "2024-02-01T08:00:00.000Z", channel="web",
              amount=4500.0, currency="EUR", customer_id="0015g00000cDeFgAAK"),
         deal("0065G00000fGhIjQAK", "deal.lost", "2024-02-01T08:00:00.000Z", channel="web")],
        [deal("0065g00000klmnoAAA", "deal.created", "2024-03-01T08:00:00.000Z")],
    ]


def test_salesforce_leads() -> None:
    def lead(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("salesforce-leads", "salesforce", record, kind, at, lead_id=record, **data)

    assert read("salesforce-leads", "America/Chicago") == [
        [lead("00Q5g00000AbCdEEAV", "lead.created", "2024-04-02T14:15:00.000Z", channel="events"),
         lead("00Q5g00000AbCdEEAV", "lead.converted", "2024-04-20T05:00:00.000Z",
              customer_id="0015g00000XyZaBAAV")],
        [lead("00Q5g00000aBcDeEAK", "lead.created", "2024-04-03T18:05:00.000Z", channel="web")],
        "Converted Date: is required for a converted lead",
    ]


def test_salesforce_cases() -> None:
    def case(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("salesforce-cases", "salesforce", record, kind, at, ticket_id=record, **data)

    assert read("salesforce-cases", "UTC") == [
        [case("5005g00000AbCdEAAV", "ticket.created", "2024-05-06T08:00:00.000Z", channel="email",
              priority="high", customer_id="0015g00000XyZaBAAV"),
         case("5005g00000AbCdEAAV", "ticket.resolved", "2024-05-06T14:30:00.000Z")],
        [case("5005g00000aBcDeAAK", "ticket.created", "2024-05-07T23:59:00.000Z", channel="phone",
              priority="normal")],
        "Date/Time Opened: unreadable date '5/7/2024 25:00 PM' (hour 25 with PM)",
    ]


def test_stripe_subscriptions_are_utc_whatever_the_timezone() -> None:
    def sub(record: str, kind: str, at: str, **data: Any) -> dict[str, Any]:
        return event("stripe-subscriptions", "stripe", record, kind, at, subscription_id=record, **data)

    assert read("stripe-subscriptions", "America/New_York") == [
        [sub("sub_1", "subscription.started", "2024-01-15T10:20:00.000Z", customer_id="cus_A", mrr=49.0,
             currency="USD", plan="pro"),
         sub("sub_1", "subscription.renewed", "2024-03-15T10:20:00.000Z", customer_id="cus_A")],
        [sub("sub_2", "subscription.started", "2023-06-01T00:00:00.000Z", customer_id="cus_B", mrr=200.0,
             currency="EUR", plan="enterprise"),  # 2 x 1,200.00 a year
         sub("sub_2", "subscription.cancelled", "2024-02-10T09:00:00.000Z", customer_id="cus_B",
             reason="involuntary")],
        [sub("sub_3", "subscription.started", "2024-02-01T12:00:00.000Z", customer_id="cus_C", mrr=130.0,
             currency="USD", plan="starter"),  # 3 x 10.00 a week; cancels at period end: not yet
         sub("sub_3", "subscription.renewed", "2024-03-14T12:00:00.000Z", customer_id="cus_C")],
        [],  # incomplete_expired: never started
        "Interval: unknown interval 'fortnight' (expected day, week, month or year)",
    ]


@pytest.mark.parametrize(("text", "zone", "expected"), [
    ("2024-03-15T14:30:00Z", "UTC", "2024-03-15T14:30:00+00:00"),
    ("2024-03-15T14:30:00.123456+05:30", "UTC", "2024-03-15T09:00:00.123+00:00"),
    ("2024-03-15 14:30", "Europe/Paris", "2024-03-15T13:30:00+00:00"),
    ("2024-03-15 14:30:59", "UTC", "2024-03-15T14:30:59+00:00"),
    ("2024-03-15", "America/New_York", "2024-03-15T04:00:00+00:00"),
    ("2024/03/15 2:30 PM", "UTC", "2024-03-15T14:30:00+00:00"),
    ("03/15/2024 02:30 PM", "UTC", "2024-03-15T14:30:00+00:00"),
    ("3/5/2024 12:05 AM", "UTC", "2024-03-05T00:05:00+00:00"),
    ("3/5/2024 12:05 p.m.", "UTC", "2024-03-05T12:05:00+00:00"),
    ("3/5/2024 14:05", "UTC", "2024-03-05T14:05:00+00:00"),
    ("03/15/2024 02:30:15 PM UTC", "Asia/Tokyo", "2024-03-15T14:30:15+00:00"),
    ("2024-03-15 14:30 -0800", "UTC", "2024-03-15T22:30:00+00:00"),
])
def test_dates(text: str, zone: str, expected: str) -> None:
    from datetime import datetime

    expected_ms = int(datetime.fromisoformat(expected).timestamp() * 1000)
    assert parse_time_ms(text, ZoneInfo(zone)) == expected_ms


@pytest.mark.parametrize("text", ["15/03/2024", "2024-02-30", "March 15, 2024", "13:00 PM 3/1/2024", "soon"])
def test_unreadable_dates_name_the_column(text: str) -> None:
    with pytest.raises(Unmappable, match=r"^Close Date: unreadable date"):
        parse_time_ms(text, UTC, "Close Date")


@pytest.mark.parametrize(("text", "amount", "currency"), [
    ("1234.5", "1234.5", None),
    ("1,234.50", "1234.50", None),
    ("$1,234,567.89", "1234567.89", None),
    ("1.234,50", "1234.50", None),
    ("1 234,50 €", "1234.50", "EUR"),
    ("£12", "12", "GBP"),
    ("EUR 4.500,00", "4500.00", "EUR"),
    ("1200 usd", "1200", "USD"),
    ("1,234", "1234", None),
    ("12,5", "12.5", None),
    ("1.234.567", "1234567", None),
    ("-40.00", "-40.00", None),
    ("($40.00)", "-40.00", None),
])
def test_amounts(text: str, amount: str, currency: str | None) -> None:
    assert parse_amount(text) == (Decimal(amount), currency)


def test_bad_amounts_and_flags_name_the_column() -> None:
    with pytest.raises(Unmappable, match=r"^Amount: not an amount: 'n/a'"):
        parse_amount("n/a", "Amount")
    with pytest.raises(Unmappable, match=r"^Won: expected true/false"):
        parse_flag("maybe", "Won")
    assert [parse_flag(v) for v in ("1", "TRUE", "yes", "0", "false", "No")] == [True] * 3 + [False] * 3


def test_headers_are_case_and_spacing_insensitive() -> None:
    row = Row({"\ufeffRECORD  id": " 42 ", "create date": "2024-01-01"}, UTC)
    assert row.required("Record ID") == "42"
    assert row.time("Create Date") == 1704067200000
    assert FORMATS["hubspot-deals"].missing(["record id", "CREATE DATE"]) == ["Deal Stage"]


def test_salesforce_ids_are_extended_to_18_characters() -> None:
    assert id18("001D000000IqhSL") == "001D000000IqhSLIAZ"  # Salesforce's documented example
    assert id18("001D000000IqhSLIAZ") == "001D000000IqhSLIAZ"
    assert id18("12345") == "12345"


def test_stripe_normalisation_matches_the_gateway() -> None:
    from streams.exports import stripe
    from streams.gateway.providers import stripe as gateway

    assert (stripe.MONTHLY, stripe.MICRO, stripe.INVOLUNTARY) == (
        gateway.MONTHLY, gateway.MICRO, gateway.INVOLUNTARY)
