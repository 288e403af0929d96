"""The gateway's HTTP behaviour over in-memory Kafka and Redis stand-ins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiokafka.errors import KafkaConnectionError

from streams.gateway import app as gateway_app
from streams.gateway.app import GatewayConfigError, check_bind
from streams.gateway.problems import PROBLEM_JSON
from streams.gateway.providers import PROVIDERS
from streams.gateway.providers.salesforce import ACK
from streams.gateway.signing import hubspot_headers, signed_headers
from tests.unit.gateway.conftest import GatewayFactory, Harness
from tests.unit.gateway.support import (
    SAMPLES,
    SECRETS,
    SIGNS_BODY,
    TIMESTAMPED,
    WRONG_SECRETS,
    fixture,
    forged,
    gateway_settings,
)

SAMPLE_EVENTS = {
    "events": 2,
    "hubspot": 5,
    "stripe": 1,
    "zendesk": 1,
    "intercom": 1,
    "pipedrive": 1,
    "freshdesk": 1,
    "salesforce": 3,
}
CANONICAL = {
    "id": "evt-1",
    "source": "api",
    "type": "deal.won",
    "occurred_at": "2026-03-02T10:00:00Z",
    "data": {"deal_id": "D-1", "amount": 10},
}


async def accepted(response: ClientResponse, provider: str) -> dict[str, int] | None:
    """The 202 body (None for Salesforce, which gets its SOAP Ack)."""
    if provider == "salesforce":
        assert (response.status, await response.read()) == (200, ACK)
        return None
    assert response.status == 202, await response.text()
    body: dict[str, int] = await response.json()
    return body


async def problem(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_JSON
    body: dict[str, Any] = await response.json(content_type=PROBLEM_JSON)
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_valid_delivery_writes_its_canonical_events(gateway: Harness, provider: str) -> None:
    response = await gateway.post(provider, fixture(SAMPLES[provider]))
    count = SAMPLE_EVENTS[provider]
    assert await accepted(response, provider) in ({"accepted": count, "duplicates": 0}, None)
    assert len(gateway.publisher.events) == count
    assert {event["source"] for event in gateway.publisher.events} == {
        "api" if provider == "events" else provider
    }


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_same_delivery_three_times_is_written_once(gateway: Harness, provider: str) -> None:
    count = SAMPLE_EVENTS[provider]
    body = fixture(SAMPLES[provider])
    answers = [await accepted(await gateway.post(provider, body), provider) for _ in range(3)]
    if provider != "salesforce":
        first, retry = {"accepted": count, "duplicates": 0}, {"accepted": 0, "duplicates": count}
        assert answers == [first, retry, retry]
    assert len(gateway.publisher.events) == count


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_wrong_secret_is_401_and_writes_nothing(gateway: Harness, provider: str) -> None:
    body, secret = forged(provider, fixture(SAMPLES[provider]))
    response = await gateway.post(provider, body, secret=secret)
    assert (await problem(response, 401))["detail"] == "signature missing or invalid"
    assert SECRETS[provider] not in await response.text()
    assert WRONG_SECRETS[provider] not in await response.text()
    assert gateway.publisher.events == gateway.publisher.dead_letters == []


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_stale_timestamp_is_401(gateway: Harness, provider: str) -> None:
    response = await gateway.post(provider, fixture(SAMPLES[provider]), now=time.time() - 301)
    body = await problem(response, 401)
    assert body["detail"] == "timestamp missing or outside the 5-minute window"
    assert gateway.publisher.events == []


@pytest.mark.parametrize("provider", SIGNS_BODY)
async def test_tampered_body_is_401(gateway: Harness, provider: str) -> None:
    body = fixture(SAMPLES[provider])
    headers = signed_headers(provider, SECRETS[provider], body, url=gateway.url(provider))
    response = await gateway.post(provider, body.replace(b"0", b"1", 1), headers)
    await problem(response, 401)
    assert gateway.publisher.events == []


async def test_body_over_the_limit_is_413(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(body_limit_bytes=1024)
    response = await gateway.post("stripe", b"{" + b" " * 2048 + b"}")
    assert (await problem(response, 413))["detail"].startswith("the body limit is 1024 bytes")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 512

    headers = {"Stripe-Signature": "t=1,v1=0"}
    response = await gateway.client.post("/webhooks/stripe", data=chunks(), headers=headers)
    await problem(response, 413)
    assert gateway.publisher.events == []


async def test_malformed_json_is_400(gateway: Harness) -> None:
    response = await gateway.post("stripe", b'{"id": "evt_1", ')
    assert "not valid JSON" in (await problem(response, 400))["detail"]


async def test_invalid_canonical_event_refuses_the_whole_request(gateway: Harness) -> None:
    bad = {**CANONICAL, "id": "evt-2", "data": {"amount": 5}}
    response = await gateway.post("events", orjson.dumps([CANONICAL, bad]))
    body = await problem(response, 422)
    assert (body["field"], body["index"]) == ("data.deal_id", 1)
    assert body["detail"] == "event 1: data.deal_id: must be a non-empty string"
    assert gateway.publisher.events == gateway.publisher.dead_letters == []


async def test_untranslatable_payload_goes_to_the_dead_letter_topic(gateway: Harness) -> None:
    body = fixture("stripe/subscription_created_no_customer.json")
    response = await gateway.post("stripe", body)
    assert (await problem(response, 422))["field"] == "data.object.customer"
    assert gateway.publisher.events == []
    [(value, headers)] = gateway.publisher.dead_letters
    assert value == body
    assert headers["provider"] == b"stripe"
    assert headers["reason"] == b"data.object.customer: is required"
    assert headers["received_at"].endswith(b"Z")


async def test_payload_the_translation_chokes_on_is_dead_lettered(gateway: Harness) -> None:
    body = fixture(SAMPLES["stripe"]).replace(b'"quantity": 3', b'"quantity": "three"')
    response = await gateway.post("stripe", body)
    assert (await problem(response, 422))["field"] == "payload"
    assert [value for value, _ in gateway.publisher.dead_letters] == [body]


async def test_translated_event_with_unknown_currency_is_dead_lettered(gateway: Harness) -> None:
    body = fixture(SAMPLES["stripe"]).replace(b'"currency": "eur"', b'"currency": "chf"')
    response = await gateway.post("stripe", body)
    assert (await problem(response, 422))["field"] == "data.currency"
    assert len(gateway.publisher.dead_letters) == 1


async def test_events_that_map_to_no_kpi_are_acknowledged(gateway: Harness) -> None:
    response = await gateway.post("stripe", fixture("stripe/invoice_payment_failed.json"))
    assert await response.json() == {"accepted": 0, "duplicates": 0}
    assert gateway.publisher.events == []


async def test_disabled_endpoint_names_its_variable(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(secret_stripe=None)
    response = await gateway.post("stripe", fixture(SAMPLES["stripe"]))
    assert "set CRMKPI_SECRET_STRIPE" in (await problem(response, 404))["detail"]


async def test_kafka_failure_is_503_and_the_retry_is_not_a_duplicate(gateway: Harness) -> None:
    gateway.publisher.failure = KafkaConnectionError()
    body = fixture(SAMPLES["stripe"])
    response = await gateway.post("stripe", body)
    await problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    gateway.publisher.failure = None
    assert await (await gateway.post("stripe", body)).json() == {"accepted": 1, "duplicates": 0}


async def test_slow_kafka_is_503_while_the_write_completes(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_app, "ANSWER_TIMEOUT_SECONDS", 0.05)
    gateway = await make_gateway()
    gateway.publisher.delay = 0.3
    body = fixture(SAMPLES["stripe"])
    await problem(await gateway.post("stripe", body), 503)
    await asyncio.sleep(0.4)
    assert await (await gateway.post("stripe", body)).json() == {"accepted": 0, "duplicates": 1}
    assert len(gateway.publisher.events) == 1


async def test_redis_down_is_503_and_nothing_is_written(gateway: Harness) -> None:
    gateway.deduplicator.down = True
    await problem(await gateway.post("stripe", fixture(SAMPLES["stripe"])), 503)
    assert gateway.publisher.events == []


async def test_concurrent_duplicate_waits_for_the_first_write(gateway: Harness) -> None:
    gateway.publisher.delay = 0.2
    body = fixture(SAMPLES["stripe"])
    first, second = await asyncio.gather(gateway.post("stripe", body), gateway.post("stripe", body))
    answers = sorted([await first.json(), await second.json()], key=lambda a: -a["accepted"])
    assert answers == [{"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1}]
    assert len(gateway.publisher.events) == 1


async def test_concurrent_duplicate_of_a_failing_write_is_retryable(gateway: Harness) -> None:
    gateway.publisher.delay = 0.2
    gateway.publisher.failure = KafkaConnectionError()
    body = fixture(SAMPLES["stripe"])
    responses = await asyncio.gather(gateway.post("stripe", body), gateway.post("stripe", body))
    assert [response.status for response in responses] == [503, 503]
    gateway.publisher.delay, gateway.publisher.failure = 0, None
    assert await (await gateway.post("stripe", body)).json() == {"accepted": 1, "duplicates": 0}


async def test_public_url_is_what_hubspot_signs(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(public_url="https://crm.example.com/")
    body = fixture(SAMPLES["hubspot"])
    public = hubspot_headers(SECRETS["hubspot"], body, url="https://crm.example.com/webhooks/hubspot")
    assert (await gateway.post("hubspot", body, public)).status == 202
    internal = hubspot_headers(SECRETS["hubspot"], body, url=gateway.url("hubspot"))
    await problem(await gateway.post("hubspot", body, internal), 401)


async def test_metrics(gateway: Harness) -> None:
    await gateway.post("stripe", fixture(SAMPLES["stripe"]))
    await gateway.post("stripe", fixture(SAMPLES["stripe"]))
    await gateway.post("stripe", fixture("stripe/invoice_payment_failed.json"))
    await gateway.post("stripe", fixture("stripe/subscription_created_no_customer.json"))
    await gateway.post("hubspot", b"[]", {"X-HubSpot-Signature-v3": "forged"})
    text = await (await gateway.client.get("/metrics")).text()
    for line in (
        'crm_gateway_requests_total{outcome="accepted",provider="stripe"} 1.0',
        'crm_gateway_requests_total{outcome="duplicate",provider="stripe"} 1.0',
        'crm_gateway_requests_total{outcome="ignored",provider="stripe"} 1.0',
        'crm_gateway_requests_total{outcome="invalid",provider="stripe"} 1.0',
        'crm_gateway_requests_total{outcome="unauthorized",provider="hubspot"} 1.0',
        'crm_gateway_events_accepted_total{provider="stripe"} 1.0',
        'crm_gateway_dedup_hits_total{provider="stripe"} 1.0',
        'crm_gateway_events_ignored_total{provider="stripe"} 1.0',
        'crm_gateway_deadletter_writes_total{provider="stripe"} 1.0',
        'crm_gateway_deadletter_writes_total{provider="zendesk"} 0.0',
        "crm_gateway_publish_duration_seconds_count 1.0",
    ):
        assert line in text


async def test_health_and_readiness(gateway: Harness) -> None:
    assert await (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"kafka": True, "redis": True})
    gateway.kafka_up[0] = False
    gateway.deduplicator.down = True
    ready = await gateway.client.get("/readyz")
    assert (ready.status, await ready.json()) == (503, {"kafka": False, "redis": False})


async def test_unknown_paths_and_methods_are_problems(gateway: Harness) -> None:
    await problem(await gateway.client.post("/webhooks/acme", data=b"{}"), 404)
    wrong_method = await gateway.client.get("/webhooks/stripe")
    await problem(wrong_method, 405)
    assert wrong_method.headers["Allow"] == "POST"


PUBLIC_BIND = "192.0.2.10"


def test_public_bind_needs_every_secret() -> None:
    check_bind(gateway_settings(bind=PUBLIC_BIND))
    check_bind(gateway_settings(secret_zendesk=None, basic_auth_freshdesk=None))
    with pytest.raises(GatewayConfigError, match="CRMKPI_SECRET_ZENDESK, CRMKPI_BASIC_AUTH_FRESH"):
        check_bind(gateway_settings(bind=PUBLIC_BIND, secret_zendesk=None, basic_auth_freshdesk=None))


def test_malformed_standard_secret_refuses_to_start() -> None:
    with pytest.raises(GatewayConfigError, match="CRMKPI_SECRET_STANDARD"):
        check_bind(gateway_settings(secret_standard="whsec_not base64!"))
