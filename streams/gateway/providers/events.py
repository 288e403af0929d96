"""Canonical events (docs/events.md) signed with Standard Webhooks: `POST /webhooks/events`.

The body is one event object, an array of them, or JSON Lines. An invalid event refuses the
whole request with nothing written (the sender owns the format and is told which event).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from streams.gateway.providers.base import Malformed, Payload, Provider, Translation, signed
from streams.gateway.signatures import verify_standard

SHAPE = "expected an event object, an array of events, or JSON Lines"


def _json_lines(body: bytes) -> list[Payload]:
    events = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as error:
                raise Malformed(f"line {number} is not valid JSON: {error}") from None
    if not events:
        raise Malformed(f"no events: {SHAPE}")
    return events


def decode_events(body: bytes) -> list[Payload]:
    """The raw events of a body: one object, an array, or JSON Lines."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _json_lines(body)
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return value
    raise Malformed(SHAPE)


def translate(events: Payload) -> Translation:
    """Canonical events are already canonical; each must at least be an object."""
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise Malformed(f"event {index} is not a JSON object")
    return Translation(list(events))


PROVIDER = Provider(
    "events", "secret_standard", signed(verify_standard, decode_events), translate, dead_letters=False
)
