"""Freshdesk automation-rule webhooks (Basic auth, or the `X-Crmkpi-Token` header).

Freshdesk sends whatever JSON the rule's admin writes, so each rule ("Ticket is created",
"Reply is sent", ...) sends this body, with `event` fixed per rule, optionally wrapped in
`{"freshdesk_webhook": ...}` as Freshdesk's simple mode does:

    {"event": "ticket_created", "ticket_id": "{{ticket.id}}", "updated_at": "<ISO 8601>",
     "requester_id": "{{ticket.requester.id}}", "ticket_priority": "{{ticket.priority}}",
     "ticket_source": "{{ticket.source}}", "satisfaction_rating": "<rating code>"}

The id is ticket id + event + `updated_at`, the time `updated_at`.

| event | canonical |
|---|---|
| `ticket_created` | `ticket.created` |
| `agent_reply` / `customer_reply` | `ticket.replied` by an agent / the customer |
| `ticket_resolved` / `ticket_reopened` | `ticket.resolved` / `ticket.reopened` |
| `satisfaction_rated` | `survey.answered`, `csat` on Freshdesk's 7-point scale |

Satisfaction rating codes -103, -102, -101, 100, 101, 102, 103 are scores 1 to 7 of 7.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.gateway.providers.base import (
    Payload,
    Provider,
    Translation,
    Untranslatable,
    canonical,
    expect_object,
    iso_ms,
    lowered,
    one,
    optional,
    required,
    signed,
    text,
)
from streams.gateway.signatures import verify_freshdesk

SOURCE = "freshdesk"
WRAPPER = "freshdesk_webhook"
RATING_SCORES = {-103: 1, -102: 2, -101: 3, 100: 4, 101: 5, 102: 6, 103: 7}
RATING_SCALE = 7
SIMPLE_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "agent_reply": ("ticket.replied", {"author": "agent", "public": True}),
    "customer_reply": ("ticket.replied", {"author": "customer", "public": True}),
    "ticket_resolved": ("ticket.resolved", {}),
    "ticket_reopened": ("ticket.reopened", {}),
}

Webhook = Mapping[str, Any]


def _satisfaction(hook: Webhook) -> dict[str, Any]:
    code = required(hook, "satisfaction_rating")
    score = RATING_SCORES.get(int(code)) if str(code).lstrip("-").isdigit() else None
    if score is None:
        raise Untranslatable("satisfaction_rating", "must be a Freshdesk rating code")
    return {
        "survey": "csat",
        "score": score,
        "scale_max": RATING_SCALE,
        "customer_id": text(optional(hook, "requester_id")),
    }


def _mapped(hook: Webhook, event: str) -> tuple[str, dict[str, Any]] | None:
    if event in SIMPLE_EVENTS:
        return SIMPLE_EVENTS[event]
    if event == "ticket_created":
        return "ticket.created", {
            "customer_id": text(optional(hook, "requester_id")),
            "priority": lowered(hook, "ticket_priority"),
            "channel": lowered(hook, "ticket_source"),
        }
    if event == "satisfaction_rated":
        return "survey.answered", _satisfaction(hook)
    return None


def translate(payload: Payload) -> Translation:
    """Canonical events of one Freshdesk rule webhook."""
    hook = expect_object(payload)
    hook = expect_object(hook.get(WRAPPER, hook))
    event = str(required(hook, "event"))
    mapped = _mapped(hook, event)
    if mapped is None:
        return one(None)
    event_type, data = mapped
    ticket_id = text(required(hook, "ticket_id"))
    updated_at = required(hook, "updated_at")
    return one(
        canonical(
            SOURCE,
            f"{ticket_id}:{event}:{updated_at}",
            event_type,
            iso_ms(updated_at, "updated_at"),
            ticket_id=ticket_id,
            **data,
        )
    )


PROVIDER = Provider("freshdesk", "basic_auth_freshdesk", signed(verify_freshdesk), translate)
