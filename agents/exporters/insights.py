"""Insights served by the worker: forecasts, anomaly scores, at-risk customers and targets.

Series and at-risk customers are parts of the partials (`/internal/partials?series=...`,
`?at_risk=N`), gathered from every worker like the KPI sums, so they cover every partition
exactly once. Forecasts and anomaly scores are not additive: one worker (the owner of events
partition 0) computes them from the merged series every INSIGHTS_SECONDS and exports them;
targets and the additive at-risk counts are exported by every worker.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.exporters.api import BadQuery, Gather, json_response, problem
from agents.exporters.cluster import ClusterIncomplete, Partials
from kpis.buckets import SumKey
from kpis.families.customers import Customer
from kpis.insights.anomaly import hour_of_week, robust_score
from kpis.insights.forecast import FORECASTS, forecast_kpi
from kpis.insights.risk import AT_RISK_POINTS, at_risk, breakdown, score
from kpis.insights.series import ANOMALY_SERIES, Columns, hourly_columns, merge_columns
from kpis.insights.targets import Targets
from kpis.partition import PartitionState
from kpis.timebase import HOUR_MS
from streams.events import InvalidEvent, format_time_ms, parse_time_ms

log = logging.getLogger("crm-kpi.insights")

SERIES_HOURS = 32 * 24  # inside the 33 days of hour buckets
INSIGHTS_SECONDS = 60.0
GAUGE_HORIZON = "24h"  # the horizon of crm_kpi_forecast
MAX_HORIZON_HOURS = 168
MAX_AT_RISK = 1000
ALL_TENANTS = "*"
HORIZON = re.compile(r"^([1-9][0-9]{0,3})([hd])$")


def last_hour(at_ms: int) -> int:
    """The index of the last whole hour at or before `at`."""
    return at_ms // HOUR_MS - 1


# -- this worker's part of the partials ------------------------------------------------------


def fill_partials(partials: Partials, query: Mapping[str, str], at_ms: int,
                  events: Iterable[PartitionState], customers: Iterable[PartitionState]) -> None:
    """Add the insight parts a query asks for: `series=<fields>&series_hours=N` (for `tenant`,
    or every tenant with `tenant=*`) and `at_risk=<limit>` (for `tenant`)."""
    tenant = query.get("tenant", "default")
    customers = list(customers)
    if query.get("series"):
        tenants = {key[0] for key in partials.sums_30d} if tenant == ALL_TENANTS else {tenant}
        keys = [(t, name) for t in sorted(tenants) for name in query["series"].split(",")]
        hours = int(query.get("series_hours", SERIES_HOURS))
        for state in (*events, *customers):
            merge_columns(partials.series, hourly_columns(state.buckets, keys, last_hour(at_ms), hours))
    if query.get("at_risk"):
        partials.at_risk = riskiest(customers, tenant, at_ms, int(query["at_risk"]))


def riskiest(states: Iterable[PartitionState], tenant: str, at_ms: int, limit: int) -> list[dict[str, Any]]:
    """The `limit` active customers of `tenant` with the highest non-zero risk at `at`."""
    prefix = f"{Customer.kind}|{tenant}|"
    scored = []
    for state in states:
        for key, record in state.entities.items():
            if not key.startswith(prefix) or not isinstance(record.entity, Customer):
                continue
            risk = record.entity.risk_at(at_ms)
            if risk is not None and score(risk[0]) > 0:
                scored.append(_entry(key.removeprefix(prefix), *risk))
    return heapq.nsmallest(limit, scored, key=_rank)


def _entry(customer_id: str, counts: list[int], plan: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "score": score(counts), "at_risk": at_risk(counts),
            "plan": plan, "factors": breakdown(counts)}


def _rank(entry: Mapping[str, Any]) -> tuple[float, str]:
    return -entry["score"], entry["customer_id"]


# -- API ----------------------------------------------------------------------------------------


def _common(query: Mapping[str, str], now_ms: int) -> tuple[str, int]:
    try:
        at_ms = parse_time_ms(query["at"], "at") if "at" in query else now_ms
    except InvalidEvent as exc:
        raise BadQuery("at", exc.problem) from None
    return query.get("tenant", "default"), at_ms


def _horizon_hours(text: str) -> int:
    match = HORIZON.match(text)
    hours = 0 if match is None else int(match[1]) * (24 if match[2] == "d" else 1)
    if not 1 <= hours <= MAX_HORIZON_HOURS:
        raise BadQuery("horizon", f"must be whole hours or days up to 7d, e.g. 24h or 3d, got {text!r}")
    return hours


async def forecast_response(query: Mapping[str, str], now_ms: int, gather: Gather) -> web.Response:
    """Answer `GET /api/forecast?kpi=...&horizon=24h[&tenant=][&at=]`."""
    try:
        tenant, at_ms = _common(query, now_ms)
        spec = FORECASTS.get(query.get("kpi", ""))
        if spec is None:
            raise BadQuery("kpi", f"must be one of {', '.join(FORECASTS)}")
        horizon_text = query.get("horizon", GAUGE_HORIZON)
        horizon = _horizon_hours(horizon_text)
    except BadQuery as exc:
        return problem(400, "Bad query parameter", str(exc), field=exc.name)
    try:
        partials = await gather(series_query(at_ms, tenant, spec.fields))
    except ClusterIncomplete as exc:
        return problem(503, "Workers are rebalancing", str(exc))
    value, result, history = await asyncio.to_thread(
        forecast_kpi, spec, partials.series, tenant, SERIES_HOURS, horizon)
    start = (last_hour(at_ms) + 1) * HOUR_MS
    return json_response({
        "tenant": tenant, "kpi": spec.kpi, "horizon": horizon_text, "as_of": format_time_ms(at_ms),
        "from": format_time_ms(start), "value": value, "method": result.method,
        "season_hours": result.season, "history_hours": history, "backtest_mae": result.backtest_mae,
        "points": [{"at": format_time_ms(start + (i + 1) * HOUR_MS), "value": point}
                   for i, point in enumerate(result.points)],
    })


async def at_risk_response(query: Mapping[str, str], now_ms: int, gather: Gather) -> web.Response:
    """Answer `GET /api/customers/at-risk?limit=20[&tenant=][&at=]`."""
    try:
        tenant, at_ms = _common(query, now_ms)
        limit_text = query.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_AT_RISK:
            raise BadQuery("limit", f"must be a whole number from 1 to {MAX_AT_RISK}")
    except BadQuery as exc:
        return problem(400, "Bad query parameter", str(exc), field=exc.name)
    limit = int(limit_text)
    try:
        partials = await gather({"window": "1h", "at": format_time_ms(at_ms), "tenant": tenant,
                                 "at_risk": str(limit)})
    except ClusterIncomplete as exc:
        return problem(503, "Workers are rebalancing", str(exc))
    return json_response({"tenant": tenant, "as_of": format_time_ms(at_ms), "threshold": AT_RISK_POINTS,
                          "customers": sorted(partials.at_risk, key=_rank)[:limit]})


def series_query(at_ms: int, tenant: str, fields: Iterable[str]) -> dict[str, str]:
    """The partials query for the hourly columns of `fields` up to the last whole hour at `at`."""
    return {"window": "1h", "at": format_time_ms(at_ms), "tenant": tenant,
            "series": ",".join(sorted(set(fields))), "series_hours": str(SERIES_HOURS)}


# -- cluster-wide scores, refreshed on one worker -----------------------------------------------

Sample = tuple[tuple[str, ...], float]


class InsightsCache:
    """The latest forecasts and anomaly scores of every tenant (on the exporting worker)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.forecasts: list[Sample] = []  # (kpi, horizon, tenant)
        self.anomalies: list[Sample] = []  # (kpi, tenant)

    def clear(self) -> None:
        """Export nothing (another worker exports the scores)."""
        self.forecasts, self.anomalies = [], []

    async def refresh(self, gather: Gather, now_ms: int) -> None:
        """Gather every tenant's series and recompute; keeps the old scores while rebalancing."""
        fields = [name for s in ANOMALY_SERIES for name in s.fields]
        fields += [name for spec in FORECASTS.values() for name in spec.fields]
        try:
            partials = await gather(series_query(now_ms, ALL_TENANTS, fields))
        except ClusterIncomplete as exc:
            log.info("insights not refreshed: %s", exc)
            return
        self.forecasts, self.anomalies = await asyncio.to_thread(self.compute, partials.series, now_ms)

    def compute(self, columns: Columns, now_ms: int) -> tuple[list[Sample], list[Sample]]:
        """Forecast and anomaly samples of every tenant in the columns."""
        last = last_hour(now_ms)
        weeks = [hour_of_week(h, self.zone) for h in range(last - SERIES_HOURS + 1, last + 1)]
        horizon = _horizon_hours(GAUGE_HORIZON)
        forecasts: list[Sample] = []
        anomalies: list[Sample] = []
        for tenant in sorted({t for t, _ in columns}):
            for spec in FORECASTS.values():
                value, _, history = forecast_kpi(spec, columns, tenant, SERIES_HOURS, horizon)
                if value is not None and history:
                    forecasts.append(((spec.kpi, GAUGE_HORIZON, tenant), value))
            for series in ANOMALY_SERIES:
                anomaly = robust_score(series.values(columns, tenant, SERIES_HOURS), weeks)
                if anomaly is not None:
                    anomalies.append(((series.kpi, tenant), anomaly))
        return forecasts, anomalies


class InsightsCollector(Collector):
    """`crm_kpi_target`, `crm_kpi_benchmark`, `crm_kpi_customers_at_risk` (this worker's
    partitions, additive), and `crm_kpi_forecast`, `crm_kpi_anomaly_score` from the cache."""

    def __init__(self, targets: Targets, local_totals: Callable[[], dict[SumKey, int]],
                 cache: InsightsCache) -> None:
        self.targets = targets
        self.local_totals = local_totals
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        """Build the families (called on each scrape)."""
        totals = self.local_totals()
        families = {name: GaugeMetricFamily(f"crm_kpi_{name}", meaning, labels=["kpi", "window", "tenant"])
                    for name, meaning in (("target", "Configured target of a KPI"),
                                          ("benchmark", "Configured industry benchmark of a KPI"))}
        for name, kpi, window, tenant, value in self.targets.samples({"default", *(k[0] for k in totals)}):
            families[name].add_metric([kpi, window, tenant], value)
        yield from families.values()
        at_risk_family = GaugeMetricFamily(
            "crm_kpi_customers_at_risk", f"Active customers with a churn risk score >= {AT_RISK_POINTS}",
            labels=["tenant", "plan"])
        for (tenant, name, dimension, plan), value in sorted(totals.items()):
            if name == "at_risk_customers@at" and dimension == "plan":
                at_risk_family.add_metric([tenant, plan], value)
        yield at_risk_family
        yield _family("crm_kpi_forecast", "Forecast of a KPI over the horizon (count KPIs: the sum; "
                      "mrr: at its end; churn_rate: of the customers active now)",
                      ["kpi", "horizon", "tenant"], self.cache.forecasts)
        yield _family("crm_kpi_anomaly_score", "Robust z-score of a KPI's last whole hour against the "
                      "same hour of earlier weeks", ["kpi", "tenant"], self.cache.anomalies)


def _family(name: str, meaning: str, labels: list[str], samples: list[Sample]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, meaning, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
