"""Intercom webhooks (`X-Hub-Signature`): one `notification_event` per request.

The id is the notification `id`, the time its `created_at` (epoch seconds), the ticket the
conversation `data.item.id`.

| topic | canonical |
|---|---|
| `conversation.user.created` | `ticket.created` |
| `conversation.admin.replied` | `ticket.replied` by an agent |
| `conversation.admin.closed` | `ticket.resolved` |
"""

from __future__ import annotations

from typing import Any

from streams.gateway.providers.base import (
    Payload,
    Provider,
    Translation,
    canonical,
    expect_object,
    one,
    optional,
    required,
    seconds_ms,
    signed,
    text,
)
from streams.gateway.signatures import verify_intercom

SOURCE = "intercom"
ITEM = "data.item."
TOPICS: dict[str, tuple[str, dict[str, Any]]] = {
    "conversation.user.created": ("ticket.created", {}),
    "conversation.admin.replied": ("ticket.replied", {"author": "agent", "public": True}),
    "conversation.admin.closed": ("ticket.resolved", {}),
}


def translate(payload: Payload) -> Translation:
    """Canonical events of one Intercom notification."""
    notification = expect_object(payload)
    mapped = TOPICS.get(required(notification, "topic"))
    if mapped is None:
        return one(None)
    event_type, extra = mapped
    data = dict(extra, ticket_id=text(required(notification, ITEM + "id")))
    if event_type == "ticket.created":
        data["customer_id"] = text(
            optional(notification, ITEM + "source.author.id")
            or optional(notification, ITEM + "contacts.contacts.0.id")
        )
    time_ms = seconds_ms(required(notification, "created_at"), "created_at")
    return one(canonical(SOURCE, required(notification, "id"), event_type, time_ms, **data))


PROVIDER = Provider("intercom", "secret_intercom", signed(verify_intercom), translate)
