"""Session-wide services for the tests: each starts only when a test asks for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from crmkpi.embedded import EmbeddedProcess, start_redis, start_tansu
from tests.support.kafka import KafkaBroker

BROKER_KINDS = ["kafka", "tansu"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the suite's markers."""
    config.addinivalue_line("markers", "integration: needs real services (Kafka, Redis, ...)")
    config.addinivalue_line("markers", "slow: heavy fault runs (in CI)")
    config.addinivalue_line("markers", "soak: hour-long soak runs (not in CI)")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """An Apache Kafka 4.x KRaft node for the whole session."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    """The embedded Tansu broker (in-memory) for the whole session."""
    tansu = start_tansu(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield tansu
    tansu.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    """The embedded Redis for the whole session; `.address` is its redis:// URL."""
    server = start_redis(data_dir=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest) -> str:
    """Bootstrap servers of each broker kind in turn (Apache Kafka, then Tansu)."""
    if request.param == "kafka":
        kafka: KafkaBroker = request.getfixturevalue("kafka_broker")
        return kafka.bootstrap
    tansu: EmbeddedProcess = request.getfixturevalue("tansu_broker")
    return tansu.address


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a topic or consumer group, so tests never share broker state."""
    return f"test-{uuid.uuid4().hex}"
