#!/usr/bin/env python3
"""Build the Prometheus rules of crm-kpi: KPI recording rules and alerts, from one table.

    python prometheus/build_rules.py           # rewrite prometheus/rules/*.yml and the
                                               # generated tables of docs/runbook.md
    python prometheus/build_rules.py --check   # exit 1 if any of them is out of date

The YAML files and the two tables in docs/runbook.md are generated: change this script, run
it, commit all of them (tests/integration/test_promtool.py fails when they drift apart).
Alert thresholds are set in THRESHOLDS below and nowhere else; the rules, the table in the
alerts file's header and the runbook's table are rendered from it. grafana/build_dashboards.py
reads THRESHOLDS too (the first-response SLO line). No dependency beyond the standard library.

Recording rules follow https://prometheus.io/docs/practices/rules/ (level:metric:operations).
Level `tenant_window_segment` keeps the labels tenant, window, by and segment:
{by="none", segment="all"} is a tenant's total, {by="channel", segment="web"} a slice.

  tenant_window_segment:crm_kpi_<field>:sum  an exported input summed over workers; also
                                             every count or sum KPI (deals_won, mrr, ...)
  tenant_window_segment:crm_<kpi>:ratio      a quotient of sums (rate, share, ROI, CAC, CLTV)
  tenant_window_segment:crm_<kpi>:mean       an average (currency units or seconds)
  tenant_window_segment:crm_<kpi>:score      NPS (-100..100) and CSAT (percent)
  tenant_window_segment:crm_<kpi>:delta      a difference (net new MRR)
  tenant_window_segment:crm_<kpi>:p50|p90    a quantile from the windowed histogram
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "prometheus" / "rules"
RECORDING_FILE = RULES_DIR / "crm-kpi-recording.yml"
ALERTS_FILE = RULES_DIR / "crm-kpi-alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
LEVEL = "tenant_window_segment"
# gross_margin of crm_roi and cltv: keep it equal to CRMKPI_GROSS_MARGIN (Prometheus cannot
# read the engine's environment), then run this script.
GROSS_MARGIN = "1"
WORKER_JOB = "crm-kpi-worker"
GATEWAY_JOB = "crm-kpi-gateway"

# =========================================================================================
# Alert thresholds: the one place they are set. Each alert's `for` is how long its condition
# must hold before it fires. Change a number here, run this script, then update the alert's
# cases in prometheus/tests/ (they pin the behaviour on both sides of every threshold).
# =========================================================================================
THRESHOLDS: dict[str, dict[str, Any]] = {
    # -- engine and gateway ---------------------------------------------------------------
    "WorkerDown": {"for": "5m"},
    "GatewayDown": {"for": "2m"},
    # Records of one input topic not yet applied, summed over its partitions.
    "ConsumerLagHigh": {"max_lag": 10000, "for": "10m"},
    # A worker with records waiting on its partitions that applied none for this long.
    "KpiStale": {"max_idle_seconds": 600, "for": "5m"},
    # Share of a provider's webhooks answered 401, and a floor on their rate.
    "IngestSignatureFailures": {"max_share": 0.10, "min_per_minute": 1, "for": "10m"},
    # Share of a provider's webhooks answered 503 or 500.
    "IngestServerErrors": {"max_share": 0.05, "for": "10m"},
    # Dead letters (worker rejects, gateway dead-letter writes) per job in 30 minutes.
    "DeadLetterGrowing": {"max_in_30m": 10, "for": "15m"},
    # -- business KPIs (per tenant, on its total) -----------------------------------------
    # 24h churn rate against its own average over the 7 days before the last day.
    "ChurnSpike": {"factor": 3, "min_churned": 5, "for": "1h"},
    # p90 first response of the last hour against the week before it, and an absolute SLO.
    "FirstResponseTimeSpike": {"factor": 2, "min_replies": 10, "min_baseline_replies": 50,
                               "for": "30m"},
    "FirstResponseTimeHigh": {"slo_seconds": 4 * 3600, "min_replies": 20, "for": "30m"},
    # 7d NPS / CSAT against the 23 days before (the 30d window minus the 7d window), in points.
    "NpsDrop": {"max_drop_points": 15, "min_responses": 50, "for": "1h"},
    "CsatDrop": {"max_drop_points": 10, "min_responses": 50, "for": "1h"},
    # 7d rate against the same 7d rate a week earlier (leads and deals of the same age).
    "LeadConversionDrop": {"min_fraction": 0.7, "min_leads": 50, "for": "1h"},
    "WinRateDrop": {"min_fraction": 0.7, "min_closed": 20, "for": "1h"},
    # Net new MRR over 7 days as a share of MRR 7 days ago.
    "MrrFalling": {"max_fall": 0.02, "min_customers": 20, "for": "1h"},
}


# =========================================================================================
# Recording rules
# =========================================================================================


def s(name: str, matchers: str = "") -> str:
    """The summed input `crm_kpi_<name>` (the `:sum` rule), with optional label matchers."""
    return f"{LEVEL}:crm_kpi_{name}:sum" + (f"{{{matchers}}}" if matchers else "")


def k(name: str, op: str, matchers: str = "") -> str:
    """A KPI rule `crm_<name>:<op>`, with optional label matchers."""
    return f"{LEVEL}:crm_{name}:{op}" + (f"{{{matchers}}}" if matchers else "")


def sum_of(*names: str) -> str:
    """The sum of several summed inputs where any of them may be omitted."""
    pattern = "|".join(names)
    return (f'sum by (tenant, window, by, segment) '
            f'({{__name__=~"{LEVEL}:crm_kpi_({pattern}):sum"}})')


def quotient(numerator: str, denominator: str, fallback: str | None = None) -> str:
    """numerator / denominator: an omitted numerator counts as 0 where the denominator (or
    `fallback`, a narrower selection of it) exists; a zero denominator gives no sample."""
    return (f"({numerator} or 0 * {fallback or denominator})\n"
            f"/ ({denominator} > 0)")


def share_not(total: str, part: str) -> str:
    """(total - part) / total, where part may be omitted."""
    return f"({total} - ({part} or 0 * {total}))\n/ ({total} > 0)"


@dataclass(frozen=True)
class Rule:
    """One recording rule; `kpi` is the catalogue id (kpis/catalogue.py) it computes."""

    record: str
    expr: str
    comment: str = ""
    kpi: str | None = None


@dataclass(frozen=True)
class Family:
    """The inputs one KPI family exports and the KPIs computed from them."""

    name: str
    inputs: tuple[str, ...]
    sum_kpis: dict[str, str]  # KPI id -> input field (the KPI is that field's :sum rule)
    rules: tuple[Rule, ...] = ()
    note: str = ""


WINDOW_30D = 'window="30d"'


def kpi(kpi_id: str, op: str, expr: str, comment: str, *, name: str | None = None) -> Rule:
    """The rule `crm_<name>:<op>` that computes catalogue KPI `kpi_id` (`name` defaults to it)."""
    return Rule(k(name or kpi_id, op), expr, comment, kpi_id)


def quotient_kpi(kpi_id: str, op: str, numerator: str, denominator: str, comment: str, *,
                 name: str | None = None) -> Rule:
    """A KPI that is one summed input over another (see `quotient`)."""
    return kpi(kpi_id, op, quotient(s(numerator), s(denominator)), comment, name=name)


def helper(name: str, expr: str, comment: str) -> Rule:
    """A derived `:sum` rule (a sum no worker exports) that KPI rules read."""
    return Rule(s(name), expr, comment)


FAMILIES: tuple[Family, ...] = (
    Family(
        "sales",
        ("leads_created", "leads_converted", "leads_engaged", "visits", "deals_won",
         "deals_lost", "deals_won_with_amount", "won_revenue", "sales_cycle_seconds_sum",
         "sales_cycle_deals", "spend_marketing", "spend_sales", "spend_retention", "spend_crm"),
        {"leads_created": "leads_created", "visits": "visits", "deals_won": "deals_won",
         "deals_lost": "deals_lost", "won_revenue": "won_revenue",
         "spend_marketing": "spend_marketing", "spend_sales": "spend_sales",
         "spend_retention": "spend_retention", "spend_crm": "spend_crm"},
        (
            helper("deals_closed", sum_of("deals_won", "deals_lost"),
                   "deals_won + deals_lost (the win rate's denominator)"),
            helper("spend_acquisition", sum_of("spend_marketing", "spend_sales"),
                   "spend_marketing + spend_sales (the numerator of CAC)"),
            quotient_kpi("traffic_to_lead_rate", "ratio", "leads_created", "visits",
                         "leads_created / visits"),
            quotient_kpi("lead_conversion_rate", "ratio", "leads_converted", "leads_created",
                         "leads created in W and converted / leads created in W"),
            kpi("lead_abandonment_rate", "ratio", share_not(s("leads_created"), s("leads_engaged")),
                "leads created in W neither touched nor converted / leads created in W"),
            quotient_kpi("win_rate", "ratio", "deals_won", "deals_closed",
                         "deals_won / (deals_won + deals_lost)"),
            quotient_kpi("avg_deal_size", "mean", "won_revenue", "deals_won_with_amount",
                         "won_revenue / deals won with a known amount"),
            quotient_kpi("sales_cycle_seconds_avg", "mean", "sales_cycle_seconds_sum",
                         "sales_cycle_deals",
                         "mean(won - created) over deals won in W with a known creation",
                         name="sales_cycle_seconds"),
            kpi("marketing_roi", "ratio",
                f"(\n  ({s('won_revenue')} or 0 * {s('spend_marketing')})\n"
                f"  - {s('spend_marketing')}\n)\n/ ({s('spend_marketing')} > 0)",
                "(won_revenue - spend_marketing) / spend_marketing"),
            kpi("crm_roi", "ratio",
                f"(\n  ({s('won_revenue')} or 0 * {s('spend_crm')})\n"
                f"    * on () group_left () crm:gross_margin:ratio\n"
                f"  - {s('spend_crm')}\n)\n/ ({s('spend_crm')} > 0)",
                "(won_revenue * gross_margin - spend_crm) / spend_crm"),
        ),
    ),
    Family(
        "support",
        ("tickets_created", "first_response_seconds_bucket", "first_response_seconds_sum",
         "first_response_seconds_count", "resolution_seconds_sum", "resolutions",
         "open_tickets", "open_tickets_at_start"),
        {"tickets_created": "tickets_created", "open_tickets": "open_tickets"},
        (
            kpi("first_response_seconds_avg", "mean",
                f"{s('first_response_seconds_sum')}\n/ ({s('first_response_seconds_count')} > 0)",
                "mean(first reply - created) over tickets first replied in W",
                name="first_response_seconds"),
            kpi("first_response_seconds_p50", "p50",
                f"histogram_quantile(0.5, {s('first_response_seconds_bucket')})\n"
                f"and {s('first_response_seconds_count')} > 0",
                "median first reply, interpolated within the histogram's buckets",
                name="first_response_seconds"),
            kpi("first_response_seconds_p90", "p90",
                f"histogram_quantile(0.9, {s('first_response_seconds_bucket')})\n"
                f"and {s('first_response_seconds_count')} > 0",
                "90th percentile first reply, interpolated within the histogram's buckets",
                name="first_response_seconds"),
            quotient_kpi("resolution_seconds_avg", "mean", "resolution_seconds_sum", "resolutions",
                         "mean(first resolution - created) over tickets first resolved in W",
                         name="resolution_seconds"),
        ),
        "crm_kpi_first_response_seconds is a windowed histogram (_bucket{le}, _sum, _count) of\n"
        "the first-reply delays of tickets first replied in W; open_tickets is the value at T.",
    ),
    Family(
        "surveys",
        ("nps_promoters", "nps_passives", "nps_detractors", "csat_satisfied",
         "csat_unsatisfied", "ces_responses", "ces_score_sum"),
        {},
        (
            helper("nps_responses", sum_of("nps_promoters", "nps_passives", "nps_detractors"),
                   "NPS responses in W"),
            helper("nps_net",
                   f"({s('nps_promoters')} or 0 * {s('nps_responses')})\n"
                   f"- ({s('nps_detractors')} or 0 * {s('nps_responses')})",
                   "promoters - detractors"),
            helper("csat_responses", sum_of("csat_satisfied", "csat_unsatisfied"),
                   "CSAT responses in W"),
            kpi("nps", "score", f"100 * {s('nps_net')}\n/ ({s('nps_responses')} > 0)",
                "100 * (promoters - detractors) / responses"),
            kpi("csat", "score",
                f"100 * ({s('csat_satisfied')} or 0 * {s('csat_responses')})\n"
                f"/ ({s('csat_responses')} > 0)",
                "100 * satisfied (top-2 box) / responses"),
            quotient_kpi("ces", "mean", "ces_score_sum", "ces_responses", "mean CES score"),
        ),
    ),
    Family(
        "subscriptions",
        ("new_customers", "mrr", "mrr_at_start", "mrr_churned", "active_customers",
         "active_customers_at_start", "churned_customers", "renewals", "cancellations"),
        {"new_customers": "new_customers", "mrr": "mrr", "active_customers": "active_customers"},
        (
            quotient_kpi("cac", "ratio", "spend_acquisition", "new_customers",
                         "(spend_marketing + spend_sales) / new_customers"),
            quotient_kpi("arpu", "mean", "mrr", "active_customers",
                         "mrr / active_customers (both at T)"),
            quotient_kpi("churn_rate", "ratio", "churned_customers", "active_customers_at_start",
                         "customers active at T-W whose activity ended in W / customers active at T-W"),
            kpi("retention_rate", "ratio", f"1 - {k('churn_rate', 'ratio')}", "1 - churn_rate"),
            quotient_kpi("revenue_churn_rate", "ratio", "mrr_churned", "mrr_at_start",
                         "MRR cancelled or contracted in W (of subscriptions active at T-W) / mrr(T-W)"),
            kpi("net_new_mrr", "delta",
                f"{s('mrr')} - {s('mrr_at_start')}\nor {s('mrr')}\nor -{s('mrr_at_start')}",
                "mrr(T) - mrr(T-W)"),
            kpi("renewal_rate", "ratio",
                quotient(s("renewals"), sum_of("renewals", "cancellations"),
                         s("cancellations", 'by="none"')),
                "renewals / (renewals + cancellations); renewals are not sliced"),
            kpi("cltv", "ratio",
                f"{k('arpu', 'mean')}\n  * on () group_left () crm:gross_margin:ratio\n"
                f"/ on (tenant, by, segment) group_left ()\n"
                f"  ({k('churn_rate', 'ratio', WINDOW_30D)} > 0)",
                "arpu * gross_margin / churn_rate(30d), in every window"),
            kpi("ltv_to_cac", "ratio",
                f"{k('cltv', 'ratio')}\n/ on (tenant, by, segment) group_left ()\n"
                f"  ({k('cac', 'ratio', WINDOW_30D)} > 0)",
                "cltv / cac(30d), in every window"),
            kpi("retention_cost_per_customer", "ratio",
                quotient(s("spend_retention"), s("active_customers"),
                         s("active_customers", 'by="none"')),
                "spend_retention / active_customers (at T)"),
        ),
        "crm_kpi_mrr, crm_kpi_active_customers: values at T; *_at_start: values at T-W.\n"
        "churned_customers and cancellations are also sliced by reason (by=\"reason\").\n"
        "cltv and ltv_to_cac use the 30d churn rate and CAC in every window, as the API does.",
    ),
    Family(
        "commerce",
        ("orders", "order_amount", "buyers", "repeat_buyers", "carts_created",
         "carts_checked_out"),
        {"orders": "orders"},
        (
            quotient_kpi("avg_order_value", "mean", "order_amount", "orders",
                         "sum of order amounts / orders"),
            quotient_kpi("repeat_purchase_rate", "ratio", "repeat_buyers", "buyers",
                         "customers with >= 2 orders in W / customers with >= 1 order in W"),
            kpi("cart_abandonment_rate", "ratio", share_not(s("carts_created"), s("carts_checked_out")),
                "carts created in W not checked out / carts created in W"),
        ),
    ),
    Family(
        "adoption",
        ("active_users", "records_created", "routine_tasks", "routine_task_seconds_sum"),
        {"active_users": "active_users", "records_created": "records_created"},
        (
            quotient_kpi("routine_task_seconds_avg", "mean", "routine_task_seconds_sum",
                         "routine_tasks", "mean duration_seconds of task.completed",
                         name="routine_task_seconds"),
        ),
    ),
)


def kpi_rules() -> dict[str, str]:
    """Every catalogue KPI id and the recording rule (metric name) that computes it."""
    rules: dict[str, str] = {}
    for family in FAMILIES:
        rules.update({kpi_id: s(name) for kpi_id, name in family.sum_kpis.items()})
        rules.update({rule.kpi: rule.record for rule in family.rules if rule.kpi})
    return rules


KPI_RULES = kpi_rules()

# Labels each worker's series carry that do not identify a KPI series.
WORKER_LABELS = "instance, job, partition"

ENGINE_RULES: tuple[Rule, ...] = (
    Rule("job:crm_events_processed:rate5m",
         "sum without (instance, partition) (rate(crm_events_processed_total[5m]))"),
    Rule("job:crm_events_rejected:rate5m",
         "sum without (instance, partition) (rate(crm_events_rejected_total[5m]))"),
    Rule("job:crm_consumer_lag:sum", "sum without (instance, partition) (crm_consumer_lag)",
         "per input topic (label `topic`)"),
    Rule("job:crm_kpi_last_event_timestamp_seconds:max",
         "max without (instance, partition) (crm_kpi_last_event_timestamp_seconds)"),
    Rule("provider_outcome:crm_gateway_requests:rate5m",
         "sum by (provider, outcome) (rate(crm_gateway_requests_total[5m]))"),
    Rule("job:crm_gateway_publish_duration_seconds_bucket:rate5m",
         "sum without (instance) (rate(crm_gateway_publish_duration_seconds_bucket[5m]))",
         "quantiles are taken at query time from the summed bucket rates"),
    Rule("job:crm_gateway_dedup_hits:rate5m",
         "sum without (instance, provider) (rate(crm_gateway_dedup_hits_total[5m]))"),
    Rule("job:crm_gateway_deadletter_writes:rate5m",
         "sum without (instance, provider) (rate(crm_gateway_deadletter_writes_total[5m]))"),
)


def recording_groups() -> list[tuple[str, str, list[Rule]]]:
    """(group name, comment, rules) of the recording rules file."""
    kpis: list[Rule] = [Rule(
        "crm:gross_margin:ratio", f"vector({GROSS_MARGIN})",
        "gross_margin of crm_roi and cltv: GROSS_MARGIN in prometheus/build_rules.py, which must\n"
        "equal CRMKPI_GROSS_MARGIN (default 1.0); see docs/runbook.md.")]
    for family in FAMILIES:
        first = True
        for name in family.inputs:
            comment = ""
            if first:
                comment = f"-- {family.name}: inputs, summed over workers " + "-" * 30
                if family.note:
                    comment += "\n" + family.note
                first = False
            kpis.append(Rule(s(name), f"sum without ({WORKER_LABELS}) (crm_kpi_{name})", comment))
        for number, rule in enumerate(family.rules):
            comment = rule.comment
            if rule.kpi:
                comment = f"{rule.kpi} = {rule.comment}"
            if number == 0:
                comment = f"-- {family.name}: KPIs " + "-" * 50 + "\n" + comment
            kpis.append(Rule(rule.record, rule.expr, comment, rule.kpi))
    return [
        ("crm-kpi", "Every KPI of every tenant, window and segment. One group: rules of a group\n"
                    "run in order at the same timestamp, so every KPI is computed from the same\n"
                    "round of sums.", kpis),
        ("crm-kpi-engine", "Engine and gateway health: plain counters and gauges, so PromQL does "
                           "the rates.", list(ENGINE_RULES)),
    ]


RECORDING_HEADER = """\
# GENERATED by prometheus/build_rules.py: edit that script, then run it. Do not edit here.
#
# Recording rules: KPI inputs summed over all workers, then KPIs computed from the sums.
#
# Names follow https://prometheus.io/docs/practices/rules/ (level:metric:operations).
# Level `tenant_window_segment` keeps the labels tenant, window, by and segment:
#   {by="none", segment="all"}     the tenant's total
#   {by="channel", segment="web"}  the web slice (likewise region, priority, plan, reason)
# so one rule per KPI serves the total and every slice of every dimension.
#
#   tenant_window_segment:crm_kpi_<field>:sum  an exported input summed over workers; also
#                                              every count or sum KPI (deals_won, mrr, ...)
#   tenant_window_segment:crm_<kpi>:ratio      a quotient of sums (rate, share, ROI, CAC, CLTV)
#   tenant_window_segment:crm_<kpi>:mean       an average (currency units or seconds)
#   tenant_window_segment:crm_<kpi>:score      NPS (-100..100), CSAT (percent)
#   tenant_window_segment:crm_<kpi>:delta      a difference (net new MRR)
#   tenant_window_segment:crm_<kpi>:p50|p90    a quantile from the windowed histogram
# docs/runbook.md lists the rule of every KPI of kpis/catalogue.py.
#
# Each worker exports only the partitions it owns, so every input is first summed over
# workers (`sum without (instance, job, partition)`) and only then divided: never average
# ratios. The crm_kpi_* gauges are already windowed by event time in the engine, so no
# rate() or increase() is applied to them.
#
# Missing series. The engine omits a slice that has no events ("omitted means 0 for counts
# and sums, null for ratios", docs/kpis.md). Two idioms keep that meaning:
#   `a or 0 * b`   a numerator absent where its denominator exists counts as 0
#   `/ (b > 0)`    a zero or absent denominator gives no sample (null), never NaN or Inf
# A sum of inputs any of which may be absent is `sum by (...) ({__name__=~"...(a|b):sum"})`.
"""


# =========================================================================================
# Alerts
# =========================================================================================


@dataclass(frozen=True)
class Alert:
    """An alerting rule; `%(name)s` in its texts is filled from THRESHOLDS[name]."""

    name: str
    severity: str
    component: str
    when: str  # the threshold table's "fires when"
    expr: str
    summary: str
    description: str
    comment: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, Any]:
        values = THRESHOLDS[self.name]
        return {**values, **{key: fn(values) for key, fn in self.params.items()}}

    def text(self, template: str) -> str:
        return template % self.thresholds


def total(rule: str, window: str) -> str:
    """A KPI rule on a tenant's total in one window."""
    return f'{rule}{{by="none", window="{window}"}}'


def before(rule: str) -> str:
    """A sum over the 23 days before the 7d window: the 30d window minus the 7d window.

    (A one-to-one match `ignoring (window)` drops the label `window` from its result; a
    comparison against it uses `group_left ()` to keep the left side's labels.)"""
    return f"({total(rule, '30d')} - ignoring (window) {total(rule, '7d')})"


NPS_BASELINE = (f"100 * {before(s('nps_net'))}\n"
                f"    / ignoring (window) ({before(s('nps_responses'))} > 0)")
CSAT_BASELINE = (f"100 * {before(s('csat_satisfied'))}\n"
                 f"    / ignoring (window) ({before(s('csat_responses'))} > 0)")
FIRST_RESPONSE_BASELINE_REPLIES = (
    f"({total(s('first_response_seconds_count'), '7d')}"
    f" - ignoring (window) {total(s('first_response_seconds_count'), '1h')})"
)
FIRST_RESPONSE_BASELINE = (
    "histogram_quantile(0.9,\n"
    f"    {total(s('first_response_seconds_bucket'), '7d')}\n"
    f"    - ignoring (window) {total(s('first_response_seconds_bucket'), '1h')})"
)

ENGINE_ALERTS: tuple[Alert, ...] = (
    Alert(
        "WorkerDown", "critical", "engine",
        "a worker target is down, or no worker is up at all",
        f'up{{job="{WORKER_JOB}"}} == 0\nor absent(up{{job="{WORKER_JOB}"}} == 1)',
        "A crm-kpi worker is down.",
        "{{ with $labels.instance }}Worker {{ . }} has not answered scrapes for %(for)s.{{ else }}"
        "No crm-kpi worker has been up for %(for)s: nothing consumes events.{{ end }}",
        "With DNS service discovery a stopped container leaves DNS, so its target vanishes\n"
        "instead of reporting up == 0: the absent() branch catches \"no worker at all\".",
    ),
    Alert(
        "GatewayDown", "critical", "gateway", "the gateway target is down or missing",
        f'up{{job="{GATEWAY_JOB}"}} == 0\nor absent(up{{job="{GATEWAY_JOB}"}})',
        "The crm-kpi webhook gateway is down.",
        "The gateway{{ with $labels.instance }} at {{ . }}{{ end }} has not answered scrapes "
        "for %(for)s; providers' webhooks are failing and will be retried.",
    ),
    Alert(
        "ConsumerLagHigh", "warning", "engine",
        "> %(max_lag)s records of an input topic wait to be applied",
        "sum without (instance, partition) (crm_consumer_lag) > %(max_lag)s",
        "Workers are falling behind {{ $labels.topic }}.",
        "{{ $value | humanize }} records of {{ $labels.topic }} are waiting to be applied "
        "(threshold %(max_lag)s) for %(for)s; KPIs lag behind the events.",
    ),
    Alert(
        "KpiStale", "critical", "engine",
        "a worker has records waiting on its partitions but applied none for "
        "> %(max_idle_seconds)ss",
        "time() - crm_kpi_last_event_timestamp_seconds > %(max_idle_seconds)s\n"
        "and on (instance) (sum by (instance) (crm_consumer_lag) > 0)",
        "KPIs of worker {{ $labels.instance }} are not being updated.",
        "Worker {{ $labels.instance }} has applied no event for {{ $value | humanizeDuration }} "
        "although records are waiting on its partitions; its KPIs are frozen.",
        "\"Stale\" means stuck, not idle: records are waiting and none was applied recently.\n"
        "crm_kpi_last_event_timestamp_seconds is the wall-clock time of the worker's last apply,\n"
        "not the event's occurred_at (a replay of old events would look stale). Per worker: one\n"
        "stuck worker among healthy ones is not hidden by the others.",
    ),
    Alert(
        "IngestSignatureFailures", "warning", "gateway",
        "> %(share_pct)s of a provider's webhooks answered 401, and > %(min_per_minute)s a minute",
        "sum by (provider) (rate(crm_gateway_requests_total{outcome=\"unauthorized\"}[5m]))\n"
        "  / sum by (provider) (rate(crm_gateway_requests_total[5m]))\n"
        "  > %(max_share)s\n"
        "and sum by (provider) (rate(crm_gateway_requests_total{outcome=\"unauthorized\"}[5m]))\n"
        "  > %(min_per_minute)s / 60",
        "Webhooks from {{ $labels.provider }} fail authentication.",
        "{{ $value | humanizePercentage }} of {{ $labels.provider }} webhooks were answered 401 "
        "(bad signature, stale timestamp or wrong credentials) for %(for)s.",
        params={"share_pct": lambda t: f"{t['max_share']:.0%}"},
    ),
    Alert(
        "IngestServerErrors", "critical", "gateway",
        "> %(share_pct)s of a provider's webhooks answered 503 or 500",
        "sum by (provider) (rate(crm_gateway_requests_total{outcome=~\"unavailable|error\"}[5m]))\n"
        "  / sum by (provider) (rate(crm_gateway_requests_total[5m]))\n"
        "  > %(max_share)s",
        "The gateway fails {{ $labels.provider }} webhooks with 5xx.",
        "{{ $value | humanizePercentage }} of {{ $labels.provider }} webhooks were answered "
        "503 or 500 for %(for)s; events are not being written to Kafka.",
        params={"share_pct": lambda t: f"{t['max_share']:.0%}"},
    ),
    Alert(
        "DeadLetterGrowing", "warning", "engine",
        "> %(max_in_30m)s dead letters in 30m (worker rejects or gateway dead letters)",
        "sum by (job) (increase(crm_events_rejected_total[30m])) > %(max_in_30m)s\n"
        "or sum by (job) (increase(crm_gateway_deadletter_writes_total[30m])) > %(max_in_30m)s",
        "Events are piling up in the dead-letter topic.",
        "{{ $value | humanize }} events went to the dead-letter topic from {{ $labels.job }} "
        "in the last 30 minutes (threshold %(max_in_30m)s).",
        "Worker rejects (invalid events sent to the dead-letter topic) and gateway dead\n"
        "letters, each by job; the two counters come from different jobs, so `or` keeps both.",
    ),
)

BUSINESS_ALERTS: tuple[Alert, ...] = (
    Alert(
        "ChurnSpike", "warning", "kpi",
        "24h churn rate > %(factor)sx its average over the 7 days before the last day, "
        "with >= %(min_churned)s customers churned in 24h",
        f"{total(k('churn_rate', 'ratio'), '24h')}\n"
        f"  > %(factor)s * avg_over_time({total(k('churn_rate', 'ratio'), '24h')}[7d] offset 1d)\n"
        f"and {total(s('churned_customers'), '24h')} >= %(min_churned)s",
        "Customer churn of {{ $labels.tenant }} spiked.",
        "{{ $value | humanizePercentage }} of the customers of tenant {{ $labels.tenant }} "
        "active 24 hours ago have churned since, more than %(factor)s times the daily average "
        "of the week before.",
        "The baseline is the 24h churn rate's own average over the 7 days before the last day\n"
        "(Prometheus history): with less history it averages what there is; with none the\n"
        "alert stays silent. A week without churn has a baseline of 0: then the volume floor\n"
        "alone decides.",
    ),
    Alert(
        "FirstResponseTimeSpike", "warning", "kpi",
        "1h p90 first response > %(factor)sx the p90 of the week before, with >= "
        "%(min_replies)s first replies in 1h and >= %(min_baseline_replies)s in the week",
        f"{total(k('first_response_seconds', 'p90'), '1h')}\n"
        f"  > ignoring (window) group_left () (%(factor)s * {FIRST_RESPONSE_BASELINE})\n"
        f"and {total(s('first_response_seconds_count'), '1h')} >= %(min_replies)s\n"
        f"and ignoring (window) {FIRST_RESPONSE_BASELINE_REPLIES} >= %(min_baseline_replies)s",
        "First replies to tickets of {{ $labels.tenant }} are suddenly slow.",
        "90%% of the first replies of tenant {{ $labels.tenant }} in the last hour took up to "
        "{{ $value | humanizeDuration }}, more than %(factor)s times the p90 of the week "
        "before.",
        "The baseline is the engine's 7d histogram minus its 1h histogram: the week before\n"
        "the last hour, exact bucket counts that need no Prometheus history.",
    ),
    Alert(
        "FirstResponseTimeHigh", "warning", "kpi",
        "24h p90 first response > %(slo)s (the SLO), with >= %(min_replies)s first replies",
        f"{total(k('first_response_seconds', 'p90'), '24h')} > %(slo_seconds)s\n"
        f"and {total(s('first_response_seconds_count'), '24h')} >= %(min_replies)s",
        "First replies to tickets of {{ $labels.tenant }} are slow.",
        "90%% of the first replies of tenant {{ $labels.tenant }} in the last 24 hours took up to "
        "{{ $value | humanizeDuration }} (SLO %(slo)s).",
        params={"slo": lambda t: duration(t["slo_seconds"])},
    ),
    Alert(
        "NpsDrop", "warning", "kpi",
        "7d NPS > %(max_drop_points)s points below the NPS of the 23 days before, with >= "
        "%(min_responses)s responses in each",
        f"{total(k('nps', 'score'), '7d')}\n"
        f"  < ignoring (window) group_left () ({NPS_BASELINE}\n    - %(max_drop_points)s)\n"
        f"and {total(s('nps_responses'), '7d')} >= %(min_responses)s\n"
        f"and ignoring (window) {before(s('nps_responses'))} >= %(min_responses)s",
        "NPS of {{ $labels.tenant }} dropped.",
        "The 7-day NPS of tenant {{ $labels.tenant }} is {{ $value | printf \"%%.0f\" }}, more "
        "than %(max_drop_points)s points below the NPS of the 23 days before.",
        "The baseline is the 30d window minus the 7d window: the 23 days before, from the\n"
        "engine's exact counts (no Prometheus history needed, no overlap with the week).",
    ),
    Alert(
        "CsatDrop", "warning", "kpi",
        "7d CSAT > %(max_drop_points)s points below the CSAT of the 23 days before, with >= "
        "%(min_responses)s responses in each",
        f"{total(k('csat', 'score'), '7d')}\n"
        f"  < ignoring (window) group_left () ({CSAT_BASELINE}\n    - %(max_drop_points)s)\n"
        f"and {total(s('csat_responses'), '7d')} >= %(min_responses)s\n"
        f"and ignoring (window) {before(s('csat_responses'))} >= %(min_responses)s",
        "CSAT of {{ $labels.tenant }} dropped.",
        "The 7-day CSAT of tenant {{ $labels.tenant }} is {{ $value | printf \"%%.1f\" }}%%, "
        "more than %(max_drop_points)s points below the CSAT of the 23 days before.",
    ),
    Alert(
        "LeadConversionDrop", "warning", "kpi",
        "7d lead conversion < %(fraction_pct)s of its value a week earlier, with >= "
        "%(min_leads)s leads created in 7d",
        f"{total(k('lead_conversion_rate', 'ratio'), '7d')}\n"
        f"  < %(min_fraction)s * ({total(k('lead_conversion_rate', 'ratio'), '7d')} offset 1w)\n"
        f"and {total(s('leads_created'), '7d')} >= %(min_leads)s",
        "Lead conversion of {{ $labels.tenant }} dropped week over week.",
        "The 7-day lead conversion rate of tenant {{ $labels.tenant }} is "
        "{{ $value | humanizePercentage }}, less than %(fraction_pct)s of its value a week "
        "earlier.",
        "Week over week: the 7d window against the same window recorded a week earlier, so the\n"
        "leads compared are of the same age (recent leads have had less time to convert).\n"
        "Needs more than a week of Prometheus history.",
        params={"fraction_pct": lambda t: f"{t['min_fraction']:.0%}"},
    ),
    Alert(
        "WinRateDrop", "warning", "kpi",
        "7d win rate < %(fraction_pct)s of its value a week earlier, with >= %(min_closed)s "
        "deals closed in 7d",
        f"{total(k('win_rate', 'ratio'), '7d')}\n"
        f"  < %(min_fraction)s * ({total(k('win_rate', 'ratio'), '7d')} offset 1w)\n"
        f"and {total(s('deals_closed'), '7d')} >= %(min_closed)s",
        "Win rate of {{ $labels.tenant }} dropped week over week.",
        "The 7-day win rate of tenant {{ $labels.tenant }} is {{ $value | humanizePercentage }}, "
        "less than %(fraction_pct)s of its value a week earlier.",
        params={"fraction_pct": lambda t: f"{t['min_fraction']:.0%}"},
    ),
    Alert(
        "MrrFalling", "warning", "kpi",
        "MRR fell by > %(fall_pct)s over 7 days, with >= %(min_customers)s customers 7 days ago",
        f"{total(k('net_new_mrr', 'delta'), '7d')}\n"
        f"  / ({total(s('mrr_at_start'), '7d')} > 0)\n"
        f"  < -%(max_fall)s\n"
        f"and {total(s('active_customers_at_start'), '7d')} >= %(min_customers)s",
        "MRR of {{ $labels.tenant }} is falling.",
        "The MRR of tenant {{ $labels.tenant }} changed by {{ $value | humanizePercentage }} "
        "over the last 7 days (threshold -%(fall_pct)s): churn and contraction outweigh new "
        "and expansion MRR.",
        "Net new MRR over the 7d window as a share of MRR at its start, from the engine's\n"
        "values at T and T-7d (no Prometheus history needed).",
        params={"fall_pct": lambda t: f"{t['max_fall']:.0%}"},
    ),
)

ALERTS: tuple[Alert, ...] = ENGINE_ALERTS + BUSINESS_ALERTS


def duration(seconds: int) -> str:
    """4h, 90m, 45s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def alert_table(markdown: bool) -> list[str]:
    """The threshold table: in the alerts file header, or as Markdown for the runbook."""
    rows = [(a.name, a.text(a.when), a.thresholds["for"], a.severity) for a in ALERTS]
    if markdown:
        lines = ["| alert | fires when | for | severity |", "|---|---|---|---|"]
        lines += [f"| [{n}](#{n.lower()}) | {w} | {f} | {sev} |" for n, w, f, sev in rows]
        return lines
    width = max(len(n) for n, *_ in rows)
    lines = [f"{'alert'.ljust(width)}  {'for'.ljust(4)} {'severity'.ljust(9)}fires when"]
    lines += [f"{n.ljust(width)}  {f.ljust(4)} {sev.ljust(9)}{w}" for n, w, f, sev in rows]
    return lines


def alerts_header() -> str:
    table = "\n".join(f"#   {line}".rstrip() for line in alert_table(markdown=False))
    return f"""\
# GENERATED by prometheus/build_rules.py: edit that script, then run it. Do not edit here.
#
# Alerting rules of crm-kpi. Every alert has severity, component, summary, description and a
# runbook_url into docs/runbook.md, and is tested (fires / stays quiet) in prometheus/tests/.
#
# Thresholds are set in one place, THRESHOLDS in prometheus/build_rules.py, which renders
# this table, the rules below and the table in docs/runbook.md:
#
{table}
#
# Engine and gateway alerts read the raw metrics, not recording rules: health alerts should
# not depend on the recording rules being healthy. Business alerts read the KPI recording
# rules of crm-kpi-recording.yml (another group: they may see a rule's value one evaluation
# late) on a tenant's total (by="none").
"""


# =========================================================================================
# Rendering (plain YAML text, so that comments survive)
# =========================================================================================


def yaml_string(value: str) -> str:
    """A double-quoted YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def comment_lines(text: str, indent: str) -> Iterator[str]:
    for line in text.splitlines():
        yield f"{indent}# {line}".rstrip()


def expr_lines(expr: str, indent: str) -> Iterator[str]:
    if "\n" not in expr:
        yield f"{indent}expr: {expr}"
        return
    yield f"{indent}expr: |"
    yield from (f"{indent}  {line}".rstrip() for line in expr.splitlines())


def render_recording() -> str:
    lines = [RECORDING_HEADER.rstrip("\n"), "groups:"]
    for name, comment, rules in recording_groups():
        lines += list(comment_lines(comment, "  "))
        lines += [f"  - name: {name}", "    rules:"]
        for rule in rules:
            if rule.comment:
                lines.append("")
                lines += list(comment_lines(rule.comment, "      "))
            lines.append(f"      - record: {rule.record}")
            lines += list(expr_lines(rule.expr, "        "))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_alerts() -> str:
    lines = [alerts_header().rstrip("\n"), "groups:"]
    for group, alerts in (("crm-kpi-engine-alerts", ENGINE_ALERTS),
                          ("crm-kpi-business-alerts", BUSINESS_ALERTS)):
        lines += [f"  - name: {group}", "    rules:"]
        for alert in alerts:
            if alert.comment:
                lines += list(comment_lines(alert.comment, "      "))
            lines.append(f"      - alert: {alert.name}")
            lines += list(expr_lines(alert.text(alert.expr), "        "))
            lines += [
                f"        for: {alert.thresholds['for']}",
                "        labels:",
                f"          severity: {alert.severity}",
                f"          component: {alert.component}",
                "        annotations:",
                f"          summary: {yaml_string(alert.text(alert.summary))}",
                f"          description: {yaml_string(alert.text(alert.description))}",
                f"          runbook_url: {yaml_string(f'docs/runbook.md#{alert.name.lower()}')}",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def kpi_table() -> list[str]:
    """Markdown: every catalogue KPI and its recording rule."""
    lines = ["| KPI | recording rule | formula |", "|---|---|---|"]
    for family in FAMILIES:
        for kpi_id, name in family.sum_kpis.items():
            lines.append(f"| `{kpi_id}` | `{s(name)}` | sum of `crm_kpi_{name}` |")
        for rule in family.rules:
            if rule.kpi:
                lines.append(f"| `{rule.kpi}` | `{rule.record}` | {rule.comment} |")
    return lines


def render_runbook(text: str) -> str:
    """docs/runbook.md with its generated blocks replaced."""
    blocks = {"thresholds": alert_table(markdown=True), "kpi-rules": kpi_table()}
    for name, lines in blocks.items():
        begin = f"<!-- BEGIN {name}: generated by prometheus/build_rules.py -->"
        end = f"<!-- END {name} -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise SystemExit(f"{RUNBOOK}: markers for {name!r} not found ({begin})")
        text = text[:start] + "\n".join([begin, *lines]) + "\n" + text[stop:]
    return text


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    return {
        RECORDING_FILE: render_recording(),
        ALERTS_FILE: render_alerts(),
        RUNBOOK: render_runbook(RUNBOOK.read_text()),
    }


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a file differs from the generator")
    args = parser.parse_args(list(argv) if argv is not None else None)
    stale = []
    for path, text in render().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python prometheus/build_rules.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
