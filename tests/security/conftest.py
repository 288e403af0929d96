"""The gateway over in-memory stand-ins (tests/unit/gateway/fakes.py), for the security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.gateway.conftest import Harness, start
from tests.unit.gateway.support import gateway_settings


@pytest.fixture
async def gateway() -> AsyncIterator[Harness]:
    """A gateway with every endpoint enabled, writing to memory."""
    harness = await start(gateway_settings())
    yield harness
    await harness.client.close()
