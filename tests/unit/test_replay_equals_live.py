"""A replay of old history gives the same 7d/30d values as live ingestion of it did."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from kpis.config import KpiConfig
from kpis.timebase import HOUR_MS
from streams.events import parse_time_ms
from tests.oracle.history import FX_RATES, generate_history
from tests.support.pure_engine import PureEngine

CONFIG = KpiConfig(fx_rates={k: Decimal(v) for k, v in FX_RATES.items()})


def test_replay_two_days_later_equals_live_ingestion() -> None:
    now_ms = time.time_ns() // 1_000_000
    at_ms = now_ms // HOUR_MS * HOUR_MS - 48 * HOUR_MS  # the history ended two days ago
    events = generate_history(5, end=datetime.fromtimestamp(at_ms / 1000, tz=UTC),
                              n_events=6000, late_fraction=0.0, duplicate_rate=0.02)

    by_hour: dict[int, list[dict]] = defaultdict(list)
    for event in events:
        by_hour[_time_ms(event) // HOUR_MS * HOUR_MS + HOUR_MS].append(event)
    live = PureEngine(CONFIG)
    for hour_end in range(min(by_hour), at_ms + HOUR_MS, HOUR_MS):
        # Events arrive as they happen: the engine clock is the end of the hour they fall in.
        live.publish(by_hour.get(hour_end, []))
        live.run(hour_end)
        for stage in (live.events, live.customers):
            stage.keeper.prune(hour_end, range(live.partitions))
            stage.write(range(live.partitions))
    live_values = {w: live.kpis(w, at_ms, at_ms) for w in ("7d", "30d")}

    replayed = PureEngine(CONFIG)
    replayed.publish(events)
    replayed.run(now_ms)
    assert {w: replayed.kpis(w, at_ms, now_ms) for w in ("7d", "30d")} == live_values


def _time_ms(event: dict) -> int:
    return parse_time_ms(event["occurred_at"])
