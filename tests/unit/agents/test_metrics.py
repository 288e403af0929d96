"""The Prometheus collector: first-response sketch fields as one histogram, other fields as gauges."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agents.exporters.metrics import KpiCollector
from kpis.buckets import SumKey
from kpis.families.support import FIRST_RESPONSE

WAITS_MS = (5_000, 45_000, 7_200_000)
LE_SECONDS = (1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
TOTAL = {"tenant": "default", "window": "1h", "by": "none", "segment": "all"}


def one_hour_of_tickets(window: str, at_ms: int, now_ms: int) -> dict[SumKey, int]:
    """Three first responses in the 1h window, nothing in the others."""
    if window != "1h":
        return {}
    sums: dict[SumKey, int] = {
        ("default", "tickets_created", "", ""): 3,
        ("default", "first_responses", "", ""): 3,
        ("default", FIRST_RESPONSE.sum_field, "", ""): sum(WAITS_MS),
    }
    for wait_ms in WAITS_MS:
        key = ("default", FIRST_RESPONSE.field(wait_ms), "", "")
        sums[key] = sums.get(key, 0) + 1
    return sums


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(KpiCollector(one_hour_of_tickets, dict, lambda: 0, dict, lambda: 0))
    return registry


def test_first_responses_are_a_histogram_and_other_fields_gauges(registry: CollectorRegistry) -> None:
    buckets = [
        (float(sample.labels["le"]), sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "crm_kpi_first_response_seconds_bucket"
    ]
    types = {metric.name: metric.type for metric in registry.collect() if metric.name.startswith("crm_kpi")}
    assert {
        "types": types,
        "buckets": buckets,
        "count": registry.get_sample_value("crm_kpi_first_response_seconds_count", TOTAL),
        "sum": registry.get_sample_value("crm_kpi_first_response_seconds_sum", TOTAL),
        "first_responses": registry.get_sample_value("crm_kpi_first_responses", TOTAL),
        "tickets_created": registry.get_sample_value("crm_kpi_tickets_created", TOTAL),
    } == {
        "types": {"crm_kpi_first_response_seconds": "histogram", "crm_kpi_first_responses": "gauge",
                  "crm_kpi_tickets_created": "gauge"},
        "buckets": [
            *((pytest.approx(le, rel=0.011), count)
              for le, count in zip(LE_SECONDS, (0, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3), strict=True)),
            (float("inf"), 3),
        ],
        "count": 3.0,
        "sum": 7250.0,
        "first_responses": 3.0,
        "tickets_created": 3.0,
    }
