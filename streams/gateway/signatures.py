"""Authenticating webhook deliveries: one verifier per scheme, over the raw body bytes.

Every comparison is constant-time (`hmac.compare_digest`). A failure says only whether the
signature or the timestamp was at fault, never which header or which character, and never
echoes a secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from streams.gateway.signing import (
    hubspot_signature,
    intercom_signature,
    standard_signature,
    stripe_signature,
    zendesk_signature,
)

TOLERANCE_SECONDS = 300
FRESHDESK_TOKEN_HEADER = "X-Crmkpi-Token"  # noqa: S105 - a header name
SALESFORCE_ORG_ID_LENGTH = 15


class SignatureError(Exception):
    """A delivery that failed authentication; `part` is "signature" or "timestamp"."""

    def __init__(self, part: Literal["signature", "timestamp"]) -> None:
        super().__init__(part)
        self.part = part


@dataclass(frozen=True)
class Delivery:
    """One webhook request as received: the URL the sender signed, headers and raw body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    received_at: float


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def _header(delivery: Delivery, name: str) -> str:
    value = delivery.headers.get(name)
    if not value:
        raise SignatureError("signature")
    return value


def _fresh(delivery: Delivery, timestamp: float) -> None:
    if abs(delivery.received_at - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp")


def _timestamp(delivery: Delivery, name: str) -> int:
    text = delivery.headers.get(name, "")
    if not text.isdigit():
        raise SignatureError("timestamp")
    return int(text)


def _any_match(expected: str, candidates: Iterable[str]) -> None:
    if not any(_same(expected, candidate) for candidate in candidates):
        raise SignatureError("signature")


def verify_standard(secret: str, delivery: Delivery) -> None:
    """Standard Webhooks 1.0: any of the space-separated `v1,` signatures, 5-minute window."""
    msg_id = _header(delivery, "webhook-id")
    timestamp = _timestamp(delivery, "webhook-timestamp")
    _fresh(delivery, timestamp)
    expected = standard_signature(secret, msg_id, timestamp, delivery.body)
    _any_match(expected, _header(delivery, "webhook-signature").split())


def verify_hubspot(secret: str, delivery: Delivery) -> None:
    """HubSpot signature v3 (`X-HubSpot-Signature-v3`), timestamp in ms within 5 minutes."""
    timestamp = _timestamp(delivery, "X-HubSpot-Request-Timestamp")
    _fresh(delivery, timestamp / 1000)
    expected = hubspot_signature(secret, delivery.method, delivery.url, delivery.body, str(timestamp))
    _any_match(expected, [_header(delivery, "X-HubSpot-Signature-v3")])


def verify_stripe(secret: str, delivery: Delivery) -> None:
    """`Stripe-Signature: t=...,v1=...[,v1=...]`, 300 s tolerance, any `v1` may match."""
    pairs = [item.partition("=") for item in _header(delivery, "Stripe-Signature").split(",")]
    times = [value for key, _, value in pairs if key.strip() == "t"]
    if len(times) != 1 or not times[0].isdigit():
        raise SignatureError("timestamp")
    timestamp = int(times[0])
    _fresh(delivery, timestamp)
    expected = stripe_signature(secret, timestamp, delivery.body)
    _any_match(expected, [value for key, _, value in pairs if key.strip() == "v1"])


def verify_zendesk(secret: str, delivery: Delivery) -> None:
    """`X-Zendesk-Webhook-Signature` over timestamp + body, ISO 8601 timestamp within 5 min."""
    timestamp = delivery.headers.get("X-Zendesk-Webhook-Signature-Timestamp", "")
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        raise SignatureError("timestamp") from None
    if moment.tzinfo is None:
        raise SignatureError("timestamp")
    _fresh(delivery, moment.timestamp())
    expected = zendesk_signature(secret, timestamp, delivery.body)
    _any_match(expected, [_header(delivery, "X-Zendesk-Webhook-Signature")])


def verify_intercom(secret: str, delivery: Delivery) -> None:
    """Intercom `X-Hub-Signature: sha1=<hex>` (no timestamp: replays are caught by dedup)."""
    _any_match(intercom_signature(secret, delivery.body), [_header(delivery, "X-Hub-Signature")])


def verify_basic_auth(credentials: str, delivery: Delivery) -> None:
    """HTTP Basic auth against `user:password` (Pipedrive, Freshdesk)."""
    scheme, _, encoded = _header(delivery, "Authorization").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise SignatureError("signature") from None
    if scheme.lower() != "basic" or not hmac.compare_digest(given, credentials.encode()):
        raise SignatureError("signature")


def verify_freshdesk(credentials: str, delivery: Delivery) -> None:
    """Basic auth, or the same `user:password` string in an `X-Crmkpi-Token` header.

    Freshdesk automation webhooks can send Basic auth or custom headers; either works here.
    """
    token = delivery.headers.get(FRESHDESK_TOKEN_HEADER)
    if token is None:
        verify_basic_auth(credentials, delivery)
    elif not _same(credentials, token):
        raise SignatureError("signature")


def _org_prefix(org_id: str) -> str:
    return org_id.strip()[:SALESFORCE_ORG_ID_LENGTH]


def verify_salesforce_org(expected: str, org_ids: Iterable[str]) -> None:
    """Every outbound-message `OrganizationId` must be the configured org (15- or 18-char id)."""
    found = list(org_ids)
    if not found or not all(_same(_org_prefix(expected), _org_prefix(org)) for org in found):
        raise SignatureError("signature")
