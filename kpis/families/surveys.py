"""Surveys: NPS, CSAT and CES from `survey.answered`, as response counts and score sums.

An answer that names its customer is routed by the customer id and kept, for the last weeks,
by the customer's respondent entity, which sends the times of its negative answers to the
customer's churn risk; an answer without a customer is counted by a stateless rule. Both count
the same fields, so the scores do not depend on the route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent
from kpis.families.commerce import ORDER_HORIZON_MS as ANSWER_HORIZON_MS
from kpis.families.customers import FEEDBACK
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


NEGATIVE = frozenset({"nps_detractors", "csat_unsatisfied"})  # a churn risk factor


def _answer_fields(data: Mapping[str, Any]) -> dict[str, int]:
    return SURVEY_FIELDS[data["survey"]](int(data["score"]), data)


def survey_answered(event: Event, config: KpiConfig) -> list[Contribution]:
    """The response counts (and CES score) of one answer."""
    fields = _answer_fields(event.data)
    return [(event.time_ms, event.tenant, name, (), value) for name, value in fields.items()]


class Respondent(Entity):
    """A customer's recent survey answers (those older than every kept bucket are forgotten)."""

    kind = "respondent"
    key_field = "customer_id"
    fields = ("answers",)

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, list[Any]] = {}  # uid -> [time, {field: value}]

    def update(self, event: Event, config: KpiConfig) -> None:
        """Keep the answer's fields, then forget the answers past the horizon."""
        self.answers[event.uid] = [event.time_ms, _answer_fields(event.data)]
        horizon = max(time_ms for time_ms, _ in self.answers.values()) - ANSWER_HORIZON_MS
        self.answers = {uid: answer for uid, answer in self.answers.items() if answer[0] >= horizon}

    def contributions(self, tenant: str) -> list[Contribution]:
        """Each answer's counts at its time, as the stateless rule counts them."""
        return [(time_ms, tenant, name, (), value)
                for time_ms, fields in self.answers.values() for name, value in fields.items()]

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """The times of its recent negative answers, to its customer's churn risk (sent when
        they change; none once forgotten, when they are past the risk lookback anyway)."""
        negative = sorted(t for t, fields in self.answers.values() if NEGATIVE & fields.keys())
        if not negative:
            return []
        return [(entity_id, FEEDBACK, negative[-1], {"customer_id": entity_id, "negative": negative})]


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
    entities={"survey.answered": Respondent},  # when it names its customer
    stateless={"survey.answered": survey_answered},
    kpis=SURVEY_KPIS,
)
