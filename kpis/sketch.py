"""A mergeable log-bucket sketch of durations (DDSketch-style), kept as bucket count fields.

A duration in ms falls in the slot of its logarithm to base `GAMMA`; every value a slot holds
is within `RELATIVE_ACCURACY` of the slot's estimate. Slot 0 holds zero and a negative duration
takes the mirror of its absolute value's slot, so slots sort like the values they hold. The
count of each slot is a plain bucket field `<name>_sketch:<slot>`: sketches of partitions and
time buckets merge by addition, and quantiles are read from the merged counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from kpis.formulas import Totals, Value

RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)


def slot_of(value_ms: int) -> int:
    """The slot of a duration: positive slot `k` holds `(GAMMA^(k-2), GAMMA^(k-1)]`."""
    if value_ms < 0:
        return -slot_of(-value_ms)
    if value_ms == 0:
        return 0
    return 1 + math.ceil(math.log(value_ms) / _LOG_GAMMA)


def upper_bound_ms(slot: int) -> float:
    """The largest value a positive slot holds."""
    return GAMMA ** (slot - 1)


def estimate_ms(slot: int) -> float:
    """The value standing for every value of a slot, within RELATIVE_ACCURACY of each."""
    if slot < 0:
        return -estimate_ms(-slot)
    if slot == 0:
        return 0.0
    return 2 * upper_bound_ms(slot) / (GAMMA + 1)


def quantile_ms(counts: Mapping[int, int], q: Fraction) -> float | None:
    """The value at rank `q(n-1)`, interpolated between the estimates of the order statistics
    around it (so within RELATIVE_ACCURACY of the exact interpolated value); None when empty."""
    ordered = sorted((slot, n) for slot, n in counts.items() if n)
    n = sum(count for _, count in ordered)
    if n == 0:
        return None
    rank = q * (n - 1)
    low = math.floor(rank)
    below = _order_statistic(ordered, low)
    above = _order_statistic(ordered, min(low + 1, n - 1))
    return below + float(rank - low) * (above - below)


def _order_statistic(ordered: list[tuple[int, int]], index: int) -> float:
    """The estimate of the `index`-th smallest value (from 0) of sorted slot counts."""
    seen = 0
    for slot, count in ordered:
        seen += count
        if index < seen:
            return estimate_ms(slot)
    raise IndexError(index)


@dataclass(frozen=True)
class DurationSketch:
    """The sketch of one kind of duration: its count fields `<name>_sketch:<slot>` and the
    sum of its durations `<name>_ms` (which the Prometheus histogram reports as `_sum`)."""

    name: str

    @property
    def prefix(self) -> str:
        """What every count field of this sketch starts with."""
        return f"{self.name}_sketch:"

    @property
    def sum_field(self) -> str:
        """The field summing the sketched durations in ms."""
        return f"{self.name}_ms"

    def field(self, duration_ms: int) -> str:
        """The count field of the slot of `duration_ms`."""
        return f"{self.prefix}{slot_of(duration_ms)}"

    def slot(self, field: str) -> int | None:
        """The slot counted by `field`, or None when it is no field of this sketch."""
        return int(field.removeprefix(self.prefix)) if field.startswith(self.prefix) else None

    def counts(self, totals: Totals) -> dict[int, int]:
        """Counts per slot in the slice that `totals` reads."""
        counts: dict[int, int] = {}
        for (tenant, field, dimension, segment), value in totals.sums.items():
            slot = self.slot(field)
            if slot is not None and (tenant, dimension, segment) == (
                totals.tenant, totals.dimension, totals.segment
            ):
                counts[slot] = value
        return counts

    def quantile_seconds(self, q: Fraction) -> Callable[[Totals], Value]:
        """A KPI: the `q` quantile of the sketched durations, in seconds."""

        def compute(totals: Totals) -> Value:
            value_ms = quantile_ms(self.counts(totals), q)
            return None if value_ms is None else value_ms / 1000

        return compute
