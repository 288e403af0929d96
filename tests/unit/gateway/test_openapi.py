"""The committed streams/gateway/openapi.json and the served routes do not drift apart."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.events import EVENT_TYPES
from streams.gateway.app import OPENAPI_PATH
from streams.gateway.providers import PROVIDERS
from tests.unit.gateway.conftest import Harness

WEBHOOK_ERRORS = {"400", "401", "404", "413", "422", "503"}
PROBLEM_RESPONSES = ("Malformed", "Unauthorized", "Disabled", "TooLarge", "Unprocessable", "Unavailable")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    spec: dict[str, Any] = orjson.loads(OPENAPI_PATH.read_bytes())
    return spec


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


async def test_served_routes_are_the_documented_ones(gateway: Harness, document: dict[str, Any]) -> None:
    assert served_routes(gateway.client.app) == documented_routes(document)


async def test_the_gateway_serves_the_committed_document(gateway: Harness, document: dict[str, Any]) -> None:
    response = await gateway.client.get("/openapi.json")
    assert (response.status, await response.json()) == (200, document)


def test_document_is_openapi_3_1_with_unique_operation_ids(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_every_webhook_documents_its_answers(document: dict[str, Any], provider: str) -> None:
    responses = document["paths"][f"/webhooks/{provider}"]["post"]["responses"]
    success = "200" if provider == "salesforce" else "202"
    assert set(responses) == {success, *WEBHOOK_ERRORS}
    assert PROVIDERS[provider].env in str(document["paths"][f"/webhooks/{provider}"])


def test_problem_responses_use_the_problem_schema(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for name in PROBLEM_RESPONSES:
        schema = responses[name]["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}
    required = document["components"]["schemas"]["Problem"]["required"]
    assert required == ["type", "title", "status", "detail"]


def test_event_types_match_the_contract(document: dict[str, Any]) -> None:
    event = document["components"]["schemas"]["CanonicalEvent"]
    assert event["properties"]["type"]["enum"] == list(EVENT_TYPES)
