"""How bucket fields become metric samples: names in base units and their scale."""

from __future__ import annotations

from kpis.formulas import MICRO

FIELD_PREFIX = "crm_kpi_"


def metric_for(field: str) -> tuple[str, int]:
    """The metric name of a bucket field and the divisor into base units.

    Money fields (`_micro`) are reported in currency units, millisecond sums (`_ms`) as
    `_seconds_sum`, everything else as the count it is.
    """
    if field.endswith("_micro"):
        return FIELD_PREFIX + field.removesuffix("_micro"), MICRO
    if field.endswith("_ms"):
        return FIELD_PREFIX + field.removesuffix("_ms") + "_seconds_sum", 1000
    return FIELD_PREFIX + field, 1
