"""HubSpot webhooks API (app subscriptions): a JSON array of events, signature v3.

Each item's id is its `eventId`, its time `occurredAt` (epoch ms), its entity `objectId`.

| subscriptionType | canonical |
|---|---|
| `contact.creation` | `lead.created` |
| `deal.creation` | `deal.created` |
| `deal.propertyChange` of `dealstage` to `closedwon` / `closedlost` | `deal.won` / `deal.lost` |
| `deal.propertyChange` of `amount` | `deal.updated` with the new amount |
| `ticket.creation` | `ticket.created` |

Other subscription types and other deal stages map to no KPI. `closedwon` and `closedlost`
are the internal names of the default pipeline's closing stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.gateway.providers.base import (
    Malformed,
    Payload,
    Provider,
    RawEvent,
    Translation,
    Untranslatable,
    batch,
    canonical,
    number,
    required,
    signed,
)
from streams.gateway.signatures import verify_hubspot

SOURCE = "hubspot"
CREATED = {
    "contact.creation": ("lead.created", "lead_id"),
    "deal.creation": ("deal.created", "deal_id"),
    "ticket.creation": ("ticket.created", "ticket_id"),
}
CLOSING_STAGES = {"closedwon": "deal.won", "closedlost": "deal.lost"}


def _deal_change(item: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]] | None:
    prop = item.get("propertyName")
    if prop == "dealstage":
        event_type = CLOSING_STAGES.get(required(item, "propertyValue", where))
        return None if event_type is None else (event_type, {})
    if prop == "amount":
        return "deal.updated", {"amount": number(item.get("propertyValue"), where + "propertyValue")}
    return None


def _translate_item(item: Payload, where: str) -> RawEvent | None:
    if not isinstance(item, Mapping):
        raise Malformed(f"{where.rstrip('.')} is not a JSON object")
    kind = required(item, "subscriptionType", where)
    data: dict[str, Any] = {}
    if kind in CREATED:
        event_type, id_field = CREATED[kind]
    elif kind == "deal.propertyChange":
        change = _deal_change(item, where)
        if change is None:
            return None
        (event_type, data), id_field = change, "deal_id"
    else:
        return None
    data[id_field] = str(required(item, "objectId", where))
    time_ms = required(item, "occurredAt", where)
    if isinstance(time_ms, bool) or not isinstance(time_ms, int):
        raise Untranslatable(where + "occurredAt", "must be epoch milliseconds")
    return canonical(SOURCE, str(required(item, "eventId", where)), event_type, time_ms, **data)


def translate(payload: Payload) -> Translation:
    """Canonical events of one HubSpot batch."""
    if not isinstance(payload, list):
        raise Malformed("expected a JSON array of HubSpot events")
    return batch(payload, _translate_item)


PROVIDER = Provider("hubspot", "secret_hubspot", signed(verify_hubspot), translate)
