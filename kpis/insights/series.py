"""Hourly series of KPIs, read from the hour buckets of the partition state.

A partition answers with raw columns: per unsliced field, the sum of each hour bucket in a
range of hours, after an opening value (for a cumulative field: its value at the start of the
range, from the folded base and the older buckets). Columns of partitions and workers merge by
addition, like every other sum; a `KpiSeries` turns merged columns into one value per hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate

from kpis.buckets import BucketStore
from kpis.families.support import FIRST_RESPONSE
from kpis.formulas import MICRO
from kpis.partition import window_field

SeriesKey = tuple[str, str]  # (tenant, field)
# [opening, sum of the first hour, ..., sum of the last hour]
Columns = dict[SeriesKey, list[int]]


def hourly_columns(store: BucketStore, keys: Iterable[SeriesKey], last_hour: int, hours: int) -> Columns:
    """The columns of `keys` over the `hours` hour buckets ending with index `last_hour`."""
    first = last_hour - hours + 1
    wanted = list(keys)
    columns: Columns = {key: [0] * (hours + 1) for key in wanted}
    for tenant, name in wanted:
        if name in store.cumulative_fields:
            columns[(tenant, name)][0] = store.base.values.get((tenant, name, "", ""), 0)
    for index, bucket in store.hours.items():
        if index > last_hour:
            continue
        slot = index - first + 1
        for tenant, name in wanted:
            value = bucket.values.get((tenant, name, "", ""))
            if value and (slot > 0 or name in store.cumulative_fields):
                columns[(tenant, name)][max(slot, 0)] += value
    return columns


def merge_columns(total: Columns, more: Mapping[SeriesKey, list[int]]) -> None:
    """Add `more` into `total`, element by element."""
    for key, values in more.items():
        mine = total.setdefault(key, [0] * len(values))
        for i, value in enumerate(values):
            mine[i] += value


@dataclass(frozen=True)
class Part:
    """A field read per hour: its sum over `hours` hours ending with the hour (a flow), or, with
    `level`, a cumulative field's value at the end of the hour `lag` hours back."""

    field: str
    level: bool = False
    hours: int = 1
    lag: int = 0

    def values(self, column: list[int]) -> list[int | None]:
        """One value per hour of the column (None where the range does not reach back)."""
        opening, sums = column[0], column[1:]
        if self.level:
            ends = list(accumulate(sums, initial=opening))  # ends[i + 1]: at the end of hour i
            return [ends[i + 1 - self.lag] if i + 1 >= self.lag else None for i in range(len(sums))]
        trailing = [0, *accumulate(sums)]
        return [trailing[i + 1] - trailing[i + 1 - self.hours] if i + 1 >= self.hours else None
                for i in range(len(sums))]


@dataclass(frozen=True)
class KpiSeries:
    """A KPI per hour: numerator (/ denominator) / divisor; None where undefined."""

    kpi: str
    numerator: Part
    denominator: Part | None = None
    divisor: int = 1

    @property
    def fields(self) -> tuple[str, ...]:
        """The bucket fields this series reads."""
        parts = (self.numerator, self.denominator)
        return tuple(part.field for part in parts if part is not None)

    def values(self, columns: Mapping[SeriesKey, list[int]], tenant: str, hours: int) -> list[float | None]:
        """The KPI for each of the `hours` hours of the columns."""
        empty = [0] * (hours + 1)
        top = self.numerator.values(columns.get((tenant, self.numerator.field), empty))
        if self.denominator is None:
            return [None if n is None else n / self.divisor for n in top]
        bottom = self.denominator.values(columns.get((tenant, self.denominator.field), empty))
        pairs = zip(top, bottom, strict=True)
        return [None if n is None or not d else n / (d * self.divisor) for n, d in pairs]


def flow(kpi: str, name: str, hours: int = 1, divisor: int = 1) -> KpiSeries:
    """A count or sum over the trailing `hours`."""
    return KpiSeries(kpi, Part(name, hours=hours), divisor=divisor)


# Headline KPIs scored for anomalies: hourly where hours are busy enough, over the trailing day
# where single hours are mostly empty (churn, MRR movements).
ANOMALY_SERIES: tuple[KpiSeries, ...] = (
    flow("leads_created", "leads_created"),
    flow("deals_won", "deals_won"),
    flow("won_revenue", "won_revenue_micro", divisor=MICRO),
    flow("tickets_created", "tickets_created"),
    KpiSeries("first_response_seconds_avg", Part(FIRST_RESPONSE.sum_field), Part("first_responses"), 1000),
    flow("orders", "orders"),
    KpiSeries("churn_rate", Part(window_field("churned_customers", "24h"), level=True),
              Part("active_customers", level=True, lag=24)),
    flow("net_new_mrr", "mrr_micro", hours=24, divisor=MICRO),
)
