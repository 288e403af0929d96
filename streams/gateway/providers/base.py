"""What every provider module supplies, and the helpers they share.

A provider turns one authenticated delivery into canonical events (docs/events.md):
`read` authenticates and decodes the raw request, `translate` maps the payload. Payload fields
a translation needs but cannot find raise `Untranslatable` naming the field by its path in the
provider's payload (`[2].objectId`, `data.object.customer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streams.events import InvalidEvent, format_time_ms, parse_time_ms
from streams.gateway.signatures import Delivery

Payload = Any
Reader = Callable[[str, Delivery], Payload]
Verifier = Callable[[str, Delivery], None]
RawEvent = dict[str, Any]


class Malformed(ValueError):
    """A body that is not the syntax (JSON, XML) or overall shape the endpoint takes."""


class Untranslatable(InvalidEvent):
    """An authenticated payload the translation cannot map: a field is missing or unusable."""


@dataclass(frozen=True)
class Translation:
    """The canonical events of one delivery, and how many provider events map to no KPI."""

    events: list[RawEvent]
    ignored: int = 0


@dataclass(frozen=True)
class Accepted:
    """What a delivery did: new events written, and events already seen."""

    accepted: int
    duplicates: int


def reply_json(result: Accepted) -> web.Response:
    """The standard 202 answer."""
    body = orjson.dumps({"accepted": result.accepted, "duplicates": result.duplicates})
    return web.Response(status=202, body=body, content_type="application/json")


@dataclass(frozen=True)
class Provider:
    """One webhook endpoint: `POST /webhooks/{name}`, enabled by the setting `secret_field`.

    `dead_letters`: an untranslatable or invalid payload goes raw to the dead-letter topic
    (provider payloads, which an operator can replay once the mapping is fixed); when False
    the request is refused with nothing written (canonical events, which the sender owns).
    """

    name: str
    secret_field: str
    read: Reader
    translate: Callable[[Payload], Translation]
    dead_letters: bool = True
    reply: Callable[[Accepted], web.Response] = reply_json

    @property
    def env(self) -> str:
        """The environment variable that enables the endpoint."""
        return "CRMKPI_" + self.secret_field.upper()


def decode_json(body: bytes) -> Payload:
    """The JSON value of a body; `Malformed` if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Malformed(f"body is not valid JSON: {error}") from None


def signed(verify: Verifier, decode: Callable[[bytes], Payload] = decode_json) -> Reader:
    """A reader that verifies the raw body with `verify`, then decodes it (as JSON)."""

    def read(secret: str, delivery: Delivery) -> Payload:
        verify(secret, delivery)
        return decode(delivery.body)

    return read


def expect_object(payload: Payload) -> Mapping[str, Any]:
    """The payload as a JSON object, else `Malformed`."""
    if not isinstance(payload, Mapping):
        raise Malformed("expected a JSON object")
    return payload


def optional(payload: Payload, path: str) -> Any:
    """The value at a dotted path (list items by number), or None when any step is absent."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def required(payload: Payload, path: str, where: str = "") -> Any:
    """The value at a dotted path; `Untranslatable` naming `where + path` if absent or null."""
    value = optional(payload, path)
    if value is None or value == "":
        raise Untranslatable(where + path, "is required")
    return value


def lowered(payload: Payload, path: str) -> str | None:
    """The text at a dotted path in lower case (segment values, statuses); None when absent."""
    value = optional(payload, path)
    return None if value is None else str(value).lower()


def text(value: Any) -> str | None:
    """An identifier as text (ids arrive as numbers or strings); None stays None."""
    return None if value is None else str(value)


def iso_ms(value: Any, path: str) -> int:
    """An RFC 3339 timestamp in epoch ms; `Untranslatable` naming `path` if it is not one."""
    try:
        return parse_time_ms(value, path)
    except InvalidEvent as error:
        raise Untranslatable(error.field, error.problem) from None


def seconds_ms(value: Any, path: str) -> int:
    """Epoch seconds (a number) in epoch ms."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Untranslatable(path, "must be epoch seconds")
    return int(value * 1000)


def number(value: Any, path: str) -> float:
    """A decimal amount sent as a number or a numeric string."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Untranslatable(path, "must be a number") from None


def canonical(source: str, event_id: str, event_type: str, time_ms: int, **data: Any) -> RawEvent:
    """A canonical event envelope; `data` members that are None are left out."""
    return {
        "id": event_id,
        "source": source,
        "type": event_type,
        "occurred_at": format_time_ms(time_ms),
        "data": {key: value for key, value in data.items() if value is not None},
    }


def one(event: RawEvent | None) -> Translation:
    """The translation of a delivery that carries one provider event (None: no KPI)."""
    return Translation([event]) if event is not None else Translation([], ignored=1)


def batch(items: Sequence[Payload], translate_item: Callable[[Payload, str], RawEvent | None]) -> Translation:
    """The translation of a delivery carrying several provider events.

    `translate_item` gets each item and its path prefix (`[3].`) for naming missing fields.
    """
    events: list[RawEvent] = []
    for index, item in enumerate(items):
        event = translate_item(item, f"[{index}].")
        if event is not None:
            events.append(event)
    return Translation(events, ignored=len(items) - len(events))
