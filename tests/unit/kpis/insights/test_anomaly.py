"""Anomaly scores on generated histories: a planted anomaly is flagged, a quiet series is not."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kpis.insights.anomaly import ALERT_SCORE, MAX_SCORE, hour_of_week, robust_score
from kpis.timebase import HOUR_MS
from tests.unit.kpis.insights.planted import planted_history, rate

HOURS = 32 * 24
WEEK_HOURS = [hour % 168 for hour in range(HOURS)]  # planted hour 0 is a Monday 00:00


def scores(values: list[float | None], last_hours: int) -> list[float | None]:
    """The score of each of the last `last_hours` hours, from the hours before it."""
    return [robust_score(values[:end + 1], WEEK_HOURS[:end + 1]) for end in range(HOURS - last_hours, HOURS)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_quiet_series_stays_below_the_alert_score(seed: int) -> None:
    week = scores(list(planted_history(HOURS, seed)), 168)
    above = [score for score in week if score is not None and score > ALERT_SCORE]
    assert len(above) <= 1  # at most one hour a week (measured: 0.2% of hours on Poisson noise)


@pytest.mark.parametrize("hour", [HOURS - 1, HOURS - 14, HOURS - 30])
def test_a_planted_anomaly_is_flagged_at_its_hour_of_the_week(hour: int) -> None:
    values: list[float | None] = list(planted_history(HOURS, seed=4))
    normal = robust_score(values[:hour + 1], WEEK_HOURS[:hour + 1])
    values[hour] = 3 * rate(hour) + 10
    planted = robust_score(values[:hour + 1], WEEK_HOURS[:hour + 1])
    assert normal is not None and planted is not None
    assert abs(normal) < ALERT_SCORE < planted


def test_a_weekday_peak_is_not_unusual_but_the_same_count_on_sunday_is() -> None:
    values: list[float | None] = list(planted_history(HOURS, seed=5))
    tuesday_10 = next(h for h in range(HOURS - 168, HOURS) if WEEK_HOURS[h] == 24 + 10)
    sunday_10 = next(h for h in range(HOURS - 168, HOURS) if WEEK_HOURS[h] == 6 * 24 + 10)
    busy = rate(tuesday_10)
    values[tuesday_10] = values[sunday_10] = busy
    on_tuesday = robust_score(values[:tuesday_10 + 1], WEEK_HOURS[:tuesday_10 + 1])
    on_sunday = robust_score(values[:sunday_10 + 1], WEEK_HOURS[:sunday_10 + 1])
    assert on_tuesday is not None and on_sunday is not None
    assert abs(on_tuesday) < 2 < ALERT_SCORE < on_sunday


def test_unknown_values_and_short_histories_have_no_score() -> None:
    assert robust_score([1.0, 2.0, None], [0, 1, 2]) is None
    assert robust_score([1.0, 1.0, 3.0], [0, 24, 48]) is None  # two earlier peers only
    flat: list[float | None] = [2.0] * (3 * 168)
    assert robust_score(flat, WEEK_HOURS[:len(flat)]) == 0.0
    assert robust_score([*flat[:-1], 3.0], WEEK_HOURS[:len(flat)]) == MAX_SCORE


def test_hour_of_week_is_local() -> None:
    tuesday_10_utc = datetime(2026, 11, 17, 10, tzinfo=UTC)
    hour = int(tuesday_10_utc.timestamp() * 1000) // HOUR_MS
    assert hour_of_week(hour, ZoneInfo("UTC")) == 24 + 10
    assert hour_of_week(hour, ZoneInfo("America/New_York")) == 24 + 5
    assert hour_of_week(hour + 14 + 5 * 24, ZoneInfo("UTC")) == 0  # Monday 00:00 next week
