"""Evaluation time and memory at 1M tracked subscriptions (issue 5), on the pure state.

`python -m bench.subscriptions_scale --subscriptions 1000000` applies `subscription.started`
(and, for a tenth of them, `subscription.changed` and `subscription.cancelled`) through the
worker's record path without Kafka, then times the evaluation of every window and reports
the process RSS. Evaluation reads bucket sums only, so its cost must not grow with the number
of subscriptions; compare a run with 100k.
"""

from __future__ import annotations

import argparse
import resource
import time

import orjson

from kpis.config import KpiConfig
from kpis.timebase import DAY_MS, WINDOWS
from streams.events import format_time_ms
from tests.support.pure_engine import PureEngine


def subscription_events(count: int, now_ms: int) -> list[dict]:
    """Subscriptions started 110 to 21 days ago; one in ten expanded, one in ten cancelled."""
    events = []
    for n in range(count):
        started = now_ms - 110 * DAY_MS + n * (89 * DAY_MS // count)
        data = {"subscription_id": f"s{n}", "customer_id": f"c{n}", "mrr": 49 + n % 200,
                "plan": ("free", "starter", "pro", "enterprise")[n % 4], "region": "na"}
        events.append({"id": f"a{n}", "source": "bench", "type": "subscription.started",
                       "occurred_at": format_time_ms(started), "data": data})
        if n % 10 == 3:
            events.append({"id": f"b{n}", "source": "bench", "type": "subscription.changed",
                           "occurred_at": format_time_ms(started + DAY_MS),
                           "data": {"subscription_id": f"s{n}", "mrr": 99 + n % 300}})
        if n % 10 == 7:
            events.append({"id": f"c{n}", "source": "bench", "type": "subscription.cancelled",
                           "occurred_at": format_time_ms(started + 20 * DAY_MS),
                           "data": {"subscription_id": f"s{n}", "reason": "voluntary"}})
    return events


def rss_mib() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Apply, evaluate, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    args = parser.parse_args()
    now_ms = time.time_ns() // 1_000_000
    baseline = rss_mib()
    events = subscription_events(args.subscriptions, now_ms)
    engine = PureEngine(KpiConfig())
    started = time.perf_counter()
    for first in range(0, len(events), 100_000):
        engine.publish(events[first:first + 100_000], per_record=500)
        engine.run(now_ms)
        for stage in (engine.events, engine.customers):
            stage.log.clear()  # the bench keeps state, not the simulated topics
            stage.position.clear()
    applied = time.perf_counter() - started
    del events
    timings = {}
    for window in WINDOWS:
        started = time.perf_counter()
        values = engine.kpis(window, now_ms, now_ms)
        timings[window] = time.perf_counter() - started
    print(orjson.dumps({  # noqa: T201
        "subscriptions": args.subscriptions, "apply_seconds": round(applied, 1),
        "evaluate_seconds": {w: round(t, 3) for w, t in timings.items()},
        "peak_rss_mib": round(rss_mib() - baseline), "mrr": values["mrr"],
        "active_customers": values["active_customers"],
    }).decode())


if __name__ == "__main__":
    main()
