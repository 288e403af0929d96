"""Hypothesis fuzzing of the gateway's parsers and of `parse_event`: no crash, no 5xx.

- Every provider endpoint gets random bodies **signed with its real secret** (so they reach
  the decoders and translators, past authentication), random JSON shaped like the provider's
  own payloads, and random headers (which must fail authentication cleanly).
- `streams.events.parse_event` gets arbitrary JSON values and mutated valid events: it returns
  an `Event` or raises `InvalidEvent`, nothing else.

Bounded: a fixed number of examples per target, no deadline, well under a minute in total.
Known bugs excluded from the generators (each has its own xfail test in
test_webhook_inputs.py and tests/faults/test_poison.py): a non-string `data.currency`, and a
`type` that is a JSON array or object (both raise out of `parse_event`).

Reproduce: python3 -m pytest tests/security/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import EVENT_TYPES, InvalidEvent, format_time_ms, parse_event
from streams.gateway.providers import PROVIDERS
from tests.unit.gateway.conftest import Harness, start
from tests.unit.gateway.support import SAMPLES, SECRETS, fixture, gateway_settings

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KNOWN = frozenset({"USD", "EUR", "GBP"})

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", "0", "-1", "1e3", "2026-11-20T10:00:00Z", "EUR", "usd", "web",
                     "deal.won", "agent", "nps", "csat", "true", "null", "a@b.c"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _known_bugs_absent(value: Any) -> bool:
    """False for the two known parse_event crashes anywhere in a payload: a non-string
    `currency`, and an unhashable `type` (a list or an object)."""
    if isinstance(value, Mapping):
        if "currency" in value and value["currency"] is not None \
                and not isinstance(value["currency"], str):
            return False
        if isinstance(value.get("type"), list | dict):
            return False
        return all(_known_bugs_absent(v) for v in value.values())
    if isinstance(value, list):
        return all(_known_bugs_absent(v) for v in value)
    return True


def _mutations(sample: Any) -> st.SearchStrategy[Any]:
    """The sample payload with some leaves or members replaced by random JSON."""
    if isinstance(sample, Mapping):
        keys = list(sample)
        return st.fixed_dictionaries(
            {key: st.one_of(st.just(sample[key]), _mutations(sample[key]), json_values)
             for key in keys}
        ).flatmap(lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=2)
                  .map(lambda extra: {**extra, **d}))
    if isinstance(sample, list) and sample:
        return st.lists(_mutations(sample[0]), min_size=0, max_size=3)
    return st.one_of(st.just(sample), json_values)


def _sample_payload(provider: str) -> Any:
    body = fixture(SAMPLES[provider])
    if provider == "events":
        return [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return orjson.loads(body)


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[asyncio.AbstractEventLoop, Harness]]:
    loop = asyncio.new_event_loop()
    harness = loop.run_until_complete(start(gateway_settings()))
    yield loop, harness
    loop.run_until_complete(harness.client.close())
    loop.close()


def _post(running: tuple[asyncio.AbstractEventLoop, Harness], provider: str, body: bytes,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    loop, harness = running

    async def go() -> tuple[int, bytes]:
        response = await harness.post(provider, body, headers=headers)
        return response.status, await response.read()

    return loop.run_until_complete(go())


def _check(status: int, text: bytes) -> None:
    assert status < 500, (status, text[:400])
    for secret in SECRETS.values():
        assert secret.encode() not in text


JSON_PROVIDERS = [name for name in PROVIDERS if name != "salesforce"]


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_signed_random_bytes_never_5xx(running: Any, provider: str) -> None:
    @FUZZ
    @given(st.binary(max_size=2048))
    def run(body: bytes) -> None:
        _check(*_post(running, provider, body))

    run()


@pytest.mark.parametrize("provider", JSON_PROVIDERS)
def test_signed_random_json_never_5xx(running: Any, provider: str) -> None:
    @FUZZ
    @given(json_values.filter(_known_bugs_absent))
    def run(value: Any) -> None:
        _check(*_post(running, provider, orjson.dumps(value)))

    run()


@pytest.mark.parametrize("provider", JSON_PROVIDERS)
def test_signed_mutated_provider_payloads_never_5xx(running: Any, provider: str) -> None:
    @FUZZ
    @given(_mutations(_sample_payload(provider)).filter(_known_bugs_absent))
    def run(value: Any) -> None:
        body = (b"\n".join(orjson.dumps(v) for v in value) if provider == "events"
                and isinstance(value, list) else orjson.dumps(value))
        _check(*_post(running, provider, body))

    run()


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_random_headers_never_authenticate_or_5xx(running: Any, provider: str) -> None:
    header_names = st.sampled_from([
        "webhook-id", "webhook-timestamp", "webhook-signature", "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp", "Stripe-Signature", "X-Zendesk-Webhook-Signature",
        "X-Zendesk-Webhook-Signature-Timestamp", "X-Hub-Signature", "Authorization",
        "Content-Type", "SOAPAction"])
    header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
    body = fixture(SAMPLES[provider])

    _, harness = running

    @FUZZ
    @given(st.dictionaries(header_names, header_values, max_size=6))
    def run(headers: dict[str, str]) -> None:
        written = len(harness.publisher.events)
        status, text = _post(running, provider, body, headers)
        _check(status, text)
        if provider != "salesforce":  # Salesforce authenticates by the org id in the body
            assert status == 401, (status, headers)
            assert len(harness.publisher.events) == written

    run()


# -- parse_event -----------------------------------------------------------------------------

NOW_MS = time.time_ns() // 1_000_000


def _parse_or_invalid(raw: Any) -> None:
    with contextlib.suppress(InvalidEvent):
        parse_event(raw, now_ms=NOW_MS, known_currencies=KNOWN)


@FUZZ
@given(json_values.filter(_known_bugs_absent))
def test_parse_event_on_any_json_value(raw: Any) -> None:
    _parse_or_invalid(raw)


envelopes = st.fixed_dictionaries({
    "id": st.one_of(st.text(max_size=300), st.integers(), json_values),
    "source": st.one_of(st.text(max_size=10), json_values),
    "type": st.one_of(st.sampled_from(EVENT_TYPES), json_values),
    "occurred_at": st.one_of(
        st.just(format_time_ms(NOW_MS - 60_000)), st.text(max_size=40), json_values,
        st.datetimes().map(lambda d: d.isoformat() + "Z")),
    "tenant": st.one_of(st.just("default"), json_values),
    "data": st.dictionaries(
        st.sampled_from(["lead_id", "deal_id", "ticket_id", "subscription_id", "customer_id",
                         "order_id", "cart_id", "user_id", "amount", "mrr", "currency", "channel",
                         "region", "priority", "plan", "survey", "score", "scale_max", "author",
                         "public", "count", "category", "duration_seconds", "reason", "object"]),
        json_values, max_size=8),
})


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(envelopes.filter(_known_bugs_absent))
def test_parse_event_on_event_shaped_values(raw: Any) -> None:
    _parse_or_invalid(raw)
