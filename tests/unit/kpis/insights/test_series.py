"""Hourly series read from the buckets equal the engine's KPIs evaluated at each whole hour."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agents.exporters.cluster import Partials
from agents.exporters.insights import fill_partials, last_hour
from kpis.buckets import BucketStore
from kpis.config import KpiConfig
from kpis.insights.series import ANOMALY_SERIES, Part, hourly_columns
from kpis.timebase import HOUR_MS
from tests.oracle.history import FX_RATES, generate_history
from tests.support.pure_engine import PureEngine

HOURS = 48
WINDOW = {"churn_rate": "24h", "net_new_mrr": "24h"}  # else 1h


def test_columns_hold_hourly_sums_and_the_opening_of_cumulative_fields() -> None:
    store = BucketStore(frozenset({"open"}))
    now = 1000 * HOUR_MS
    for hour, name, value in [(990, "open", 5), (997, "open", 1), (998, "open", -2), (998, "leads", 3),
                              (990, "leads", 7), (999, "leads", 4)]:
        store.add((hour * HOUR_MS + 1, "t", name, (), value), hour, now)
    columns = hourly_columns(store, [("t", "open"), ("t", "leads"), ("u", "leads")], 998, 2)
    assert columns == {("t", "open"): [5, 1, -2], ("t", "leads"): [0, 0, 3], ("u", "leads"): [0, 0, 0]}
    assert Part("open", level=True).values(columns[("t", "open")]) == [6, 4]
    assert Part("open", level=True, lag=1).values(columns[("t", "open")]) == [5, 6]
    assert Part("leads", hours=2).values([0, 1, 2, 3]) == [None, 3, 5]


@pytest.fixture(scope="module")
def engine_at() -> tuple[PureEngine, int, int]:
    now_ms = time.time_ns() // 1_000_000
    at_ms = now_ms // HOUR_MS * HOUR_MS
    events = generate_history(11, end=datetime.fromtimestamp(at_ms / 1000, tz=UTC), days=10, n_events=15_000)
    engine = PureEngine(KpiConfig(fx_rates={k: Decimal(v) for k, v in FX_RATES.items()}))
    engine.publish(events)
    engine.run(now_ms)
    return engine, at_ms, now_ms


def test_anomaly_series_equal_the_kpis_at_each_whole_hour(engine_at: tuple[PureEngine, int, int]) -> None:
    engine, at_ms, now_ms = engine_at
    partials = Partials()
    fields = sorted({name for series in ANOMALY_SERIES for name in series.fields})
    query = {"tenant": "default", "series": ",".join(fields), "series_hours": str(HOURS)}
    states = [stage.keeper.state(p) for stage in (engine.events, engine.customers) for p in range(4)]
    fill_partials(partials, query, at_ms, states[:4], states[4:])
    first = last_hour(at_ms) - HOURS + 1
    checked = 0
    for series in ANOMALY_SERIES:
        values = series.values(partials.series, "default", HOURS)
        for i in range(HOURS - 24, HOURS, 5):
            end = (first + i + 1) * HOUR_MS
            assert values[i] == engine.kpis(WINDOW.get(series.kpi, "1h"), end, now_ms)[series.kpi], series.kpi
            checked += values[i] is not None and values[i] != 0
    assert checked > 20
