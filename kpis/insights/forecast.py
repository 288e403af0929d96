"""Short-horizon forecasts of hourly series: additive Holt-Winters with a seasonal-naive fallback.

Holt-Winters (additive season, damped additive trend) is fitted by a small grid search on the
one-step errors. Which model forecasts is chosen on held-out history: every candidate (Holt-
Winters with a weekly or a daily season, seasonal naive with either season, mean, naive) forecasts
the last week (at least `horizon` hours, at most a quarter of the history) from what precedes
it, and the one with the smallest squared error (so a mean, not a median, which matters for
sparse counts whose forecast is summed) is refitted on the whole series. Short histories leave
only the seasonal-naive, mean (of the last week) or naive candidates, which is the fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from kpis.formulas import MICRO
from kpis.insights.series import KpiSeries, Part, SeriesKey, flow
from kpis.partition import window_field

WEEK, DAY = 168, 24
SEASONS = (WEEK, DAY)
ALPHAS = (0.03, 0.1, 0.2, 0.35, 0.5)
BETAS = (0.0, 0.02)
GAMMAS = (0.05, 0.15, 0.3)
DAMPING = 0.98


@dataclass(frozen=True)
class Forecast:
    """Hourly forecast points and how they were made."""

    method: str  # holt-winters | seasonal-naive | mean | naive
    season: int  # hours; 0 for mean and naive
    points: list[float]
    backtest_mae: float | None  # of the chosen method on the held-out end of the history


def holt_winters(y: Sequence[float], season: int, horizon: int,
                 params: tuple[float, float, float] | None = None) -> tuple[list[float], float]:
    """Points for `horizon` steps after `y`, and the sum of squared one-step errors after the
    first season; the parameters are grid-searched when not given."""
    if params is None:
        params = min(product(ALPHAS, BETAS, GAMMAS), key=lambda p: _run(y, season, *p)[2])
    level, trend, error, seasonal = _run(y, season, *params)
    points, damped = [], 0.0
    for h in range(1, horizon + 1):
        damped += DAMPING**h
        points.append(level + damped * trend + seasonal[(len(y) + h - 1) % season])
    return points, error


def _run(y: Sequence[float], m: int, alpha: float, beta: float,
         gamma: float) -> tuple[float, float, float, list[float]]:
    """Smooth `y`: final level, trend, one-step squared error (after a season) and seasonals."""
    cycles = min(len(y) // m, 4)
    means = [sum(y[k * m:(k + 1) * m]) / m for k in range(cycles)]
    level = means[0]
    trend = (means[1] - means[0]) / m if cycles > 1 else 0.0
    seasonal = [sum(y[k * m + i] - means[k] for k in range(cycles)) / cycles for i in range(m)]
    error = 0.0
    for t, value in enumerate(y):
        s = seasonal[t % m]
        base = level + DAMPING * trend
        if t >= m:
            error += (value - base - s) ** 2
        new_level = alpha * (value - s) + (1 - alpha) * base
        trend = beta * (new_level - level) + (1 - beta) * DAMPING * trend
        seasonal[t % m] = gamma * (value - new_level) + (1 - gamma) * s
        level = new_level
    return level, trend, error, seasonal


def seasonal_naive(y: Sequence[float], season: int, horizon: int) -> list[float]:
    """Each hour as it was one season earlier (the last value when `season` is 0)."""
    if season == 0:
        return [y[-1]] * horizon
    return [y[len(y) - season + (h % season)] for h in range(horizon)]


def _candidates(n: int, horizon: int) -> list[tuple[str, int]]:
    """Methods that have enough history to be trained on `n - horizon` hours."""
    train = n - horizon
    out = [("holt-winters", m) for m in SEASONS if train >= 2 * m]
    out += [("seasonal-naive", m) for m in SEASONS if train >= m]
    return [*out, ("mean", 0), ("naive", 0)]


def _predict(method: str, y: Sequence[float], season: int, horizon: int) -> list[float]:
    if method == "holt-winters":
        return holt_winters(y, season, horizon)[0]
    if method == "mean":
        return [sum(y[-WEEK:]) / len(y[-WEEK:])] * horizon
    return seasonal_naive(y, season, horizon)


def forecast(y: Sequence[float], horizon: int) -> Forecast:
    """The next `horizon` hours of `y`, by the candidate that best forecast its held-out end."""
    if not y:
        return Forecast("naive", 0, [0.0] * horizon, None)
    best: tuple[float, float | None, str, int] = (math.inf, None, "naive", 0)
    tested = max(horizon, min(WEEK, len(y) // 4))
    if len(y) > tested:
        train, held = y[:-tested], y[-tested:]
        for method, season in _candidates(len(y), tested):
            predicted = _predict(method, train, season, tested)
            squared = sum((a - p) ** 2 for a, p in zip(held, predicted, strict=True))
            if squared < best[0]:
                best = (squared, mean_absolute_error(held, predicted), method, season)
    _, backtest_mae, method, season = best
    points = _predict(method, y, season, horizon)
    if min(y) >= 0:
        points = [max(point, 0.0) for point in points]
    return Forecast(method, season, points, backtest_mae)


def mean_absolute_error(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean of |actual - predicted|."""
    return sum(abs(a - p) for a, p in zip(actual, predicted, strict=True)) / len(actual)


def mape(actual: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Mean absolute percentage error over the non-zero actuals, in percent."""
    pairs = [(a, p) for a, p in zip(actual, predicted, strict=True) if a]
    return 100 * sum(abs((a - p) / a) for a, p in pairs) / len(pairs) if pairs else None


def mase(actual: Sequence[float], predicted: Sequence[float], train: Sequence[float],
         season: int = DAY) -> float | None:
    """Mean absolute scaled error: the error over the in-sample seasonal-naive error."""
    scale = mean_absolute_error(train[season:], train[:-season]) if len(train) > season else 0.0
    return mean_absolute_error(actual, predicted) / scale if scale else None


# -- KPIs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastSpec:
    """A forecast KPI: the hourly series forecast, and how its points make the KPI's value.

    `sum`: the KPI counted over the horizon; `last`: a point-in-time KPI at T + horizon. With
    `per`, the sum is divided by `per`'s latest value (churn over the horizon of the
    customers active now).
    """

    kpi: str
    series: KpiSeries
    combine: str  # sum | last
    per: KpiSeries | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """The bucket fields the forecast reads."""
        return self.series.fields + (self.per.fields if self.per else ())


HOURLY_CHURN = window_field("churned_customers", "1h")  # at an hour's end: churned in that hour
FORECASTS: dict[str, ForecastSpec] = {spec.kpi: spec for spec in (
    ForecastSpec("mrr", KpiSeries("mrr", Part("mrr_micro", level=True), divisor=MICRO), "last"),
    ForecastSpec("leads_created", flow("leads_created", "leads_created"), "sum"),
    ForecastSpec("tickets_created", flow("tickets_created", "tickets_created"), "sum"),
    ForecastSpec("churn_rate", KpiSeries("churned", Part(HOURLY_CHURN, level=True)), "sum",
                 per=KpiSeries("active", Part("active_customers", level=True))),
)}


def forecast_kpi(spec: ForecastSpec, columns: Mapping[SeriesKey, list[int]], tenant: str,
                 hours: int, horizon: int) -> tuple[float | None, Forecast, int]:
    """The KPI's forecast value over `horizon` hours, the hourly forecast behind it, and the
    hours of history used (from the first non-zero hour)."""
    values = [v or 0.0 for v in spec.series.values(columns, tenant, hours)]
    start = next((i for i, v in enumerate(values) if v), len(values))
    result = forecast(values[start:], horizon)
    if spec.combine == "last":
        return (result.points[-1] if values[start:] else None), result, len(values) - start
    total = sum(result.points)
    if spec.per is None:
        return total, result, len(values) - start
    per = spec.per.values(columns, tenant, hours)[-1]
    return (total / per if per else None), result, len(values) - start
