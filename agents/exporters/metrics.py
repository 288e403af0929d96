"""Prometheus collector that reads the KPI state of this worker's partitions at scrape time.

Each worker exports only the partitions it owns, as gauges of window sums (numerators and
denominators, never ratios), so `sum without (instance)` over all workers is the global value
and a rebalance leaves no stale series behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.exporters.fields import SketchSample, histogram_name, histogram_part, metric_for
from kpis.buckets import SumKey
from kpis.sketch import DurationSketch
from kpis.timebase import WINDOWS

LABELS = ("tenant", "window", "by", "segment")
Labels = tuple[str, str, str, str]


def _histogram_family(sketch: DurationSketch, rows: Mapping[Labels, SketchSample]) -> Metric:
    family = HistogramMetricFamily(
        histogram_name(sketch), f"KPI input {sketch.name} durations per window", labels=LABELS
    )
    for labels, sample in sorted(rows.items()):
        family.add_metric(list(labels), sample.buckets(), sample.sum_ms / 1000)
    return family


class KpiCollector(Collector):
    """Yields `crm_kpi_*` gauges per tenant, window and segment, and engine counters."""

    def __init__(
        self,
        window_totals: Callable[[str, int, int], dict[SumKey, int]],
        counters: Callable[[], dict[int, tuple[int, int]]],
        now_ms: Callable[[], int],
        lag: Callable[[], dict[tuple[str, int], int]],
        last_applied_ms: Callable[[], int],
    ) -> None:
        self.last_applied_ms = last_applied_ms
        self.window_totals = window_totals
        self.counters = counters
        self.now_ms = now_ms
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        """Build every family from the current state (called on each scrape)."""
        now = self.now_ms()
        families: dict[str, GaugeMetricFamily] = {}
        samples: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        sketches: defaultdict[DurationSketch, defaultdict[Labels, SketchSample]] = defaultdict(
            lambda: defaultdict(SketchSample)
        )
        for window in WINDOWS:
            totals = self.window_totals(window, now, now)
            for (tenant, field, dimension, segment), value in totals.items():
                series = (tenant, window, dimension or "none", segment or "all")
                part = histogram_part(field)
                if part is not None:
                    sketch, slot = part
                    sketches[sketch][series].add(slot, value)
                    continue
                metric = metric_for(field)
                if metric is not None:
                    name, divisor = metric
                    samples[name].append((list(series), value / divisor))
        yield from (_histogram_family(sketch, rows) for sketch, rows in sketches.items())
        for name, rows in sorted(samples.items()):
            family = families[name] = GaugeMetricFamily(
                name, f"KPI input {name.removeprefix('crm_kpi_')} per window", labels=LABELS
            )
            for labels, sample in rows:
                family.add_metric(labels, sample)
        yield from families.values()
        yield from self._engine_families()

    def _engine_families(self) -> Iterator[Metric]:
        processed = CounterMetricFamily(
            "crm_events_processed", "Distinct canonical events applied to state", labels=["partition"]
        )
        rejected = CounterMetricFamily(
            "crm_events_rejected", "Invalid events sent to the dead-letter topic", labels=["partition"]
        )
        for partition, (processed_count, rejected_count) in sorted(self.counters().items()):
            processed.add_metric([str(partition)], processed_count)
            rejected.add_metric([str(partition)], rejected_count)
        lag = GaugeMetricFamily("crm_consumer_lag", "Records not yet applied",
                                labels=["topic", "partition"])
        for (topic, partition), records in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], records)
        yield from (processed, rejected, lag)
        if self.last_applied_ms():
            yield GaugeMetricFamily(
                "crm_kpi_last_event_timestamp_seconds",
                "Wall-clock time this worker last applied an event to KPI state",
                value=self.last_applied_ms() / 1000,
            )
