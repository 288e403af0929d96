"""Churn risk of a customer: a score from declared, weighted factors with a stated polarity.

Each factor counts occurrences in the trailing LOOKBACK_MS and gives its points in proportion,
up to its saturation count; positive points raise the risk, negative points (recent orders)
lower it. The score is the sum, clamped to 0..100, and a customer is at risk while it is active
and scores at least AT_RISK_POINTS. The score is exact integer arithmetic, so the at-risk
periods derived from it (see `risk_spans`) are the same wherever they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kpis.timebase import DAY_MS, HOUR_MS, HOUR_RETENTION_MS

LOOKBACK_MS = 30 * DAY_MS
# Occurrences this far behind a customer's newest may be forgotten: the at-risk periods they
# shaped ended before every kept bucket, so forgetting them changes no value at or after then.
FACT_HORIZON_MS = LOOKBACK_MS + HOUR_RETENTION_MS + DAY_MS
SLOW_FIRST_RESPONSE_MS = 4 * HOUR_MS  # as the FirstResponseTimeHigh alert
AT_RISK_POINTS = 50


@dataclass(frozen=True)
class Factor:
    """One declared risk factor: `points` (signed) once it occurs `saturation` times."""

    name: str
    meaning: str
    points: int
    saturation: int


FACTORS: tuple[Factor, ...] = (
    Factor("ticket_load", "tickets it opened", 20, 5),
    Factor("slow_first_responses", "of its tickets, first public replies slower than 4 h", 20, 2),
    Factor("negative_feedback", "NPS detractor (0-6) or CSAT below the top two boxes answers", 25, 2),
    Factor("involuntary_cancellations", "subscriptions cancelled involuntarily (failed payment)", 20, 1),
    Factor("mrr_contractions", "MRR decreases of its subscriptions", 15, 1),
    Factor("recent_orders", "orders it placed", -25, 3),
)
SCALE = math.lcm(*(factor.saturation for factor in FACTORS))

# Factor name -> event times (ms) of its occurrences.
Facts = Mapping[str, Sequence[int]]
# [start, end | None, plan, ...]: a customer's activity intervals (kpis.families.customers).
Interval = Sequence[Any]


def _scaled(counts: Sequence[int]) -> int:
    """The score x SCALE (exact), unclamped."""
    pairs = zip(FACTORS, counts, strict=True)
    return sum(f.points * min(n, f.saturation) * (SCALE // f.saturation) for f, n in pairs)


def counts_at(facts: Facts, at_ms: int) -> list[int]:
    """Occurrences of each factor in `(at - LOOKBACK, at]`, in FACTORS order."""
    return [sum(1 for t in facts.get(f.name, ()) if t <= at_ms < t + LOOKBACK_MS) for f in FACTORS]


def score(counts: Sequence[int]) -> float:
    """The risk score 0..100 of factor counts."""
    return max(0.0, min(100.0, _scaled(counts) / SCALE))


def at_risk(counts: Sequence[int]) -> bool:
    """Whether the counts make a customer at risk (while it is active)."""
    return _scaled(counts) >= AT_RISK_POINTS * SCALE


def breakdown(counts: Sequence[int]) -> dict[str, dict[str, float | int]]:
    """Per factor: its count in the lookback and the points it adds."""
    return {f.name: {"count": n, "points": f.points * min(n, f.saturation) / f.saturation}
            for f, n in zip(FACTORS, counts, strict=True)}


def _ended(interval: Interval, at_ms: int) -> bool:
    return interval[1] is not None and interval[1] <= at_ms


def risk_spans(facts: Facts, intervals: Sequence[Interval]) -> list[tuple[int, int, str]]:
    """`(start, end, plan)` periods in which the customer is active (in an interval labelled
    `plan`) and at risk; they always end, since every occurrence leaves the lookback."""
    ever = [len(facts.get(f.name, ())) if f.points > 0 else 0 for f in FACTORS]
    if not intervals or not at_risk(ever):  # never active, or not at risk with every occurrence
        return []
    changes = sorted(
        (t + (0 if step > 0 else LOOKBACK_MS), index, step)
        for index, factor in enumerate(FACTORS)
        for t in facts.get(factor.name, ())
        for step in (1, -1)
    )
    bounds = sorted({t for t, _, _ in changes} | {i[0] for i in intervals}
                    | {i[1] for i in intervals if i[1] is not None})
    counts = [0] * len(FACTORS)
    spans: list[tuple[int, int, str]] = []
    opened: tuple[int, str] | None = None
    applied = current = 0
    for bound in bounds:
        while applied < len(changes) and changes[applied][0] <= bound:
            counts[changes[applied][1]] += changes[applied][2]
            applied += 1
        while current < len(intervals) and _ended(intervals[current], bound):
            current += 1
        active = current < len(intervals) and intervals[current][0] <= bound
        plan = intervals[current][2] if active and at_risk(counts) else None
        if opened is not None and opened[1] != plan:
            spans.append((opened[0], bound, opened[1]))
            opened = None
        if opened is None and plan is not None:
            opened = (bound, plan)
    return spans
