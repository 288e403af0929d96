"""Pipedrive webhooks v2 (HTTP Basic auth on the subscription, no signature).

The id is `meta.id`, else `meta.webhook_id` + entity + entity id + `meta.timestamp`; the time
is `meta.timestamp` (ISO 8601, or epoch seconds).

| `meta.entity` / `meta.action` | canonical |
|---|---|
| `lead` / `create` | `lead.created` |
| `deal` / `create` | `deal.created` (value, currency) |
| `deal` / `change` of `status` to `won` / `lost` | `deal.won` / `deal.lost` |
| `deal` / `change` of `value` or `currency` | `deal.updated` |
| `activity` / `create` on a lead | `lead.touched` by the activity's owner |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.gateway.providers.base import (
    Payload,
    Provider,
    Translation,
    canonical,
    expect_object,
    iso_ms,
    number,
    one,
    optional,
    required,
    seconds_ms,
    signed,
    text,
)
from streams.gateway.signatures import verify_basic_auth

SOURCE = "pipedrive"
CLOSED = {"won": "deal.won", "lost": "deal.lost"}

Webhook = Mapping[str, Any]


def _changed(hook: Webhook, name: str) -> bool:
    previous = optional(hook, "previous") or {}
    return name in previous and previous[name] != optional(hook, "data." + name)


def _money(hook: Webhook) -> dict[str, Any]:
    value = optional(hook, "data.value")
    return {
        "amount": None if value is None else number(value, "data.value"),
        "currency": optional(hook, "data.currency"),
    }


def _deal(hook: Webhook, action: str) -> tuple[str, dict[str, Any]] | None:
    customer = text(optional(hook, "data.org_id") or optional(hook, "data.person_id"))
    if action == "create":
        return "deal.created", {**_money(hook), "customer_id": customer}
    if action != "change":
        return None
    status = optional(hook, "data.status")
    if _changed(hook, "status") and status in CLOSED:
        if status == "won":
            return "deal.won", {**_money(hook), "customer_id": customer}
        return "deal.lost", {"reason": optional(hook, "data.lost_reason")}
    if _changed(hook, "value") or _changed(hook, "currency"):
        return "deal.updated", _money(hook)
    return None


def _mapped(hook: Webhook, entity: str, action: str) -> tuple[str, dict[str, Any]] | None:
    if entity == "deal":
        found = _deal(hook, action)
        if found is None:
            return None
        event_type, data = found
        return event_type, {"deal_id": text(required(hook, "data.id")), **data}
    if entity == "lead" and action == "create":
        return "lead.created", {"lead_id": text(required(hook, "data.id"))}
    lead = optional(hook, "data.lead_id")
    if entity == "activity" and action == "create" and lead:
        user = optional(hook, "data.owner_id") or optional(hook, "data.user_id")
        return "lead.touched", {"lead_id": text(lead), "user_id": text(user)}
    return None


def _time_ms(timestamp: Any) -> int:
    if isinstance(timestamp, str):
        return iso_ms(timestamp, "meta.timestamp")
    return seconds_ms(timestamp, "meta.timestamp")


def _event_id(hook: Webhook, entity: str) -> str:
    meta_id = optional(hook, "meta.id")
    if meta_id is not None:
        return str(meta_id)
    parts = (required(hook, "meta.webhook_id"), entity, required(hook, "meta.entity_id"))
    return ":".join(map(str, (*parts, required(hook, "meta.timestamp"))))


def translate(payload: Payload) -> Translation:
    """Canonical events of one Pipedrive v2 webhook."""
    hook = expect_object(payload)
    entity = required(hook, "meta.entity")
    mapped = _mapped(hook, entity, required(hook, "meta.action"))
    if mapped is None:
        return one(None)
    event_type, data = mapped
    time_ms = _time_ms(required(hook, "meta.timestamp"))
    return one(canonical(SOURCE, _event_id(hook, entity), event_type, time_ms, **data))


PROVIDER = Provider("pipedrive", "basic_auth_pipedrive", signed(verify_basic_auth), translate)
