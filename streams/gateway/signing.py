"""Signing webhook requests the way each provider does.

The verifiers in `signatures.py` recompute these same values, and the tests and
`crm-kpi simulate --webhooks` use the header builders to send provider-shaped requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime

STANDARD_PREFIX = "whsec_"

# HubSpot v3 signs the URI with these escapes decoded (its "validating requests" guide).
HUBSPOT_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip

JSON = "application/json"


def _mac(key: bytes, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(key, message, digest).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64); ValueError if malformed."""
    try:
        return base64.b64decode(secret.removeprefix(STANDARD_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from None


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (Standard Webhooks 1.0)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + _b64(_mac(standard_key(secret), signed))


def hubspot_uri(url: str) -> str:
    """The URI as HubSpot v3 signs it: the request URL with a few escapes decoded."""
    for escape, char in HUBSPOT_DECODED.items():
        url = url.replace(escape, char).replace(escape.lower(), char)
    return url


def hubspot_signature(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    """Base64 HMAC-SHA256 of method + URI + body + timestamp (HubSpot signature v3)."""
    signed = method.encode() + hubspot_uri(url).encode() + body + timestamp.encode()
    return _b64(_mac(secret.encode(), signed))


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of "{t}.{body}" (a `v1` entry of `Stripe-Signature`)."""
    return _mac(secret.encode(), f"{timestamp}.".encode() + body).hex()


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of timestamp + body (`X-Zendesk-Webhook-Signature`)."""
    return _b64(_mac(secret.encode(), timestamp.encode() + body))


def intercom_signature(secret: str, body: bytes) -> str:
    """`sha1=<hex HMAC-SHA1 of the body>` (`X-Hub-Signature`)."""
    return "sha1=" + _mac(secret.encode(), body, "sha1").hex()


def basic_authorization(credentials: str) -> str:
    """The `Authorization` value for `user:password`."""
    return "Basic " + _b64(credentials.encode())


def standard_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Standard Webhooks headers; the message id is derived from the body, so retries keep it."""
    timestamp = int(time.time() if now is None else now)
    msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:32]
    return {
        "Content-Type": JSON,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, msg_id, timestamp, body),
    }


def hubspot_headers(secret: str, body: bytes, *, url: str, now: float | None = None) -> dict[str, str]:
    """HubSpot v3 headers for a POST of `body` to `url`."""
    timestamp = str(int((time.time() if now is None else now) * 1000))
    return {
        "Content-Type": JSON,
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": hubspot_signature(secret, "POST", url, body, timestamp),
    }


def stripe_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """`Stripe-Signature` headers."""
    timestamp = int(time.time() if now is None else now)
    signature = stripe_signature(secret, timestamp, body)
    return {"Content-Type": JSON, "Stripe-Signature": f"t={timestamp},v1={signature}"}


def zendesk_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Zendesk webhook signature headers (the timestamp is ISO 8601 UTC)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    timestamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Content-Type": JSON,
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Signature": zendesk_signature(secret, timestamp, body),
    }


def intercom_headers(secret: str, body: bytes) -> dict[str, str]:
    """Intercom's `X-Hub-Signature` header."""
    return {"Content-Type": JSON, "X-Hub-Signature": intercom_signature(secret, body)}


def basic_auth_headers(credentials: str) -> dict[str, str]:
    """Basic auth headers (Pipedrive, Freshdesk)."""
    return {"Content-Type": JSON, "Authorization": basic_authorization(credentials)}


def signed_headers(
    provider: str, secret: str, body: bytes, *, url: str, now: float | None = None
) -> dict[str, str]:
    """The headers `provider` would send with `body` to `url`, authenticated with `secret`.

    `provider` is a gateway endpoint name (`events` for Standard Webhooks). Salesforce
    authenticates by the organization id inside the SOAP body, so it only gets a content type.
    """
    match provider:
        case "events":
            return standard_headers(secret, body, now=now)
        case "hubspot":
            return hubspot_headers(secret, body, url=url, now=now)
        case "stripe":
            return stripe_headers(secret, body, now=now)
        case "zendesk":
            return zendesk_headers(secret, body, now=now)
        case "intercom":
            return intercom_headers(secret, body)
        case "pipedrive" | "freshdesk":
            return basic_auth_headers(secret)
        case "salesforce":
            return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    raise ValueError(f"unknown provider {provider!r}")
