"""The gateway application over in-memory Kafka and Redis stand-ins, with a test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from crmkpi.settings import Settings
from streams.gateway.app import create_gateway
from tests.unit.gateway.fakes import MemoryDeduplicator, MemoryPublisher
from tests.unit.gateway.support import gateway_settings, post


@dataclass
class Harness:
    """A running gateway, what it wrote, and a way to post signed deliveries to it."""

    client: TestClient
    publisher: MemoryPublisher
    deduplicator: MemoryDeduplicator
    kafka_up: list[bool] = field(default_factory=lambda: [True])

    def url(self, provider: str) -> str:
        """The absolute URL of a provider's endpoint (what HubSpot signs)."""
        return str(self.client.make_url(f"/webhooks/{provider}"))

    async def post(
        self, provider: str, body: bytes, headers: dict[str, str] | None = None, **signing: Any
    ) -> ClientResponse:
        """POST `body`, signed as the provider would (unless `headers` are given)."""
        return await post(self.client, provider, body, headers, **signing)


async def start(settings: Settings) -> Harness:
    """Start a gateway with fresh stand-ins."""
    publisher, deduplicator = MemoryPublisher(), MemoryDeduplicator()
    kafka_up = [True]

    async def kafka_ready() -> bool:
        return kafka_up[0]

    app = create_gateway(settings, publisher, deduplicator, kafka_ready=kafka_ready)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Harness(client, publisher, deduplicator, kafka_up)


GatewayFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[GatewayFactory]:
    """Start gateways with settings overrides (`await make_gateway(public_url=...)`)."""
    started: list[Harness] = []

    async def make(**overrides: Any) -> Harness:
        started.append(await start(gateway_settings(**overrides)))
        return started[-1]

    yield make
    for harness in started:
        await harness.client.close()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Harness:
    """A gateway with every endpoint enabled."""
    return await make_gateway()
