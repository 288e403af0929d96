"""Generated hourly histories with a planted seasonal pattern, and the forecast backtest.

`python3 -m tests.unit.kpis.insights.planted` prints the table of docs/insights.md.
"""

from __future__ import annotations

import math
import random
import statistics

from kpis.insights.forecast import DAY, WEEK, forecast, mape, mase, seasonal_naive

# Leads per hour at the weekday peak; quieter nights, lunch dip, quiet weekends.
PEAK = 40.0
WEEKDAY = (1.0, 1.0, 0.95, 0.9, 0.8, 0.35, 0.25)  # Monday first


def rate(hour: int, peak: float = PEAK) -> float:
    """The planted expected count of hour index `hour` (hour 0 is a Monday 00:00)."""
    of_day, day = hour % DAY, (hour // DAY) % 7
    daily = 0.1 + math.exp(-(((of_day - 10.5) / 2.5) ** 2)) + 0.8 * math.exp(-(((of_day - 15) / 2) ** 2))
    return peak * WEEKDAY[day] * daily / 1.3


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (inversion; fine for the means used here)."""
    threshold, k, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        k += 1
        product *= rng.random()
    return k


def planted_history(hours: int, seed: int = 7, peak: float = PEAK) -> list[float]:
    """Hourly Poisson counts around the planted pattern."""
    rng = random.Random(seed)
    return [float(poisson(rng, rate(hour, peak))) for hour in range(hours)]


def backtest(y: list[float], horizon: int) -> dict[str, tuple[float | None, float | None]]:
    """(MAPE %, MASE) on the last `horizon` hours, for the forecast and both seasonal-naive
    baselines, each trained on what precedes them."""
    train, held = y[:-horizon], y[-horizon:]
    predictions = {
        "forecast": forecast(train, horizon).points,
        "seasonal-naive (day)": seasonal_naive(train, DAY, horizon),
        "seasonal-naive (week)": seasonal_naive(train, WEEK, horizon),
    }
    return {name: (mape(held, points), mase(held, points, train)) for name, points in predictions.items()}


def table(seeds: range = range(20), days: int = 32) -> str:
    """The markdown table of docs/insights.md: mean MAPE and MASE over `seeds` histories."""
    rows = ["| peak / hour | horizon | method | MAPE % | MASE |", "|---|---|---|---|---|"]
    for peak in (PEAK, 5 * PEAK):
        for horizon in (DAY, WEEK):
            runs = [backtest(planted_history(days * DAY, seed, peak), horizon) for seed in seeds]
            for name in runs[0]:
                mape_mean = statistics.fmean(run[name][0] or 0.0 for run in runs)
                mase_mean = statistics.fmean(run[name][1] or 0.0 for run in runs)
                rows.append(f"| {peak:.0f} | {horizon}h | {name} | {mape_mean:.1f} | {mase_mean:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
