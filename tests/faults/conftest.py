"""Fixtures of the fault scenarios, and the figures table printed at the end of the session."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmkpi.embedded import EmbeddedProcess
from tests.faults.harness import Deployment, Figures
from tests.support.kafka import KafkaBroker

FIGURES: list[Figures] = []


@pytest.fixture
def deployment(kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, tmp_path: Path,
               unique_name: str) -> Iterator[Deployment]:
    """A fresh namespace on the session's Apache Kafka, with no worker yet."""
    deployed = Deployment(kafka_broker.bootstrap, redis_server.address, tmp_path, unique_name)
    try:
        yield deployed
    finally:
        deployed.close()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The scenario's figures, reported whether it passes or fails."""
    figure = Figures(request.node.name)
    yield figure
    FIGURES.append(figure)



def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each scenario's figures; also write them as JSON to $CRMKPI_FAULT_FIGURES."""
    if not FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    for figure in FIGURES:
        terminalreporter.write_line(
            f"{figure.scenario}: events={figure.events} faults={len(figure.faults)} "
            f"duplicates_delivered={figure.duplicates_delivered} "
            f"redelivered_records={figure.redelivered_records} "
            f"redelivered_events={figure.redelivered_events} lost={figure.lost} "
            f"overcounted={figure.overcounted} seconds={figure.seconds:.1f} {figure.notes}"
        )
    target = os.environ.get("CRMKPI_FAULT_FIGURES")
    if target:
        Path(target).write_text(json.dumps([dataclasses.asdict(f) for f in FIGURES], indent=2))
