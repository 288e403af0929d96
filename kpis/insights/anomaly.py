"""Robust anomaly scores of hourly KPI series against their own seasonal baseline.

The score of an hour is `(x - baseline) / scale`: the baseline is the median of the same
hour of the week in earlier weeks (the same hour of the day while fewer than MIN_PEERS earlier
weeks are known), and the scale is 1.4826 x the median absolute deviation of the earlier values
of the same hour of the day from their own baselines (each left out of its own), so that a
normal series scores like a z-score and one outlier moves neither. "Unusual for a Tuesday
10:00" is a score above ALERT_SCORE.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from kpis.timebase import HOUR_MS

MIN_PEERS = 3  # earlier values of the same hour-of-week (else hour-of-day) for a baseline
MIN_SPREAD = 8  # deviations of the same hour-of-day for its own scale (else every hour's)
MAD_SCALE = 1.4826  # MAD of a normal distribution x this = its standard deviation
MEAN_AD_SCALE = 1.2533  # likewise for the mean absolute deviation (when the MAD is 0)
MAX_SCORE = 99.0
ALERT_SCORE = 4.0  # documented threshold of the anomaly alerts


def hour_of_week(hour: int, zone: ZoneInfo) -> int:
    """0 (Monday 00:00 local) .. 167 of the hour with index `hour` (hours since the epoch)."""
    local = datetime.fromtimestamp(hour * HOUR_MS / 1000, zone)
    return local.weekday() * 24 + local.hour


def robust_score(values: Sequence[float | None], hours: Sequence[int]) -> float | None:
    """The score of the last value against the earlier ones; `hours` holds each value's
    hour-of-week. None when the last value or its baseline is unknown."""
    *history, last = values
    if last is None:
        return None
    for period in (168, 24):
        groups: defaultdict[int, list[float]] = defaultdict(list)
        for value, how in zip(history, hours, strict=False):
            if value is not None:
                groups[how % period].append(value)
        if len(groups[hours[-1] % period]) >= MIN_PEERS:
            break
    else:
        return None
    spread = _deviations(groups, hours[-1] % 24)
    scale = MAD_SCALE * statistics.median(spread) or MEAN_AD_SCALE * statistics.fmean(spread)
    distance = last - statistics.median(groups[hours[-1] % period])
    if not scale:
        return 0.0 if not distance else (MAX_SCORE if distance > 0 else -MAX_SCORE)
    return max(-MAX_SCORE, min(MAX_SCORE, distance / scale))


def _deviations(groups: dict[int, list[float]], hour_of_day: int) -> list[float]:
    """|value - median of the other values of its group|, as the scored value deviates from a
    baseline it is not part of: those of `hour_of_day` when there are enough, else all."""
    same_hour: list[float] = []
    every: list[float] = []
    for key, group in groups.items():
        for i, value in enumerate(group):
            if len(group) > 1:
                deviation = abs(value - statistics.median(group[:i] + group[i + 1:]))
                every.append(deviation)
                if key % 24 == hour_of_day:
                    same_hour.append(deviation)
    return same_hour if len(same_hour) >= MIN_SPREAD else every
