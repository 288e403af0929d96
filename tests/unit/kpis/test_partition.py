"""Dedup of entity-less events: a duplicate is never counted twice, whenever it arrives."""

from __future__ import annotations

from kpis.config import KpiConfig
from kpis.families import families_of
from kpis.partition import PartitionState, position
from kpis.timebase import DAY_MS, HOUR_MS, HOUR_RETENTION_MS
from streams.events import Event, parse_time_ms

MIDNIGHT = parse_time_ms("2026-11-21T00:00:00Z")


def visit(event_id: str, time_ms: int) -> Event:
    return Event(event_id, "test", "site.visit", time_ms, "default", {"channel": "web"})


def processed_after(deliveries: list[tuple[Event, int]]) -> int:
    """`events_processed` of one partition after each (event, engine clock) delivery, in order."""
    state = PartitionState(0, families_of("events"), KpiConfig())
    for offset, (event, now_ms) in enumerate(deliveries):
        state.apply(event, position(offset, 0), now_ms)
    return state.counters.processed


def test_a_duplicate_that_aged_past_the_bucket_retention_meanwhile_counts_once() -> None:
    now = MIDNIGHT + 12 * HOUR_MS
    old = visit("v1", now - HOUR_RETENTION_MS + 10 * 60_000)  # inside retention by 10 minutes
    assert processed_after([(old, now), (old, now + HOUR_MS)]) == 1


def test_a_duplicate_of_an_old_event_arriving_the_next_day_counts_once() -> None:
    old = visit("v1", MIDNIGHT - 40 * DAY_MS)  # older than every window
    assert processed_after([(old, MIDNIGHT - 60_000), (old, MIDNIGHT + 60_000)]) == 1


def test_distinct_events_of_every_age_all_count() -> None:
    now = MIDNIGHT + 12 * HOUR_MS
    deliveries = [(visit("fresh", now - HOUR_MS), now),
                  (visit("edge", now - HOUR_RETENTION_MS + 60_000), now),
                  (visit("old", now - 40 * DAY_MS), now),
                  (visit("old-next-day", now - 40 * DAY_MS), now + DAY_MS)]
    assert processed_after(deliveries) == 4
