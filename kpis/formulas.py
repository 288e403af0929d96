"""KPI definitions and exact formulas over merged sums.

Every value is computed from exact integer sums as a `Fraction` and converted to `float`
once (see docs/semantics.md), so it does not depend on how the sums were split across
partitions, workers or buckets. A zero denominator gives None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from kpis.buckets import SumKey

Value = int | float | None
MICRO = 10**6


class Totals:
    """The merged sums of one tenant and one segment (or the unsliced total)."""

    def __init__(
        self,
        sums: Mapping[SumKey, int],
        tenant: str,
        dimension: str = "",
        segment: str = "",
        gross_margin: Fraction = Fraction(1),
        reference: Totals | None = None,
    ) -> None:
        self.sums = sums
        self.tenant = tenant
        self.dimension = dimension
        self.segment = segment
        self.gross_margin = gross_margin
        self.reference = reference or self

    def __call__(self, name: str) -> int:
        """The sum of field `name` in this slice (0 when absent)."""
        return self.sums.get((self.tenant, name, self.dimension, self.segment), 0)


def ratio(numerator: Fraction | int, denominator: Fraction | int) -> float | None:
    """`numerator / denominator` exactly, None when the denominator is 0."""
    if denominator == 0:
        return None
    return float(Fraction(numerator) / Fraction(denominator))


def money(micro: Fraction | int) -> float:
    """Micro-units as currency units."""
    return float(Fraction(micro) / MICRO)


@dataclass(frozen=True)
class Kpi:
    """One catalogue entry: what it means, how it is computed, how it may be sliced."""

    id: str
    meaning: str
    formula: str
    unit: str  # count | currency | ratio | seconds | score | percent
    inputs: tuple[str, ...]
    compute: Callable[[Totals], Value]
    dimensions: tuple[str, ...] = ()
    point_in_time: bool = False


def count(field: str) -> Callable[[Totals], Value]:
    """A KPI that is the sum of one count field."""
    return lambda t: t(field)


def money_sum(field: str) -> Callable[[Totals], Value]:
    """A KPI that is the sum of one money field."""
    return lambda t: money(t(field))


def fraction_of(numerator: str, denominator: str) -> Callable[[Totals], Value]:
    """A KPI that is one count over another."""
    return lambda t: ratio(t(numerator), t(denominator))


def mean_seconds(total_ms: str, n: str) -> Callable[[Totals], Value]:
    """A KPI that is the mean of durations summed in ms over their count."""
    return lambda t: ratio(t(total_ms), t(n) * 1000)


def mean_money(total_micro: str, n: str) -> Callable[[Totals], Value]:
    """A KPI that is the mean of money summed in micro-units over a count."""
    return lambda t: ratio(t(total_micro), t(n) * MICRO)
