"""Bucket reads: point-in-time values at a T inside an hour use minute buckets."""

from __future__ import annotations

from kpis.buckets import BucketStore
from kpis.timebase import HOUR_MS, MINUTE_MS

NOW = 1_795_000_000_000 // HOUR_MS * HOUR_MS + 40 * MINUTE_MS


def test_cumulative_value_inside_the_current_hour_has_minute_precision() -> None:
    store = BucketStore(frozenset({"open_tickets"}))
    hour = NOW // HOUR_MS * HOUR_MS
    for pos, (minute, delta) in enumerate([(-90, 1), (5, 1), (20, 1), (35, -1)]):
        store.add((hour + minute * MINUTE_MS, "default", "open_tickets", (), delta), pos, NOW)
    values = [store.cumulative_sums(hour + m * MINUTE_MS, NOW).get(("default", "open_tickets", "", ""))
              for m in (0, 10, 30, 40)]
    assert values == [1, 2, 3, 2]


def test_cumulative_value_long_ago_reads_whole_hours() -> None:
    """Minute buckets are gone: the hour holding T counts whole (error under an hour)."""
    store = BucketStore(frozenset({"mrr_micro"}))
    hour = (NOW - 10 * 24 * HOUR_MS) // HOUR_MS * HOUR_MS
    store.add((hour + 45 * MINUTE_MS, "default", "mrr_micro", (), 7), 0, NOW)
    values = [store.cumulative_sums(hour + m * MINUTE_MS, NOW) for m in (0, 30, 60)]
    assert values == [{}, {("default", "mrr_micro", "", ""): 7}, {("default", "mrr_micro", "", ""): 7}]
