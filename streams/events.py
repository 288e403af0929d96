"""The canonical CRM event (docs/events.md): parsing and validation that names the bad field.

Pure Python: no Kafka, Faust or HTTP here, so the gateway, `crm-kpi replay` and the worker
all validate the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.errors import InvalidEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)  # built once: constructing it costs more than the parse
MAX_FUTURE_MS = 5 * 60 * 1000
MAX_ABS_NUMBER = 1e15
MAX_STRING = 256


@dataclass(frozen=True, slots=True)
class Event:
    """A validated canonical event. `time_ms` is `occurred_at` in integer epoch milliseconds."""

    id: str
    source: str
    type: str
    time_ms: int
    tenant: str
    data: Mapping[str, Any]

    @property
    def uid(self) -> str:
        """The dedup identity `(source, id)` as one string."""
        return f"{self.source}\x1f{self.id}"


def _is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), answered without the ABC machinery for a plain dict."""
    return type(value) is dict or isinstance(value, Mapping)


def _identifier(data: Mapping[str, Any], name: str, path: str) -> str:
    value = data.get(name)
    if type(value) is str and 0 < len(value) <= MAX_STRING:  # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(path, "must be a non-empty string")
    text = str(value)
    if not text or len(text) > MAX_STRING:
        raise InvalidEvent(path, f"must be 1-{MAX_STRING} characters")
    return text


def _number(value: Any, path: str, *, minimum: float | None = 0) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(path, "must be a number")
    if not math.isfinite(value) or abs(value) > MAX_ABS_NUMBER:
        raise InvalidEvent(path, f"must be a finite number below {MAX_ABS_NUMBER:g}")
    if minimum is not None and value < minimum:
        raise InvalidEvent(path, f"must be >= {minimum}")
    return value


def _integer(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidEvent(path, "must be an integer")
    if not low <= value <= high:
        raise InvalidEvent(path, f"must be between {low} and {high}")
    return int(value)


def _choice(value: Any, path: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidEvent(path, f"must be one of {', '.join(allowed)}")


def parse_time_ms(value: Any, path: str = "occurred_at") -> int:
    """Parse an RFC 3339 timestamp with offset or `Z` into epoch milliseconds."""
    if not isinstance(value, str):
        raise InvalidEvent(path, "must be an RFC 3339 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(path, "must be an RFC 3339 timestamp, e.g. 2026-11-20T10:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidEvent(path, "must carry a UTC offset or Z")
    return (moment - EPOCH) // MILLISECOND


def format_time_ms(time_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with millisecond precision."""
    moment = EPOCH + timedelta(milliseconds=time_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Type-specific checks of `data`: required identifiers first, then each rule.
DataCheck = Callable[[Mapping[str, Any]], None]


def _paths(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, "data.<name>") of each name, built once per check rather than per event."""
    return tuple((name, f"data.{name}") for name in names)


def _ids(*names: str) -> DataCheck:
    paths = _paths(names)

    def check(data: Mapping[str, Any]) -> None:
        for name, path in paths:
            _identifier(data, name, path)

    return check


def _optional_ids(*names: str) -> DataCheck:
    paths = _paths(names)

    def check(data: Mapping[str, Any]) -> None:
        for name, path in paths:
            if data.get(name) is not None:
                _identifier(data, name, path)

    return check


def _money(name: str, *, required: bool) -> DataCheck:
    path = f"data.{name}"

    def check(data: Mapping[str, Any]) -> None:
        if data.get(name) is None:
            if required:
                raise InvalidEvent(path, "is required")
            return
        _number(data[name], path)

    return check


def _segments(*names: str) -> DataCheck:
    paths = _paths(names)

    def check(data: Mapping[str, Any]) -> None:
        for name, path in paths:
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_STRING):
                raise InvalidEvent(path, f"must be a string of at most {MAX_STRING}")

    return check


def _enum(name: str, allowed: tuple[str, ...], *, required: bool) -> DataCheck:
    path = f"data.{name}"

    def check(data: Mapping[str, Any]) -> None:
        if data.get(name) is None and not required:
            return
        _choice(data.get(name), path, allowed)

    return check


def _check_visit(data: Mapping[str, Any]) -> None:
    if data.get("count") is not None:
        _integer(data["count"], "data.count", 0, 10**9)


def _check_public(data: Mapping[str, Any]) -> None:
    if data.get("public") is not None and not isinstance(data["public"], bool):
        raise InvalidEvent("data.public", "must be true or false")


SURVEY_SCALES = {"nps": (0, 10), "ces": (1, 7)}


def _check_survey(data: Mapping[str, Any]) -> None:
    survey = data.get("survey")
    _choice(survey, "data.survey", ("nps", "csat", "ces"))
    if survey == "csat":
        given = data.get("scale_max")
        scale_max = 5 if given is None else _integer(given, "data.scale_max", 2, 100)
        _integer(data.get("score"), "data.score", 0, scale_max)
        return
    low, high = SURVEY_SCALES[str(survey)]
    if data.get("scale_max") is not None and data["scale_max"] != high:
        raise InvalidEvent("data.scale_max", f"{survey} is always scored {low}-{high}")
    _integer(data.get("score"), "data.score", low, high)


def _check_duration(data: Mapping[str, Any]) -> None:
    if "duration_seconds" not in data:
        raise InvalidEvent("data.duration_seconds", "is required")
    _number(data["duration_seconds"], "data.duration_seconds")


CHECKS: dict[str, tuple[DataCheck, ...]] = {
    "lead.created": (_ids("lead_id"), _segments("channel", "region")),
    "lead.touched": (_ids("lead_id"), _optional_ids("user_id")),
    "lead.converted": (_ids("lead_id"), _optional_ids("customer_id")),
    "site.visit": (_check_visit, _segments("channel")),
    "deal.created": (
        _ids("deal_id"),
        _optional_ids("customer_id"),
        _money("amount", required=False),
        _segments("channel", "region"),
    ),
    "deal.updated": (_ids("deal_id"), _money("amount", required=False), _segments("channel", "region")),
    "deal.won": (
        _ids("deal_id"),
        _optional_ids("customer_id"),
        _money("amount", required=False),
        _segments("channel", "region"),
    ),
    "deal.lost": (_ids("deal_id"), _segments("channel", "region", "reason")),
    "ticket.created": (_ids("ticket_id"), _optional_ids("customer_id"), _segments("channel", "priority")),
    "ticket.replied": (
        _ids("ticket_id"),
        _enum("author", ("agent", "customer", "bot"), required=True),
        _check_public,
    ),
    "ticket.resolved": (_ids("ticket_id"),),
    "ticket.reopened": (_ids("ticket_id"),),
    "survey.answered": (_check_survey, _optional_ids("customer_id", "ticket_id")),
    "subscription.started": (
        _ids("subscription_id", "customer_id"),
        _money("mrr", required=True),
        _segments("plan", "region"),
    ),
    "subscription.changed": (_ids("subscription_id"), _money("mrr", required=True), _segments("plan")),
    "subscription.renewed": (_ids("subscription_id"), _optional_ids("customer_id")),
    "subscription.cancelled": (
        _ids("subscription_id"),
        _optional_ids("customer_id"),
        _enum("reason", ("voluntary", "involuntary"), required=False),
    ),
    "order.placed": (_ids("order_id", "customer_id"), _money("amount", required=True), _segments("channel")),
    "cart.created": (_ids("cart_id"), _optional_ids("customer_id"), _segments("channel")),
    "cart.checked_out": (_ids("cart_id"), _optional_ids("order_id")),
    "spend.recorded": (
        _enum("category", ("marketing", "sales", "retention", "crm"), required=True),
        _money("amount", required=True),
        _segments("channel"),
    ),
    "user.login": (_ids("user_id"), _segments("team")),
    "record.created": (_ids("user_id"), _segments("object", "team")),
    "task.completed": (_ids("user_id"), _check_duration, _segments("team", "kind")),
}

EVENT_TYPES = tuple(CHECKS)


def parse_event(
    raw: Any,
    *,
    now_ms: int | None = None,
    known_currencies: frozenset[str] | None = None,
    known_tenants: frozenset[str] | None = None,
) -> Event:
    """Validate one canonical event envelope and return it as an `Event`.

    `now_ms` enables the "at most 5 minutes in the future" rule; `known_currencies` (upper case)
    enables the unknown-currency rule, `known_tenants` the tenant allow-list. Raises
    `InvalidEvent` naming the first bad field.
    """
    if not _is_mapping(raw):
        raise InvalidEvent("event", "must be a JSON object")
    event_id = _identifier(raw, "id", "id")
    source = _identifier(raw, "source", "source")
    event_type = raw.get("type")
    checks = CHECKS.get(event_type) if isinstance(event_type, str) else None
    if checks is None:
        raise InvalidEvent("type", f"unknown event type {str(event_type)[:64]!r}")
    time_ms = parse_time_ms(raw.get("occurred_at"))
    if now_ms is not None and time_ms > now_ms + MAX_FUTURE_MS:
        raise InvalidEvent("occurred_at", "is more than 5 minutes in the future")
    tenant = raw.get("tenant", "default")
    if not isinstance(tenant, str) or not tenant or len(tenant) > 64:
        raise InvalidEvent("tenant", "must be a string of 1-64 characters")
    if known_tenants is not None and tenant not in known_tenants:
        raise InvalidEvent("tenant", f"tenant {tenant!r} is not in CRMKPI_TENANTS")
    data = raw.get("data")
    if not _is_mapping(data):
        raise InvalidEvent("data", "must be a JSON object")
    for check in checks:
        check(data)
    currency = data.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise InvalidEvent("data.currency", "must be an ISO 4217 code such as EUR")
        if known_currencies is not None and currency.upper() not in known_currencies:
            raise InvalidEvent("data.currency", f"unknown currency {currency!r}: set CRMKPI_FX_RATES")
    return Event(event_id, source, event_type, time_ms, tenant, data)
