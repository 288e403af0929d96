"""The canonical event validator names the bad field, including for hostile shapes."""

from __future__ import annotations

import pytest

from streams.events import InvalidEvent, parse_event

BASE = {"id": "e1", "source": "test", "occurred_at": "2026-11-20T10:00:00Z"}


@pytest.mark.parametrize(("raw", "field"), [
    ({**BASE, "type": ["deal.won"], "data": {"deal_id": "d"}}, "type"),
    ({**BASE, "type": {"a": 1}, "data": {"deal_id": "d"}}, "type"),
    ({**BASE, "type": "deal.won", "data": {"deal_id": "d", "currency": 5}}, "data.currency"),
    ({**BASE, "type": "lead.created", "data": {"lead_id": "l", "currency": "EURO"}}, "data.currency"),
    ({**BASE, "type": "deal.won", "data": {"deal_id": "d", "currency": "JPY"}}, "data.currency"),
    ({**BASE, "type": "lead.created", "tenant": "acme", "data": {"lead_id": "l"}}, "tenant"),
    ({**BASE, "type": "deal.won", "data": {"deal_id": "d", "amount": float("nan")}}, "data.amount"),
    ({**BASE, "type": "deal.won", "occurred_at": "yesterday", "data": {"deal_id": "d"}}, "occurred_at"),
])
def test_bad_events_name_their_field(raw: dict, field: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw, known_currencies=frozenset({"USD"}), known_tenants=frozenset({"default"}))
    assert error.value.field == field


def test_a_valid_event_of_an_allowed_tenant_passes() -> None:
    raw = {**BASE, "type": "deal.won", "tenant": "default",
           "data": {"deal_id": "d", "amount": 10.5, "currency": "usd"}}
    event = parse_event(raw, known_currencies=frozenset({"USD"}), known_tenants=frozenset({"default"}))
    assert (event.type, event.tenant, event.time_ms) == ("deal.won", "default", 1795168800000)
