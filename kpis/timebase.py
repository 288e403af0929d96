"""Event-time windows evaluated from tumbling buckets.

Rolling windows `1h`, `24h`, `7d`, `30d` cover `(T - W, T]`; `mtd` covers
`[start of T's month in the configured zone, T]`. A window is read as the buckets with index
`ceil(lower / resolution) .. (T - 1) // resolution`: at a T on a whole hour that is exactly the
window (up to events on the boundary instant itself); elsewhere the error is below one bucket.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from streams.events import EPOCH

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

WINDOWS = ("1h", "24h", "7d", "30d", "mtd")
ROLLING_MS = {"1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
FINE_WINDOWS = frozenset({"1h", "24h"})

# How long each resolution is kept, by event time behind the wall clock.
MINUTE_RETENTION_MS = 26 * HOUR_MS
HOUR_RETENTION_MS = 33 * DAY_MS


def month_start_ms(at_ms: int, zone: ZoneInfo) -> int:
    """The first instant of the calendar month containing `at_ms`, in `zone`."""
    local = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    return (start - EPOCH) // timedelta(milliseconds=1)


def window_lower_ms(window: str, at_ms: int, zone: ZoneInfo) -> int:
    """The lower bound of `window` at `at_ms` (`T - W`, or the month start for `mtd`)."""
    if window == "mtd":
        return month_start_ms(at_ms, zone)
    try:
        return at_ms - ROLLING_MS[window]
    except KeyError:
        raise ValueError(f"unknown window {window!r}: expected one of {', '.join(WINDOWS)}") from None


def bucket_range(lower_ms: int, at_ms: int, resolution_ms: int) -> range:
    """Indexes of the buckets that make up `(lower, at]` at `resolution_ms`."""
    first = -(-lower_ms // resolution_ms)
    last = (at_ms - 1) // resolution_ms
    return range(first, last + 1)
