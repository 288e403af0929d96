"""Zendesk webhooks (`X-Zendesk-Webhook-Signature`): ticket events, and CSAT from a trigger.

Ticket event webhooks (`zen:event-type:ticket.*`) carry their own `id` and `time`:

| event type | canonical |
|---|---|
| `ticket.created` | `ticket.created` |
| `ticket.comment_added`, public and by staff | `ticket.replied` by an agent |
| `ticket.status_changed` to `solved` | `ticket.resolved` |
| `ticket.status_changed` from `solved` | `ticket.reopened` |

Zendesk has no event for satisfaction ratings, so CSAT comes from a trigger ("Satisfaction
is Good/Bad") whose webhook sends this JSON body; its id is the ticket id + update time:

    {"ticket_id": "{{ticket.id}}", "updated_at": "{{ticket.updated_at_with_timestamp}}",
     "satisfaction_rating": "{{satisfaction.current_rating}}",
     "requester_id": "{{ticket.requester.id}}"}

A rating of good / bad is a `csat` score of 2 / 0 on a scale of 2; a rating 1-5 is that score
on a scale of 5. Other ticket events, and ratings still `offered`, map to no KPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.gateway.providers.base import (
    Payload,
    Provider,
    RawEvent,
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
from streams.gateway.signatures import verify_zendesk

SOURCE = "zendesk"
EVENT_PREFIX = "zen:event-type:ticket."
BINARY_RATINGS = {"good": 2, "bad": 0}
FIVE_POINT = range(1, 6)
UNRATED = ("offered", "unoffered")

Webhook = Mapping[str, Any]


def _ticket_event(hook: Webhook, event_type: str, **data: Any) -> RawEvent:
    time_ms = iso_ms(required(hook, "time"), "time")
    ticket_id = text(required(hook, "detail.id"))
    return canonical(SOURCE, required(hook, "id"), event_type, time_ms, ticket_id=ticket_id, **data)


def _from_event(hook: Webhook, kind: str) -> RawEvent | None:
    if kind == "created":
        return _ticket_event(
            hook,
            "ticket.created",
            customer_id=text(optional(hook, "detail.requester_id")),
            channel=optional(hook, "detail.via.channel"),
            priority=lowered(hook, "detail.priority"),
        )
    if kind == "comment_added":
        comment = optional(hook, "event.comment") or {}
        if optional(comment, "is_public") and optional(comment, "author.is_staff"):
            return _ticket_event(hook, "ticket.replied", author="agent", public=True)
        return None
    if kind == "status_changed":
        if lowered(hook, "event.current") == "solved":
            return _ticket_event(hook, "ticket.resolved")
        if lowered(hook, "event.previous") == "solved":
            return _ticket_event(hook, "ticket.reopened")
    return None


def _score(rating: Any) -> tuple[int, int] | None:
    word = str(rating).lower().split(",")[0].strip()
    if word in UNRATED:
        return None
    if word in BINARY_RATINGS:
        return BINARY_RATINGS[word], 2
    if word.isdigit() and int(word) in FIVE_POINT:
        return int(word), 5
    raise Untranslatable("satisfaction_rating", "must be good, bad or 1-5")


def _from_trigger(hook: Webhook) -> RawEvent | None:
    score = _score(required(hook, "satisfaction_rating"))
    if score is None:
        return None
    ticket_id = text(required(hook, "ticket_id"))
    updated_at = required(hook, "updated_at")
    return canonical(
        SOURCE,
        f"{ticket_id}:{updated_at}:satisfaction",
        "survey.answered",
        iso_ms(updated_at, "updated_at"),
        survey="csat",
        score=score[0],
        scale_max=score[1],
        ticket_id=ticket_id,
        customer_id=text(optional(hook, "requester_id")),
    )


def translate(payload: Payload) -> Translation:
    """Canonical events of one Zendesk webhook (ticket event, or the CSAT trigger body)."""
    hook = expect_object(payload)
    kind = hook.get("type")
    if kind is None:
        return one(_from_trigger(hook))
    if isinstance(kind, str) and kind.startswith(EVENT_PREFIX):
        return one(_from_event(hook, kind.removeprefix(EVENT_PREFIX)))
    return one(None)


PROVIDER = Provider("zendesk", "secret_zendesk", signed(verify_zendesk), translate)
