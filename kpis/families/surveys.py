"""Surveys: NPS, CSAT and CES from `survey.answered`, as response counts and score sums."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.entities import Family
from kpis.formulas import Kpi, Totals, Value, fraction_of, ratio
from streams.events import Event

NPS_BUCKETS = ("nps_promoters", "nps_passives", "nps_detractors")
CSAT_BUCKETS = ("csat_satisfied", "csat_unsatisfied")
DEFAULT_CSAT_SCALE_MAX = 5


def _nps_fields(score: int, data: Mapping[str, Any]) -> dict[str, int]:
    """Promoter (9-10), passive (7-8) or detractor (0-6)."""
    bucket = "nps_promoters" if score >= 9 else "nps_detractors" if score <= 6 else "nps_passives"
    return {bucket: 1}


def _csat_fields(score: int, data: Mapping[str, Any]) -> dict[str, int]:
    """Satisfied when in the top two boxes of the answer's own scale."""
    scale_max = int(data.get("scale_max") or DEFAULT_CSAT_SCALE_MAX)
    return {"csat_satisfied" if score >= scale_max - 1 else "csat_unsatisfied": 1}


def _ces_fields(score: int, data: Mapping[str, Any]) -> dict[str, int]:
    """One response and its score."""
    return {"ces_responses": 1, "ces_score_sum": score}


SURVEY_FIELDS: dict[str, Callable[[int, Mapping[str, Any]], dict[str, int]]] = {
    "nps": _nps_fields,
    "csat": _csat_fields,
    "ces": _ces_fields,
}


def survey_answered(event: Event, config: KpiConfig) -> list[Contribution]:
    """The response counts (and CES score) of one answer."""
    data = event.data
    fields = SURVEY_FIELDS[data["survey"]](int(data["score"]), data)
    return [(event.time_ms, event.tenant, name, (), value) for name, value in fields.items()]


def _nps(t: Totals) -> Value:
    promoters, passives, detractors = (t(name) for name in NPS_BUCKETS)
    return ratio(100 * (promoters - detractors), promoters + passives + detractors)


def _csat(t: Totals) -> Value:
    satisfied, unsatisfied = (t(name) for name in CSAT_BUCKETS)
    return ratio(100 * satisfied, satisfied + unsatisfied)


SURVEY_KPIS = (
    Kpi("nps", "Net Promoter Score", "100 * (promoters - detractors) / responses in W", "score",
        NPS_BUCKETS, _nps),
    Kpi("csat", "Customer satisfaction (top-2 box)", "100 * satisfied / responses in W", "percent",
        CSAT_BUCKETS, _csat),
    Kpi("ces", "Customer Effort Score", "mean CES score in W", "score",
        ("ces_score_sum", "ces_responses"), fraction_of("ces_score_sum", "ces_responses")),
)

SURVEYS = Family(
    name="surveys",
    entities={},
    stateless={"survey.answered": survey_answered},
    kpis=SURVEY_KPIS,
)
