"""The KPI catalogue: every KPI of every family, and its evaluation over merged sums."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

from kpis.buckets import SumKey
from kpis.families import FAMILIES
from kpis.formulas import Kpi, Totals, Value

CATALOGUE: tuple[Kpi, ...] = tuple(kpi for family in FAMILIES for kpi in family.kpis)
BY_ID: dict[str, Kpi] = {kpi.id: kpi for kpi in CATALOGUE}
DIMENSIONS = ("channel", "region", "priority")

KpiValues = dict[str, Value | dict[str, Value]]


def evaluate(
    sums: Mapping[SumKey, int],
    *,
    tenant: str = "default",
    by: str | None = None,
    gross_margin: Decimal = Decimal("1.0"),
    sums_30d: Mapping[SumKey, int] | None = None,
) -> KpiValues:
    """Every KPI of `tenant` from merged window sums; sliced by `by` where the KPI allows it.

    `sums_30d` are the 30-day sums that `cltv` and `ltv_to_cac` use in every window.
    """
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"unknown dimension {by!r}: expected one of {', '.join(DIMENSIONS)}")
    margin = Fraction(gross_margin)
    reference = Totals(sums_30d if sums_30d is not None else sums, tenant, gross_margin=margin)
    total = Totals(sums, tenant, gross_margin=margin, reference=reference)
    values: KpiValues = {}
    for kpi in CATALOGUE:
        if by is None or by not in kpi.dimensions:
            values[kpi.id] = kpi.compute(total)
            continue
        values[kpi.id] = {
            label: kpi.compute(Totals(sums, tenant, by, label, margin, reference))
            for label in sorted(_labels(sums, tenant, by, kpi.inputs))
        }
    return values


def _labels(sums: Mapping[SumKey, int], tenant: str, dimension: str, inputs: tuple[str, ...]) -> set[str]:
    wanted = set(inputs)
    return {
        label
        for (t, name, dim, label), value in sums.items()
        if value and t == tenant and dim == dimension and name in wanted
    }
