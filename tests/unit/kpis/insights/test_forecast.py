"""Forecasts on generated histories with a planted seasonal pattern."""

from __future__ import annotations

import random
import statistics

import pytest

from kpis.insights.forecast import DAY, FORECASTS, WEEK, forecast, forecast_kpi, holt_winters, mase
from kpis.insights.series import Columns
from kpis.partition import window_field
from tests.unit.kpis.insights.planted import backtest, planted_history, rate

HISTORY = 32 * DAY


@pytest.mark.parametrize("horizon", [DAY, WEEK])
def test_a_planted_seasonal_pattern_is_forecast_better_than_seasonal_naive(horizon: int) -> None:
    scores = [backtest(planted_history(HISTORY, seed), horizon) for seed in range(6)]
    mean_mase = {name: statistics.fmean(s[name][1] for s in scores) for name in scores[0]}
    assert mean_mase["forecast"] < 0.9 * mean_mase["seasonal-naive (day)"]
    assert mean_mase["forecast"] < 0.9 * mean_mase["seasonal-naive (week)"]


def test_holt_winters_recovers_a_noiseless_pattern() -> None:
    y = [rate(hour) for hour in range(3 * WEEK)]
    points, _ = holt_winters(y, WEEK, DAY)
    assert points == pytest.approx([rate(hour) for hour in range(3 * WEEK, 3 * WEEK + DAY)], abs=0.05)


def test_short_histories_fall_back_to_seasonal_naive_or_naive() -> None:
    three_days = planted_history(3 * DAY)
    result = forecast(three_days, DAY)
    assert (result.method, result.season) in {("seasonal-naive", DAY), ("holt-winters", DAY)}
    assert forecast([5.0, 6.0], DAY).method == "naive"
    assert forecast([5.0, 6.0], 3).points == [6.0, 6.0, 6.0]
    assert forecast([], 2).points == [0.0, 0.0]


def test_sparse_counts_are_forecast_at_their_mean_not_at_zero() -> None:
    rng = random.Random(1)
    churn_like = [1.0 if rng.random() < 0.05 else 0.0 for _ in range(HISTORY)]
    assert 0.6 < sum(forecast(churn_like, DAY).points) < 2.0  # 24 x 0.05 = 1.2 expected


def test_count_forecasts_are_never_negative() -> None:
    falling = [float(max(0, 100 - hour)) for hour in range(2 * DAY)]
    assert min(forecast(falling, DAY).points) >= 0.0


def test_mase_scales_by_the_in_sample_seasonal_naive_error() -> None:
    train = [0.0, 2.0] * DAY
    assert mase([1.0, 1.0], [0.0, 0.0], train, season=1) == 0.5
    assert mase([1.0], [1.0], [3.0] * 30) is None


def columns(tenant: str, **series: list[int]) -> Columns:
    """Columns with no opening value."""
    return {(tenant, name): [0, *values] for name, values in series.items()}


def test_count_kpis_forecast_the_sum_over_the_horizon_from_the_first_active_hour() -> None:
    leads = [0] * 100 + [3] * (HISTORY - 100)
    value, result, history = forecast_kpi(FORECASTS["leads_created"], columns("t", leads_created=leads),
                                          "t", HISTORY, DAY)
    assert history == HISTORY - 100
    assert value == pytest.approx(3 * DAY)
    assert len(result.points) == DAY


def test_churn_is_forecast_churn_over_the_customers_active_now() -> None:
    # One churn at the start of each day: the cumulative field `churned_customers~1h` counts it
    # (+1) during its hour and drops it (-1) at the next; 400 customers active throughout.
    churned = [{0: 1, 1: -1}.get(hour % 24, 0) for hour in range(HISTORY)]
    active = [400] + [0] * (HISTORY - 1)
    cols = columns("t", active_customers=active, **{window_field("churned_customers", "1h"): churned})
    value, _, _ = forecast_kpi(FORECASTS["churn_rate"], cols, "t", HISTORY, DAY)
    assert value == pytest.approx(1 / 400, abs=0.3 / 400)


def test_mrr_is_forecast_at_the_end_of_the_horizon() -> None:
    cols = {("t", "mrr_micro"): [5_000_000_000] + [0] * HISTORY}  # a flat 5000 from before the range
    value, result, _ = forecast_kpi(FORECASTS["mrr"], cols, "t", HISTORY, DAY)
    assert value == pytest.approx(5000.0)
    assert result.points[-1] == value
