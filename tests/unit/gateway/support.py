"""Secrets, settings and payload fixtures shared by the gateway's unit and integration tests."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from crmkpi.settings import Settings
from streams.gateway.providers import PROVIDERS
from streams.gateway.providers.base import Translation
from streams.gateway.signatures import Delivery
from streams.gateway.signing import signed_headers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
SECRETS = {
    "events": "whsec_" + base64.b64encode(b"crm-kpi standard webhooks test key").decode(),
    "hubspot": "hubspot-client-secret",
    "stripe": "whsec_stripe_endpoint_secret",
    "zendesk": "zendesk-signing-secret",
    "intercom": "intercom-client-secret",
    "pipedrive": "pipedrive-hook:s3cret",
    "freshdesk": "freshdesk-hook:s3cret",
    "salesforce": "00D5g000004XyZa",
}
FIXTURE_ORG_ID = b"00D5g000004XyZaEAK"
WRONG_SECRETS = {
    "events": "whsec_" + base64.b64encode(b"some other standard webhooks key").decode(),
    "salesforce": "00D5g000009ZzZz",
    **{name: "wrong-user:wrong-password" for name in ("pipedrive", "freshdesk")},
    **{name: "not-the-secret" for name in ("hubspot", "stripe", "zendesk", "intercom")},
}
# Which endpoints' credentials cover the body (HMAC), and which also expire (a timestamp).
SIGNS_BODY = ["events", "hubspot", "stripe", "zendesk", "intercom"]
TIMESTAMPED = ["events", "hubspot", "stripe", "zendesk"]
# One fixture per endpoint whose events all map to KPIs (used by the cross-provider tests).
SAMPLES = {
    "events": "events/batch.jsonl",
    "hubspot": "hubspot/batch.json",
    "stripe": "stripe/subscription_created.json",
    "zendesk": "zendesk/ticket_created.json",
    "intercom": "intercom/conversation_user_created.json",
    "pipedrive": "pipedrive/deal_won.json",
    "freshdesk": "freshdesk/ticket_created.json",
    "salesforce": "salesforce/notifications.xml",
}


def gateway_settings(**overrides: Any) -> Settings:
    """Settings with every endpoint enabled with SECRETS, EUR and GBP known, two tenants."""
    secrets = {PROVIDERS[name].secret_field: secret for name, secret in SECRETS.items()}
    values: dict[str, Any] = {"fx_rates": "EUR=1.08,GBP=1.27", "tenants": "default,acme",
                              **secrets, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def fixture(path: str) -> bytes:
    """The bytes of tests/fixtures/webhooks/<path>."""
    return (FIXTURES / path).read_bytes()


def forged(provider: str, body: bytes) -> tuple[bytes, str]:
    """A delivery (body, signing secret) with the wrong credentials: signed with a wrong
    secret, or for Salesforce, which has no signature, sent from another organization."""
    if provider == "salesforce":
        return body.replace(FIXTURE_ORG_ID, WRONG_SECRETS["salesforce"].encode()), ""
    return body, WRONG_SECRETS[provider]


def translate(provider: str, body: bytes) -> Translation:
    """What the provider's endpoint makes of a freshly signed delivery of `body`."""
    now, url = time.time(), f"https://crm.example.com/webhooks/{provider}"
    headers = signed_headers(provider, SECRETS[provider], body, url=url, now=now)
    endpoint = PROVIDERS[provider]
    payload = endpoint.read(SECRETS[provider], Delivery("POST", url, headers, body, now))
    return endpoint.translate(payload)


async def post(
    client: TestClient,
    provider: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    secret: str | None = None,
    now: float | None = None,
) -> ClientResponse:
    """POST `body` to a provider's endpoint, signed as the provider would unless `headers`."""
    path = f"/webhooks/{provider}"
    if headers is None:
        secret = SECRETS[provider] if secret is None else secret
        url = str(client.make_url(path))
        headers = signed_headers(provider, secret, body, url=url, now=now)
    return await client.post(path, data=body, headers=headers)
