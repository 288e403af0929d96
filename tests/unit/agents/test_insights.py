"""The insight endpoints, partials and gauges, with the cluster gather faked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from agents.exporters.api import kpis_response
from agents.exporters.cluster import Partials
from agents.exporters.insights import (
    SERIES_HOURS,
    InsightsCache,
    InsightsCollector,
    at_risk_response,
    forecast_response,
    last_hour,
)
from crmkpi.settings import Settings
from kpis.config import KpiConfig
from kpis.insights.anomaly import ALERT_SCORE
from kpis.insights.targets import parse_targets
from streams.events import parse_time_ms
from tests.unit.kpis.insights.planted import planted_history, rate

AT = "2026-11-17T10:00:00.000Z"  # a Tuesday, as the API formats times
AT_MS = parse_time_ms(AT)
TARGETS = parse_targets({"kpi": {"win_rate": {"target": 0.3, "benchmark": 0.2}}})


def fake_gather(*workers: Partials) -> Any:
    """A gather over workers that answer with these partials; records the queries."""
    async def gather(query: Mapping[str, str]) -> Partials:
        gather.queries.append(dict(query))  # type: ignore[attr-defined]
        merged = Partials()
        for worker in workers:
            merged.absorb(Partials.from_json(orjson.loads(worker.to_json())))
        return merged
    gather.queries = []  # type: ignore[attr-defined]
    return gather


def body(response: Any) -> Any:
    return orjson.loads(response.body)


FIRST_HOUR = last_hour(AT_MS) - SERIES_HOURS + 1
# Planted hour 0 is a Monday 00:00, and so is hour index 168k - 72 (the epoch was a Thursday).
SHIFT = (FIRST_HOUR + 72) % 168


def planted_leads(tenant: str = "default", last: float | None = None) -> Partials:
    """Hourly leads with the planted pattern, on the same weekdays."""
    values = [int(v) for v in planted_history(SHIFT + SERIES_HOURS, seed=3)][SHIFT:]
    if last is not None:
        values[-1] = int(last)
    return Partials(series={(tenant, "leads_created"): [0, *values]})


async def test_forecast_of_leads_is_the_sum_of_the_hourly_points() -> None:
    gather = fake_gather(planted_leads())
    response = await forecast_response({"kpi": "leads_created", "horizon": "24h", "at": AT}, 0, gather)
    answer = body(response)
    assert response.status == 200
    assert gather.queries[0]["series"] == "leads_created"
    assert answer["method"] == "holt-winters" and answer["season_hours"] == 168
    assert answer["from"] == AT and answer["points"][0]["at"] == "2026-11-17T11:00:00.000Z"
    assert len(answer["points"]) == 24 and answer["history_hours"] == SERIES_HOURS
    assert answer["value"] == pytest.approx(sum(p["value"] for p in answer["points"]))
    expected = sum(rate(SHIFT + h) for h in range(SERIES_HOURS, SERIES_HOURS + 24))
    assert answer["value"] == pytest.approx(expected, rel=0.25)


@pytest.mark.parametrize(("query", "field"), [
    ({"kpi": "nps"}, "kpi"), ({"kpi": "mrr", "horizon": "8d"}, "horizon"),
    ({"kpi": "mrr", "horizon": "90m"}, "horizon"), ({"kpi": "mrr", "at": "yesterday"}, "at"),
])
async def test_bad_forecast_queries_name_the_parameter(query: dict[str, str], field: str) -> None:
    response = await forecast_response(query, AT_MS, fake_gather())
    assert response.status == 400 and body(response)["field"] == field


def risky(customer_id: str, points: float) -> dict[str, Any]:
    return {"customer_id": customer_id, "score": points, "at_risk": points >= 50, "plan": "pro",
            "factors": {}}


async def test_at_risk_customers_are_merged_across_workers_and_cut_to_the_limit() -> None:
    one = Partials(at_risk=[risky("a", 80.0), risky("b", 20.0)])
    two = Partials(at_risk=[risky("c", 55.0), risky("d", 80.0)])
    gather = fake_gather(one, two)
    response = await at_risk_response({"limit": "3", "tenant": "acme", "at": AT}, 0, gather)
    answer = body(response)
    assert gather.queries == [{"window": "1h", "at": AT, "tenant": "acme", "at_risk": "3"}]
    assert [c["customer_id"] for c in answer["customers"]] == ["a", "d", "c"]
    assert answer["threshold"] == 50 and answer["tenant"] == "acme"
    bad = await at_risk_response({"limit": "0"}, AT_MS, gather)
    assert bad.status == 400 and body(bad)["field"] == "limit"


async def test_kpis_with_targets_add_target_benchmark_and_gap() -> None:
    sums = {("default", "deals_won", "", ""): 1, ("default", "deals_lost", "", ""): 3}
    gather = fake_gather(Partials(sums=sums))
    query = {"window": "7d", "at": AT, "targets": "1"}
    response = await kpis_response(query, 0, gather, KpiConfig(), TARGETS)
    assert body(response)["targets"] == {"win_rate": {"target": 0.3, "benchmark": 0.2, "gap": -0.05}}
    plain = await kpis_response({"window": "7d", "at": AT}, 0, gather, KpiConfig(), TARGETS)
    assert "targets" not in body(plain)
    bad = await kpis_response({"targets": "yes"}, AT_MS, gather, KpiConfig(), TARGETS)
    assert bad.status == 400 and body(bad)["field"] == "targets"


def test_partials_carry_series_and_at_risk_and_merge_them() -> None:
    one = Partials(series={("t", "leads_created"): [0, 1, 2]}, at_risk=[risky("a", 60.0)])
    two = Partials(series={("t", "leads_created"): [0, 3, 4], ("u", "leads_created"): [0, 1, 1]})
    merged = Partials.from_json(orjson.loads(one.to_json()))
    merged.absorb(Partials.from_json(orjson.loads(two.to_json())))
    assert merged.series == {("t", "leads_created"): [0, 4, 6], ("u", "leads_created"): [0, 1, 1]}
    assert merged.at_risk == [risky("a", 60.0)]
    legacy = orjson.loads(Partials().to_json())
    del legacy["series"], legacy["at_risk"]
    assert Partials.from_json(legacy).series == {}


def test_the_cache_forecasts_and_scores_every_tenant() -> None:
    quiet = planted_leads("quiet")
    spiked = planted_leads("spiked", last=3 * rate(SHIFT + SERIES_HOURS - 1) + 40)
    columns = {**quiet.series, **spiked.series}
    forecasts, anomalies = InsightsCache(ZoneInfo("UTC")).compute(columns, AT_MS)
    scores = {labels: value for labels, value in anomalies}
    assert scores[("leads_created", "spiked")] > ALERT_SCORE > abs(scores[("leads_created", "quiet")])
    assert {labels for labels, _ in forecasts} == {("leads_created", "24h", "quiet"),
                                                   ("leads_created", "24h", "spiked")}


def test_the_collector_exports_targets_at_risk_counts_and_cached_scores() -> None:
    cache = InsightsCache(ZoneInfo("UTC"))
    cache.forecasts = [(("mrr", "24h", "default"), 1234.5)]
    cache.anomalies = [(("churn_rate", "default"), 6.5)]
    totals = {("acme", "at_risk_customers@at", "plan", "pro"): 2, ("acme", "at_risk_customers@at", "", ""): 2}
    registry = CollectorRegistry()
    registry.register(InsightsCollector(TARGETS, lambda: totals, cache))
    value = registry.get_sample_value
    assert value("crm_kpi_target", {"kpi": "win_rate", "window": "7d", "tenant": "acme"}) == 0.3
    assert value("crm_kpi_benchmark", {"kpi": "win_rate", "window": "mtd", "tenant": "default"}) == 0.2
    assert value("crm_kpi_customers_at_risk", {"tenant": "acme", "plan": "pro"}) == 2
    assert value("crm_kpi_forecast", {"kpi": "mrr", "horizon": "24h", "tenant": "default"}) == 1234.5
    assert value("crm_kpi_anomaly_score", {"kpi": "churn_rate", "tenant": "default"}) == 6.5
    cache.clear()
    assert value("crm_kpi_anomaly_score", {"kpi": "churn_rate", "tenant": "default"}) is None


def test_settings_validate_the_targets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "targets.toml"
    path.write_text("[kpi.win_rate]\ntarget = 0.3\n")
    monkeypatch.setenv("CRMKPI_TARGETS_FILE", str(path))
    assert Settings().targets.value("win_rate", "target", "24h", "default") == 0.3
    path.write_text("[kpi.winrate]\ntarget = 0.3\n")
    with pytest.raises(ValidationError, match=r"kpi\.winrate: unknown KPI id; did you mean 'win_rate'\?"):
        Settings()
    monkeypatch.delenv("CRMKPI_TARGETS_FILE")
    assert Settings().targets.kpis("default") == []
