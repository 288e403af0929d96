"""The engine against the independent oracle, on generated histories (no broker: fast).

Histories carry duplicates, shuffled and multi-day late deliveries. The engine's record path
(applier, keeper, partition state, catalogue) must give exactly the oracle's values for every
KPI it implements, every window and every slice; quantiles within 1%.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kpis.catalogue import BY_ID, DIMENSIONS
from kpis.config import KpiConfig
from kpis.timebase import HOUR_MS, WINDOWS
from tests.oracle.history import FX_RATES, generate_history
from tests.oracle.kpis import compute_kpis, events_processed
from tests.support.pure_engine import PureEngine

QUANTILES = {"first_response_seconds_p50", "first_response_seconds_p90"}
CONFIG = KpiConfig(fx_rates={k: Decimal(v) for k, v in FX_RATES.items()}, gross_margin=Decimal("0.8"))


def evaluation_time() -> tuple[int, int]:
    """A whole-hour T just behind the wall clock, and the wall clock."""
    now_ms = time.time_ns() // 1_000_000
    return now_ms // HOUR_MS * HOUR_MS, now_ms


def oracle(events: list[dict], at_ms: int, window: str, by: str | None) -> dict[str, object]:
    at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return compute_kpis(events, at, window=window, by=by, fx_rates=FX_RATES, gross_margin="0.8")


def present(kpi_id: str, slices: dict) -> dict:
    """Slices that must be shown: kpis.md lets an empty slice be omitted (0 for counts and
    sums, null for ratios), so those are dropped on both sides before comparing."""
    additive = BY_ID[kpi_id].unit in ("count", "currency")
    return {k: v for k, v in slices.items() if v is not None and not (additive and v == 0)}


def assert_same(engine: dict, expected: dict, where: str) -> None:
    for kpi_id in BY_ID:
        got, want = engine[kpi_id], expected[kpi_id]
        if isinstance(want, dict) and isinstance(got, dict):
            got, want = present(kpi_id, got), present(kpi_id, want)
        if kpi_id in QUANTILES:
            assert _close(got, want), f"{where} {kpi_id}: engine {got} oracle {want}"
        else:
            assert got == want, f"{where} {kpi_id}: engine {got!r} oracle {want!r}"


def _close(got: object, want: object) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            _close(got[k], want[k]) for k in want)
    if want is None or got is None:
        return got is want
    return math.isclose(got, want, rel_tol=0.01)


@pytest.fixture(scope="module")
def history() -> tuple[list[dict], int, int]:
    at_ms, now_ms = evaluation_time()
    end = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return generate_history(7, end=end, n_events=20_000), at_ms, now_ms


@pytest.fixture(scope="module")
def engine(history: tuple[list[dict], int, int]) -> PureEngine:
    events, _, now_ms = history
    engine = PureEngine(CONFIG)
    engine.publish(events)
    engine.run(now_ms)
    return engine


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("by", [None, *DIMENSIONS])
def test_every_kpi_equals_the_oracle(history, engine, window: str, by: str | None) -> None:
    events, at_ms, now_ms = history
    assert_same(engine.kpis(window, at_ms, now_ms, by=by), oracle(events, at_ms, window, by),
                f"{window} by={by}")


def test_events_processed_counts_each_distinct_event_once(history, engine) -> None:
    events, _, _ = history
    counted = sum(engine.events.keeper.state(p).counters.processed for p in range(engine.partitions))
    assert counted == events_processed(events)


def test_a_crash_and_redelivery_changes_nothing(history, engine) -> None:
    """Lose state at a random changelog point, redeliver from earlier offsets: same KPIs."""
    events, at_ms, now_ms = history
    rng = random.Random(3)
    crashed = PureEngine(CONFIG)
    crashed.publish(events)
    half = {p: len(log) // 2 for p, log in crashed.events.log.items()}
    for partition, stop in half.items():
        crashed.events.position[partition] = 0
        for offset in range(stop):
            crashed.events.applier.apply(partition, offset, crashed.events.log[partition][offset], now_ms)
            crashed.events.write([partition])
            crashed._send_internal(crashed.events.keeper.state(partition).take_outbox())
        crashed.events.position[partition] = stop
    written = {p: len(records) for p, records in crashed.events.table.changelog.items()}
    crashed.crash(keep_changelog={p: rng.randint(n // 2, n) for p, n in written.items()},
                  rewind_to={p: rng.randint(0, stop // 2) for p, stop in half.items()})
    crashed.run(now_ms)
    for window in WINDOWS:
        assert crashed.kpis(window, at_ms, now_ms) == engine.kpis(window, at_ms, now_ms)
    processed = [s.counters.processed for s in (crashed.events.keeper.state(p) for p in range(4))]
    assert sum(processed) == events_processed(events)
