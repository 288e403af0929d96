"""Hostile webhook deliveries: forged, replayed, stale, oversized, malformed or absurd input.

Every one gets a 4xx (never a 5xx), writes nothing, and no answer names a configured secret.
Runs over the in-memory stand-ins; tests/integration/test_gateway.py checks the same answers
against real Kafka and Redis.

Reproduce: python3 -m pytest tests/security/test_webhook_inputs.py
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from streams.events import format_time_ms
from streams.gateway.providers import PROVIDERS
from streams.gateway.signing import signed_headers
from tests.unit.gateway.conftest import Harness
from tests.unit.gateway.support import SAMPLES, SECRETS, SIGNS_BODY, TIMESTAMPED, fixture

SIGNATURE_HEADERS = {
    "events": "webhook-signature", "hubspot": "X-HubSpot-Signature-v3",
    "stripe": "Stripe-Signature", "zendesk": "X-Zendesk-Webhook-Signature",
    "intercom": "X-Hub-Signature", "pipedrive": "Authorization", "freshdesk": "Authorization",
}
JSON_ENDPOINTS = [name for name in PROVIDERS if name != "salesforce"]


def accepted(provider: str, status: int) -> bool:
    return status == (200 if provider == "salesforce" else 202)


def flipped(value: str) -> str:
    """The credential with the first character of its MAC (or password) changed."""
    start = max((value.rfind(m) + len(m) for m in ("v1,", "v1=", "sha1=", "Basic ")
                 if m in value), default=0)
    char = value[start]
    return value[:start] + ("B" if char != "B" else "C") + value[start + 1:]


def canonical(event_id: str, **data: Any) -> dict[str, Any]:
    now_ms = time.time_ns() // 1_000_000
    return {"id": event_id, "source": "sec-test", "type": "deal.won",
            "occurred_at": format_time_ms(now_ms - 60_000),
            "data": {"deal_id": "d-1", **data}}


def assert_no_secret(text: bytes) -> None:
    for secret in SECRETS.values():
        assert secret.encode() not in text


async def answer(gateway: Harness, provider: str, body: bytes, **signing: Any) -> tuple[int, bytes]:
    response = await gateway.post(provider, body, **signing)
    text = await response.read()
    assert_no_secret(text)
    return response.status, text


@pytest.mark.parametrize("provider", list(SIGNATURE_HEADERS))
async def test_tampered_signature_is_401(gateway: Harness, provider: str) -> None:
    body = fixture(SAMPLES[provider])
    headers = signed_headers(provider, SECRETS[provider], body, url=gateway.url(provider))
    name = SIGNATURE_HEADERS[provider]
    headers[name] = flipped(headers[name])
    response = await gateway.post(provider, body, headers=headers)
    assert response.status == 401
    assert_no_secret(await response.read())
    assert gateway.publisher.events == [] and gateway.publisher.dead_letters == []


@pytest.mark.parametrize("provider", SIGNS_BODY)
async def test_signature_of_another_body_is_401(gateway: Harness, provider: str) -> None:
    body = fixture(SAMPLES[provider])
    headers = signed_headers(provider, SECRETS[provider], body, url=gateway.url(provider))
    reserialized = body.rstrip() + b"\n\n"  # the same JSON value, other bytes
    response = await gateway.post(provider, reserialized, headers=headers)
    assert response.status == 401
    assert gateway.publisher.events == []


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_replayed_delivery_with_a_valid_signature_counts_once(gateway: Harness,
                                                                    provider: str) -> None:
    body = fixture(SAMPLES[provider])
    first, _ = await answer(gateway, provider, body)
    assert accepted(provider, first)
    written = list(gateway.publisher.events)
    for _ in range(3):  # re-signed each time, as a replaying attacker or a retrying provider
        status, _ = await answer(gateway, provider, body)
        assert accepted(provider, status)
    assert gateway.publisher.events == written


@pytest.mark.parametrize("provider", TIMESTAMPED)
@pytest.mark.parametrize("skew", [-360, 360, -86_400])
async def test_stale_or_future_timestamp_is_401(gateway: Harness, provider: str, skew: int) -> None:
    status, _ = await answer(gateway, provider, fixture(SAMPLES[provider]), now=time.time() + skew)
    assert status == 401
    assert gateway.publisher.events == []


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_timestamp_within_five_minutes_is_accepted(gateway: Harness, provider: str) -> None:
    status, _ = await answer(gateway, provider, fixture(SAMPLES[provider]), now=time.time() - 240)
    assert accepted(provider, status)


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_body_over_the_limit_is_413(gateway: Harness, provider: str) -> None:
    limit = gateway_settings_limit()
    status, _ = await answer(gateway, provider, b"[" + b" " * limit + b"]")
    assert status == 413


def gateway_settings_limit() -> int:
    from tests.unit.gateway.support import gateway_settings

    return gateway_settings().body_limit_bytes


HOSTILE_JSON = {
    "deeply nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "deeply nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "invalid UTF-8": b'{"id": "\xff\xfe", "type": "deal.won"}',
    "lone surrogate escape": b'{"id": "\\ud800", "source": "x"}',
    "NaN literal": b'{"id": "n", "data": {"amount": NaN}}',
    "Infinity literal": b'{"id": "i", "data": {"amount": Infinity}}',
    "number overflowing a double": b'{"id": "big", "data": {"amount": 1e400}}',
    "400-digit integer": b'{"id": "big", "data": {"amount": ' + b"9" * 400 + b"}}",
    "empty body": b"",
    "truncated": b'{"id": ',
    "NUL bytes": b"\x00" * 64,
    "a bare number": b"42",
}


@pytest.mark.parametrize("what", list(HOSTILE_JSON))
@pytest.mark.parametrize("provider", JSON_ENDPOINTS)
async def test_hostile_json_is_4xx_and_writes_nothing(gateway: Harness, provider: str,
                                                      what: str) -> None:
    status, text = await answer(gateway, provider, HOSTILE_JSON[what])
    assert 400 <= status < 500, (status, text[:300])
    assert gateway.publisher.events == []


@pytest.mark.parametrize("amount", [b"1e16", b"-5", b"1000000000000000000000000000000", b"1e308"])
async def test_absurd_amounts_are_422(gateway: Harness, amount: bytes) -> None:
    body = orjson.dumps(canonical("absurd", amount=0)).replace(b'"amount":0', b'"amount":' + amount)
    status, text = await answer(gateway, "events", body)
    assert status == 422, text
    assert orjson.loads(text)["field"] == "data.amount"


@pytest.mark.parametrize("event", [
    {"type": "lead.created", "data": {"lead_id": "l", "currency": 5}},
    {"type": "deal.won", "data": {"deal_id": "d", "currency": ["EUR"]}},
])
async def test_non_string_currency_is_422(gateway: Harness, event: dict[str, Any]) -> None:
    body = orjson.dumps({**canonical("cur"), **event})
    status, _ = await answer(gateway, "events", body)
    assert status == 422


@pytest.mark.parametrize("event_type", [["deal.won"], {"deal": "won"}])
async def test_non_string_type_is_422(gateway: Harness, event_type: Any) -> None:
    body = orjson.dumps({**canonical("typ"), "type": event_type})
    status, _ = await answer(gateway, "events", body)
    assert status == 422


XML_ATTACKS = {
    "billion laughs (UTF-16, hides the DOCTYPE from a byte search)": (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
        + ']><x>&j;</x>').encode("utf-16"),
    "external entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                       b"<x>&e;</x>",
    "deep nesting": b"<a>" * 50_000 + b"</a>" * 50_000,
    "not XML": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("what", list(XML_ATTACKS))
async def test_hostile_xml_is_400_quickly(gateway: Harness, what: str) -> None:
    started = time.monotonic()
    status, text = await answer(gateway, "salesforce", XML_ATTACKS[what])
    assert status == 400, text[:300]
    assert b"root:" not in text  # no file content
    assert time.monotonic() - started < 5
