"""Two workers on Apache Kafka agree exactly with the independent oracle (kpis.md)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmkpi.embedded import EmbeddedProcess
from kpis.catalogue import DIMENSIONS
from kpis.timebase import HOUR_MS, WINDOWS
from streams.events import format_time_ms
from tests.oracle.history import FX_RATES, generate_history, write_jsonl
from tests.oracle.kpis import compute_kpis, events_processed
from tests.support.engine import EngineEnv, WorkerProcess, fx_rates_variable, replay_until_applied
from tests.support.kafka import KafkaBroker
from tests.unit.test_exactness import assert_same

pytestmark = pytest.mark.integration

SAMPLE = re.compile(r'^(crm_kpi_\w+)\{(.*)\} (\S+)$')


def scrape_sums(workers: list[WorkerProcess], window: str) -> dict[str, float]:
    """Unsliced `crm_kpi_*` gauges of one window, summed over all workers."""
    sums: dict[str, float] = defaultdict(float)
    for worker in workers:
        with urllib.request.urlopen(worker.url + "/metrics", timeout=30) as response:  # noqa: S310
            text = response.read().decode()
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and f'window="{window}"' in match[2] and 'by="none"' in match[2] \
                    and 'tenant="default"' in match[2]:
                sums[match[1]] += float(match[3])
    return sums


def test_two_workers_equal_the_oracle(kafka_broker: KafkaBroker, redis_server: EmbeddedProcess,
                                      tmp_path: Path, unique_name: str) -> None:
    now_ms = time.time_ns() // 1_000_000
    at_ms = now_ms // HOUR_MS * HOUR_MS
    events = generate_history(11, end=datetime.fromtimestamp(at_ms / 1000, tz=UTC), n_events=20_000)
    write_jsonl(events, tmp_path / "history.jsonl")
    env = EngineEnv(kafka_broker.bootstrap, redis_server.address, tmp_path, unique_name,
                    extra={"CRMKPI_FX_RATES": fx_rates_variable(FX_RATES), "CRMKPI_GROSS_MARGIN": "0.8"})
    workers = [WorkerProcess(env, tmp_path).start() for _ in range(2)]
    try:
        status = replay_until_applied(env, tmp_path / "history.jsonl", workers[0],
                                      events_processed(events), timeout=300)
        assert status["partitions"] == [0, 1, 2, 3]
        at = format_time_ms(at_ms)
        at_dt = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        for window in WINDOWS:
            for by in (None, *DIMENSIONS):
                query = f"/api/kpis?window={window}&at={at}" + (f"&by={by}" if by else "")
                # Any worker answers for all partitions.
                _, body = workers[len(window) % 2].get(query)
                oracle = compute_kpis(events, at_dt, window=window, by=by, fx_rates=FX_RATES,
                                      gross_margin="0.8")
                assert_same(body["kpis"], oracle, f"{window} by={by}")
        _, live = workers[0].get("/api/kpis?window=30d")
        scraped = scrape_sums(workers, "30d")
        assert scraped["crm_kpi_deals_won"] == live["kpis"]["deals_won"]
        assert scraped["crm_kpi_leads_created"] == live["kpis"]["leads_created"]
        assert scraped["crm_kpi_won_revenue"] == pytest.approx(live["kpis"]["won_revenue"], rel=1e-12)
    finally:
        for worker in workers:
            worker.stop()
