"""`application/problem+json` (RFC 9457) answers of the gateway.

Handlers raise `Problem`; `problem_middleware` turns it, and aiohttp's own HTTP errors
(unknown path, wrong method), into a problem response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from streams.events import InvalidEvent

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:crm-kpi:problem:"

OUTCOMES = {
    400: "invalid",
    401: "unauthorized",
    404: "disabled",
    413: "too_large",
    422: "invalid",
    503: "unavailable",
}


class Problem(Exception):
    """An error answer: status, a stable `type` slug, title, detail and optional members."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {
            "type": TYPE_PREFIX + slug,
            "title": title,
            "status": status,
            "detail": detail,
            **members,
        }
        self.headers = headers or {}

    @property
    def outcome(self) -> str:
        """The `outcome` label of the request metric."""
        return OUTCOMES.get(self.status, "error")

    def response(self) -> web.Response:
        """The problem as an HTTP response."""
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.body),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def malformed(detail: str, field: str | None = None) -> Problem:
    """400: not JSON (or XML), or not the expected shape."""
    members: dict[str, Any] = {} if field is None else {"field": field}
    return Problem(400, "malformed", "Malformed request body", detail, **members)


def invalid_event(error: InvalidEvent, index: int | None, title: str) -> Problem:
    """422: well-formed input that breaks the event contract; names the field (and index)."""
    where = "" if index is None else f"event {index}: "
    members: dict[str, Any] = {"field": error.field}
    if index is not None:
        members["index"] = index
    return Problem(422, "invalid-event", title, f"{where}{error}", **members)


def unauthorized(part: str) -> Problem:
    """401: says only whether the signature or the timestamp failed."""
    if part == "timestamp":
        detail = "timestamp missing or outside the 5-minute window"
    else:
        detail = "signature missing or invalid"
    return Problem(401, "unauthorized", "Unauthorized", detail)


def too_large(limit: int) -> Problem:
    """413: over the body limit."""
    detail = f"the body limit is {limit} bytes (CRMKPI_BODY_LIMIT_BYTES)"
    return Problem(413, "too-large", "Request body too large", detail)


def unavailable(detail: str, retry_after: int = 5) -> Problem:
    """503: Kafka or Redis cannot take the write now; the sender should retry."""
    headers = {"Retry-After": str(retry_after)}
    return Problem(503, "unavailable", "Service unavailable", detail, headers=headers)


def disabled(provider: str, env: str) -> Problem:
    """404: the provider's endpoint is off because its secret is unset."""
    detail = f"the {provider} endpoint is disabled: set {env} to enable it"
    return Problem(404, "disabled", "Endpoint disabled", detail)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer `Problem`s, and aiohttp's HTTP errors, as problem+json."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        slug = error.reason.lower().replace(" ", "-")
        detail = f"{request.method} {request.path}: {error.reason.lower()}"
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return Problem(error.status, slug, error.reason, detail, headers=headers).response()
