"""Signature schemes: signing matches each provider's definition, verification rejects forgeries."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

import pytest

from streams.gateway import signing
from streams.gateway.signatures import (
    Delivery,
    SignatureError,
    verify_basic_auth,
    verify_freshdesk,
    verify_hubspot,
    verify_intercom,
    verify_salesforce_org,
    verify_standard,
    verify_stripe,
    verify_zendesk,
)
from tests.unit.gateway.support import SECRETS, SIGNS_BODY, TIMESTAMPED, WRONG_SECRETS

NOW = 1_772_442_000.0
URL = "https://crm.example.com/webhooks/hubspot?portal=62515"
BODY = b'[{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 123}]'
Verifier = Callable[[str, Delivery], None]

# Endpoint name -> verifier (Salesforce's org check is tested on its own).
VERIFIERS: dict[str, Verifier] = {
    "events": verify_standard,
    "hubspot": verify_hubspot,
    "stripe": verify_stripe,
    "zendesk": verify_zendesk,
    "intercom": verify_intercom,
    "pipedrive": verify_basic_auth,
    "freshdesk": verify_freshdesk,
}


def delivery(headers: dict[str, str], body: bytes = BODY, now: float = NOW) -> Delivery:
    return Delivery("POST", URL, headers, body, now)


def signed(provider: str, secret: str | None = None, *, at: float = NOW) -> dict[str, str]:
    secret = SECRETS[provider] if secret is None else secret
    return signing.signed_headers(provider, secret, BODY, url=URL, now=at)


def mac(key: bytes, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(key, message, digest).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_standard_webhooks_published_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = signing.standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": signature,
    }
    verify_standard(secret, delivery(headers, body, now=1614265330))


def test_signers_follow_each_providers_definition() -> None:
    key = base64.b64decode(SECRETS["events"].removeprefix("whsec_"))
    standard = signed("events")
    message = f"{standard['webhook-id']}.{int(NOW)}.".encode() + BODY
    assert standard["webhook-signature"] == "v1," + b64(mac(key, message))

    hubspot = signed("hubspot")
    message = b"POST" + URL.encode() + BODY + str(int(NOW * 1000)).encode()
    expected = b64(mac(SECRETS["hubspot"].encode(), message))
    assert hubspot["X-HubSpot-Signature-v3"] == expected

    stripe = signed("stripe")
    digest = mac(SECRETS["stripe"].encode(), f"{int(NOW)}.".encode() + BODY).hex()
    assert stripe["Stripe-Signature"] == f"t={int(NOW)},v1={digest}"

    zendesk = signed("zendesk")
    assert zendesk["X-Zendesk-Webhook-Signature-Timestamp"] == "2026-03-02T09:00:00Z"
    message = b"2026-03-02T09:00:00Z" + BODY
    assert zendesk["X-Zendesk-Webhook-Signature"] == b64(mac(SECRETS["zendesk"].encode(), message))

    digest = mac(SECRETS["intercom"].encode(), BODY, "sha1").hex()
    assert signed("intercom")["X-Hub-Signature"] == f"sha1={digest}"

    credentials = b64(SECRETS["pipedrive"].encode())
    assert signed("pipedrive")["Authorization"] == f"Basic {credentials}"


def test_hubspot_signs_the_uri_with_reserved_characters_decoded() -> None:
    encoded = "https://crm.example.com/webhooks/hubspot?next=%2Fhome%3Fa%3Db"
    timestamp = str(int(NOW * 1000))
    message = b"POST" + b"https://crm.example.com/webhooks/hubspot?next=/home?a%3Db"
    # `%3D` (=) is not in HubSpot's decode table, `%2F` and `%3F` are.
    expected = b64(mac(b"k", message + BODY + timestamp.encode()))
    assert signing.hubspot_signature("k", "POST", encoded, BODY, timestamp) == expected


@pytest.mark.parametrize("provider", list(VERIFIERS))
def test_accepts_a_valid_delivery(provider: str) -> None:
    VERIFIERS[provider](SECRETS[provider], delivery(signed(provider)))


@pytest.mark.parametrize("provider", SIGNS_BODY)
def test_rejects_a_tampered_body(provider: str) -> None:
    with pytest.raises(SignatureError) as failure:
        VERIFIERS[provider](SECRETS[provider], delivery(signed(provider), BODY + b" "))
    assert failure.value.part == "signature"


@pytest.mark.parametrize("provider", list(VERIFIERS))
def test_rejects_the_wrong_secret(provider: str) -> None:
    with pytest.raises(SignatureError) as failure:
        VERIFIERS[provider](SECRETS[provider], delivery(signed(provider, WRONG_SECRETS[provider])))
    assert failure.value.part == "signature"


@pytest.mark.parametrize("provider", TIMESTAMPED)
@pytest.mark.parametrize("skew", [-301, 301])
def test_rejects_a_timestamp_outside_five_minutes(provider: str, skew: int) -> None:
    headers = signed(provider, at=NOW + skew)
    with pytest.raises(SignatureError) as failure:
        VERIFIERS[provider](SECRETS[provider], delivery(headers))
    assert failure.value.part == "timestamp"


@pytest.mark.parametrize("provider", TIMESTAMPED)
def test_accepts_a_timestamp_just_inside_the_window(provider: str) -> None:
    VERIFIERS[provider](SECRETS[provider], delivery(signed(provider, at=NOW - 299)))


@pytest.mark.parametrize("provider", list(VERIFIERS))
def test_rejects_a_delivery_without_credentials(provider: str) -> None:
    with pytest.raises(SignatureError):
        VERIFIERS[provider](SECRETS[provider], delivery({"Content-Type": "application/json"}))


def test_standard_accepts_any_of_several_signatures() -> None:
    headers = signed("events")
    old = signed("events", WRONG_SECRETS["events"])["webhook-signature"]
    headers["webhook-signature"] = f"v1a,bm90LWVkMjU1MTk= {old} {headers['webhook-signature']}"
    verify_standard(SECRETS["events"], delivery(headers))


def test_stripe_accepts_any_v1_during_secret_rotation() -> None:
    headers = signed("stripe")
    timestamp, current = headers["Stripe-Signature"].split(",")
    old = signed("stripe", WRONG_SECRETS["stripe"])["Stripe-Signature"].split(",")[1]
    headers["Stripe-Signature"] = f"{timestamp},{old},{current}"
    verify_stripe(SECRETS["stripe"], delivery(headers))


def test_freshdesk_accepts_the_token_header() -> None:
    verify_freshdesk(SECRETS["freshdesk"], delivery({"X-Crmkpi-Token": SECRETS["freshdesk"]}))
    with pytest.raises(SignatureError):
        verify_freshdesk(SECRETS["freshdesk"], delivery({"X-Crmkpi-Token": "guess"}))


@pytest.mark.parametrize(
    ("configured", "found", "ok"),
    [
        ("00D5g000004XyZa", ["00D5g000004XyZaEAK"], True),
        ("00D5g000004XyZaEAK", ["00D5g000004XyZa"], True),
        ("00D5g000004XyZa", ["00D5g000004XyZb"], False),
        ("00D5g000004XyZa", ["00D5g000004XyZa", "00D5g000009ZzZz"], False),
        ("00D5g000004XyZa", [], False),
    ],
)
def test_salesforce_org_check(configured: str, found: list[str], ok: bool) -> None:
    if ok:
        verify_salesforce_org(configured, found)
    else:
        with pytest.raises(SignatureError):
            verify_salesforce_org(configured, found)


def test_malformed_standard_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing.standard_key("whsec_not base64!")
