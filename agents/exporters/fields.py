"""How bucket fields become metric samples: names in base units and their scale."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from kpis.families import FAMILIES
from kpis.families.support import FIRST_RESPONSE
from kpis.formulas import MICRO
from kpis.sketch import DurationSketch, slot_of, upper_bound_ms

FIELD_PREFIX = "crm_kpi_"

# Sketched durations, exported as histograms `crm_kpi_<name>_seconds` instead of gauges.
HISTOGRAMS: tuple[DurationSketch, ...] = (FIRST_RESPONSE,)
# Coarse `le` boundaries: the upper bound of the sketch slot holding each of these durations
# (1s to 7d), so that every cumulative bucket count is exact.
LE_SLOTS: tuple[int, ...] = tuple(
    slot_of(seconds * 1000)
    for seconds in (1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
)


# Fields whose bucket sums are deltas of a point-in-time value (MRR, open tickets, ...).
CUMULATIVE: frozenset[str] = frozenset().union(*(f.cumulative_fields for f in FAMILIES))


def metric_for(field: str) -> tuple[str, int] | None:
    """The metric name of a bucket field and the divisor into base units, or None to skip.

    Money fields (`_micro`) are reported in currency units, millisecond sums (`_ms`) as
    `_seconds_sum`, everything else as the count it is. A point-in-time field is exported as
    its value at T (`field@at`) and at the window start (`field@start`, as `..._at_start`);
    its windowed sum of deltas means nothing on its own and is skipped.
    """
    if "@" in field:
        base, _, moment = field.partition("@")
        named = metric_for_sum(base) if base in CUMULATIVE else None
        if named is None:
            return None
        return (named[0] if moment == "at" else named[0] + "_at_start"), named[1]
    if field in CUMULATIVE:
        return None
    return metric_for_sum(field)


def metric_for_sum(field: str) -> tuple[str, int]:
    """The metric name and divisor of a field's sum, by its unit suffix."""
    if field.endswith("_micro"):
        return FIELD_PREFIX + field.removesuffix("_micro"), MICRO
    if field.endswith("_ms"):
        return FIELD_PREFIX + field.removesuffix("_ms") + "_seconds_sum", 1000
    return FIELD_PREFIX + field, 1


def histogram_name(sketch: DurationSketch) -> str:
    """The histogram family of a sketched duration, in seconds."""
    return f"{FIELD_PREFIX}{sketch.name}_seconds"


def histogram_part(field: str) -> tuple[DurationSketch, int | None] | None:
    """The sketch a field feeds, with the slot it counts (None for its sum), else None."""
    for sketch in HISTOGRAMS:
        if field == sketch.sum_field:
            return sketch, None
        slot = sketch.slot(field)
        if slot is not None:
            return sketch, slot
    return None


@dataclass(slots=True)
class SketchSample:
    """One label set of a sketched duration: counts per slot and the sum of durations in ms."""

    counts: Counter[int] = field(default_factory=Counter)
    sum_ms: int = 0

    def add(self, slot: int | None, value: int) -> None:
        """Add a slot count, or add to the sum when `slot` is None."""
        if slot is None:
            self.sum_ms += value
        else:
            self.counts[slot] += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative `(le, count)` pairs in seconds, ending with +Inf."""
        cumulative = [
            (floatToGoString(upper_bound_ms(le_slot) / 1000),
             sum(n for slot, n in self.counts.items() if slot <= le_slot))
            for le_slot in LE_SLOTS
        ]
        return [*cumulative, ("+Inf", sum(self.counts.values()))]
