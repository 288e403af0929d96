#!/usr/bin/env python3
"""Build the Grafana dashboards of crm-kpi from plain Python dicts.

    python grafana/build_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/build_dashboards.py --check   # exit 1 if a file is out of date

The JSON files are generated: change this script, run it, commit both
(tests/unit/test_grafana.py fails when they drift apart). Panels query the recording rules
of prometheus/rules/crm-kpi-recording.yml, whose level `tenant_window_segment` keeps the
labels tenant, window, by and segment: {by="none"} is a tenant's total, {by="channel"} its
channel slices (label `segment`). Rule names and the first-response SLO come from
prometheus/build_rules.py, so a renamed rule or a new threshold reaches the boards.
No dependency beyond the standard library.

Template variables: `tenant`, `window` (1h, 24h, 7d, 30d, mtd), and on the boards whose KPIs
are sliced, `by` (the dimension) and `segment` (its values, several at once). Headline
numbers are a tenant's totals; "by $by" panels show the selected segments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "crm-kpi-prometheus"}
TAGS = ["crm-kpi"]
WINDOWS = ["1h", "24h", "7d", "30d", "mtd"]
MONEY_NOTE = "In the reporting currency (CRMKPI_REPORTING_CURRENCY)."
LEVEL = "tenant_window_segment"


def _load_rules() -> ModuleType:
    """prometheus/build_rules.py (rule names, thresholds), imported by path."""
    path = HERE.parent / "prometheus" / "build_rules.py"
    spec = importlib.util.spec_from_file_location("crm_kpi_build_rules", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


RULES = _load_rules()
KPI_RULES: dict[str, str] = RULES.KPI_RULES
FIRST_RESPONSE_SLO = RULES.THRESHOLDS["FirstResponseTimeHigh"]["slo_seconds"]

Panel = dict[str, Any]


# -- targets: the business's goals, shown as stat thresholds ------------------------------


@dataclass(frozen=True)
class Target:
    """Green at or beyond `good`, red at or beyond `bad` (the wrong side), amber between.

    Higher is better when good > bad. `window`: the only window the numbers hold for (a churn
    rate over 30 days is no daily churn rate); None for ratios that do not scale with the
    window. These are starting points: set your own here.
    """

    good: float
    bad: float
    window: str | None = None

    def steps(self) -> list[dict[str, Any]]:
        if self.good >= self.bad:
            return [{"color": "red", "value": None}, {"color": "orange", "value": self.bad},
                    {"color": "green", "value": self.good}]
        return [{"color": "green", "value": None}, {"color": "orange", "value": self.good},
                {"color": "red", "value": self.bad}]

    def describe(self, unit: str) -> str:
        def show(value: float) -> str:
            if unit == "percentunit":
                return f"{value:.0%}"
            if unit == "s":
                return f"{value / 3600:g}h"
            return f"{value:g}"
        better = "higher" if self.good >= self.bad else "lower"
        return f" Target {show(self.good)} (green), alarm at {show(self.bad)} (red); {better} is better."


TARGETS: dict[str, Target] = {
    "win_rate": Target(good=0.30, bad=0.20),
    "lead_conversion_rate": Target(good=0.15, bad=0.05),
    "marketing_roi": Target(good=2.0, bad=0.0),
    "ltv_to_cac": Target(good=3.0, bad=1.0),
    "churn_rate": Target(good=0.03, bad=0.08, window="30d"),
    "revenue_churn_rate": Target(good=0.02, bad=0.05, window="30d"),
    "renewal_rate": Target(good=0.90, bad=0.80),
    "nps": Target(good=30, bad=0),
    "csat": Target(good=80, bad=60),
    "first_response_seconds_p90": Target(good=FIRST_RESPONSE_SLO / 2, bad=FIRST_RESPONSE_SLO),
    "cart_abandonment_rate": Target(good=0.60, bad=0.80),
}


# -- queries ---------------------------------------------------------------------------------


def rule(kpi_or_field: str) -> str:
    """The recording rule of a catalogue KPI, or the summed input `crm_kpi_<field>:sum`."""
    return KPI_RULES.get(kpi_or_field) or f"{LEVEL}:crm_kpi_{kpi_or_field}:sum"


def total(name: str, window: str = "$window") -> str:
    """A tenant's total of a KPI (or summed input) in the selected window."""
    return f'{rule(name)}{{tenant="$tenant", window="{window}", by="none"}}'


def sliced(name: str, by: str = "$by") -> str:
    """A KPI per selected segment of a dimension (legend {{segment}})."""
    return f'{rule(name)}{{tenant="$tenant", window="$window", by="{by}", segment=~"$segment"}}'


def per(name: str, by: str) -> str:
    """A KPI per segment of a fixed dimension, every segment."""
    return f'{rule(name)}{{tenant="$tenant", window="$window", by="{by}"}}'


# -- panels ----------------------------------------------------------------------------------


def target(expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    """A Prometheus query of a panel."""
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "instant": instant,
        "range": not instant,
        "legendFormat": legend or "__auto",
    }


def _panel(kind: str, title: str, description: str, targets: list[dict[str, Any]],
           unit: str, width: int, height: int) -> Panel:
    for ref, query in zip("ABCDEFGHIJ", targets, strict=False):
        query["refId"] = ref
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                # A KPI whose denominator is 0 has no sample: null, shown as n/a.
                "noValue": "n/a",
                "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"},
                "thresholds": {"mode": "absolute", "steps": [{"color": "blue", "value": None}]},
            },
            "overrides": [],
        },
    }


def stat(title: str, expr: str, unit: str = "short", description: str = "",
         decimals: int | None = None, width: int = 4, goal: Target | None = None) -> Panel:
    """One number: the latest value of an instant query, coloured by its target if any."""
    if goal is not None:
        description += goal.describe(unit)
    panel = _panel("stat", title, description.strip(), [target(expr, title, instant=True)],
                   unit, width, 4)
    defaults = panel["fieldConfig"]["defaults"]
    if decimals is not None:
        defaults["decimals"] = decimals
    if goal is not None:
        defaults["thresholds"]["steps"] = goal.steps()
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value" if goal is not None else "none",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
    return panel


def kpi_stat(kpi_id: str, title: str, unit: str = "short", description: str = "",
             decimals: int | None = None, window: str = "$window", width: int = 4) -> Panel:
    """A tenant's total of a catalogue KPI, with its target when TARGETS has one for the
    panel's window."""
    goal = TARGETS.get(kpi_id)
    if goal is not None and goal.window not in (None, window):
        goal = None
    return stat(title, total(kpi_id, window), unit, description, decimals, width, goal)


def timeseries(title: str, targets: list[dict[str, Any]], unit: str = "short",
               description: str = "", width: int = 12, height: int = 8,
               threshold: float | None = None) -> Panel:
    """Lines over the dashboard's time range; `threshold` draws a red line (an SLO)."""
    panel = _panel("timeseries", title, description, targets, unit, width, height)
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
    if threshold is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
        panel["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
            {"color": "transparent", "value": None}, {"color": "red", "value": threshold}]
    panel["fieldConfig"]["defaults"]["custom"] = custom
    panel["options"] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def bars(title: str, targets: list[dict[str, Any]], unit: str = "short",
         description: str = "", width: int = 8, height: int = 8) -> Panel:
    """Horizontal bars of the latest values (one per series)."""
    for query in targets:
        query.update(instant=True, range=False)
    panel = _panel("bargauge", title, description, targets, unit, width, height)
    panel["options"] = {
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    }
    return panel


def row(title: str) -> Panel:
    """A full-width section title."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}


def layout(panels: Iterable[Panel]) -> list[Panel]:
    """Give panels ids and positions: left to right, wrapping at Grafana's 24 columns."""
    placed: list[Panel] = []
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        grid = panel["gridPos"]
        if x + grid["w"] > 24 or panel["type"] == "row":
            x, y, row_height = 0, y + row_height, 0
        grid.update(x=x, y=y)
        x += grid["w"]
        row_height = max(row_height, grid["h"])
        placed.append({"id": number, **panel})
    return placed


# -- template variables ----------------------------------------------------------------------

def any_input(*matchers: str) -> str:
    """Every summed KPI input (whatever the family): its tenants and segments have data."""
    return "{" + ", ".join([f'__name__=~"{LEVEL}:crm_kpi_.+:sum"', *matchers]) + "}"


def query_variable(name: str, label: str, query: str, multi: bool = False) -> dict[str, Any]:
    """A variable whose values come from Prometheus labels."""
    variable: dict[str, Any] = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: new tenants and segments appear
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
    }
    if multi:
        variable["allValue"] = ".+"
        variable["current"] = {"text": ["All"], "value": ["$__all"]}
    return variable


def custom_variable(name: str, label: str, values: list[str], default: str) -> dict[str, Any]:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"text": default, "value": default},
        "options": [{"text": v, "value": v, "selected": v == default} for v in values],
        "multi": False,
        "includeAll": False,
    }


def tenant_variable() -> dict[str, Any]:
    return query_variable("tenant", "Tenant", f"label_values({any_input()}, tenant)")


def window_variable() -> dict[str, Any]:
    """The KPI window: the engine computes every window, Grafana picks one."""
    return custom_variable("window", "Window", WINDOWS, "30d")


def slice_variables(dimensions: list[str]) -> list[dict[str, Any]]:
    """`by` (a dimension this board's KPIs are sliced by) and `segment` (its values)."""
    selector = any_input('tenant="$tenant"', 'by="$by"')
    return [custom_variable("by", "Slice by", dimensions, dimensions[0]),
            query_variable("segment", "Segment", f"label_values({selector}, segment)", multi=True)]


def kpi_variables(dimensions: list[str] | None = None) -> list[dict[str, Any]]:
    """tenant and window, and `by`/`segment` when the board's KPIs are sliced."""
    variables = [tenant_variable(), window_variable()]
    if dimensions:
        variables += slice_variables(dimensions)
    return variables


# -- dashboards ------------------------------------------------------------------------------


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]],
              panels: Iterable[Panel]) -> dict[str, Any]:
    """A complete dashboard; provisioning keys it by its uid, which must never change."""
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "title": "CRM KPI", "tags": TAGS, "asDropdown": True,
                   "includeVars": True, "keepTime": True}],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def executive() -> dict[str, Any]:
    """The headline KPIs of one tenant over one window, against their targets."""
    panels = [
        row("Revenue ($window)"),
        kpi_stat("mrr", "MRR", description="Monthly recurring revenue at the end of the "
                 "window (now). " + MONEY_NOTE, decimals=0),
        kpi_stat("net_new_mrr", "Net new MRR", description="MRR now - MRR at the window "
                 "start. " + MONEY_NOTE, decimals=0),
        kpi_stat("won_revenue", "Won revenue", description=MONEY_NOTE, decimals=0),
        kpi_stat("churn_rate", "Customer churn (30d)", "percentunit",
                 "Customers active 30 days ago who have churned since.", 1, window="30d"),
        kpi_stat("ltv_to_cac", "LTV : CAC", description="Customer lifetime value over the "
                 "30-day customer acquisition cost.", decimals=1),
        kpi_stat("cac", "CAC", description="(Marketing + sales spend) / new customers. "
                 + MONEY_NOTE, decimals=0),
        row("Sales and marketing ($window)"),
        kpi_stat("win_rate", "Win rate", "percentunit", "Deals won / (won + lost).", 1),
        kpi_stat("lead_conversion_rate", "Lead conversion", "percentunit",
                 "Share of the leads created in the window that have converted.", 1),
        kpi_stat("marketing_roi", "Marketing ROI", "percentunit",
                 "(Won revenue - marketing spend) / marketing spend.", 0),
        kpi_stat("deals_won", "Deals won", decimals=0),
        kpi_stat("new_customers", "New customers", decimals=0),
        kpi_stat("avg_deal_size", "Average deal size", description=MONEY_NOTE, decimals=0),
        row("Customers ($window)"),
        kpi_stat("nps", "NPS", description="Net Promoter Score, -100 to 100.", decimals=0),
        kpi_stat("csat", "CSAT", "percent", "Satisfied (top-2 box) / responses.", 0),
        kpi_stat("first_response_seconds_p90", "First response p90", "s",
                 "90% of first public agent replies came within this time."),
        kpi_stat("open_tickets", "Open tickets", description="Tickets open now.", decimals=0),
        kpi_stat("active_users", "CRM active users", description="Distinct users who "
                 "logged in.", decimals=0),
        kpi_stat("active_customers", "Active customers", description="Customers with an "
                 "active subscription now.", decimals=0),
        row("Trends ($window window at each point in time)"),
        timeseries("Won revenue and spend", [
            target(total("won_revenue"), "won revenue"),
            target(total("spend_marketing"), "marketing spend"),
            target(total("spend_sales"), "sales spend"),
        ], description="Each point is the window's total at that time. " + MONEY_NOTE,
           width=8),
        timeseries("Win rate and lead conversion", [
            target(total("win_rate"), "win rate"),
            target(total("lead_conversion_rate"), "lead conversion"),
        ], "percentunit", width=8),
        timeseries("NPS and CSAT", [
            target(total("nps"), "NPS"),
            target(total("csat"), "CSAT %"),
        ], width=8),
        row("By $by ($window)"),
        bars("Won revenue by $by", [target(sliced("won_revenue"), "{{segment}}")],
             description=MONEY_NOTE),
        bars("Win rate by $by", [target(sliced("win_rate"), "{{segment}}")], "percentunit"),
        bars("Leads created by $by", [target(sliced("leads_created"), "{{segment}}")]),
    ]
    return dashboard("crm-kpi-executive", "CRM KPI / Executive overview",
                     "Headline KPIs of a tenant over a window, coloured against their targets.",
                     kpi_variables(["channel", "region"]), panels)


def funnel() -> dict[str, Any]:
    """From visit to won deal, per channel or region; spend, ROI and commerce by channel."""
    panels = [
        row("Funnel ($window, all segments)"),
        kpi_stat("visits", "Visits", decimals=0),
        kpi_stat("traffic_to_lead_rate", "Traffic to lead", "percentunit",
                 "Leads created / visits.", 2),
        kpi_stat("lead_conversion_rate", "Lead conversion", "percentunit",
                 "Share of the leads created in the window that have converted.", 1),
        kpi_stat("lead_abandonment_rate", "Lead abandonment", "percentunit",
                 "Share of the leads created in the window never touched nor converted.", 1),
        kpi_stat("win_rate", "Win rate", "percentunit", "Deals won / (won + lost).", 1),
        kpi_stat("sales_cycle_seconds_avg", "Sales cycle", "s",
                 "Mean time from deal created to won, over deals won in the window."),
        bars("Funnel", [
            target(total("leads_created"), "leads created"),
            target(total("leads_engaged"), "leads touched or converted"),
            target(total("leads_converted"), "leads converted"),
            target(total("deals_won"), "deals won"),
        ], description="Counts of the tenant in the window: leads created in it, and how many "
           "of those were touched or converted since; deals won in it.", width=12),
        bars("Spend by category", [
            target(total(f"spend_{category}"), category)
            for category in ("marketing", "sales", "retention", "crm")
        ], description="The tenant's total. " + MONEY_NOTE, width=12),
        row("Conversion by $by ($window window)"),
        timeseries("Lead conversion rate by $by", [
            target(sliced("lead_conversion_rate"), "{{segment}}"),
        ], "percentunit", "Share of the leads created in the window that have converted."),
        timeseries("Win rate by $by", [
            target(sliced("win_rate"), "{{segment}}"),
        ], "percentunit", "Deals won / (deals won + deals lost)."),
        row("Deals by $by ($window)"),
        bars("Leads created", [target(sliced("leads_created"), "{{segment}}")]),
        bars("Deals won", [target(sliced("deals_won"), "{{segment}}")]),
        bars("Deals lost", [target(sliced("deals_lost"), "{{segment}}")]),
        bars("Won revenue", [target(sliced("won_revenue"), "{{segment}}")],
             description=MONEY_NOTE),
        bars("Average deal size", [target(sliced("avg_deal_size"), "{{segment}}")],
             description=MONEY_NOTE),
        bars("Sales cycle", [target(sliced("sales_cycle_seconds_avg"), "{{segment}}")], "s",
             "Mean time from deal created to won."),
        row("Marketing by channel ($window)"),
        bars("Visits", [target(per("visits", "channel"), "{{segment}}")]),
        bars("Traffic to lead", [target(per("traffic_to_lead_rate", "channel"), "{{segment}}")],
             "percentunit", "Leads created / visits."),
        bars("Marketing spend", [target(per("spend_marketing", "channel"), "{{segment}}")],
             description=MONEY_NOTE),
        bars("Marketing ROI", [target(per("marketing_roi", "channel"), "{{segment}}")],
             "percentunit", "(Won revenue - marketing spend) / marketing spend.", width=12),
        bars("Sales spend", [target(per("spend_sales", "channel"), "{{segment}}")],
             description=MONEY_NOTE, width=12),
        row("Commerce ($window)"),
        kpi_stat("orders", "Orders", decimals=0),
        kpi_stat("avg_order_value", "Average order value", description=MONEY_NOTE, decimals=2),
        kpi_stat("repeat_purchase_rate", "Repeat purchase rate", "percentunit",
                 "Buyers with two orders or more / buyers, in the window.", 1),
        kpi_stat("cart_abandonment_rate", "Cart abandonment", "percentunit",
                 "Carts created in the window never checked out.", 1),
        bars("Orders by channel", [target(per("orders", "channel"), "{{segment}}")], width=8),
    ]
    return dashboard("crm-kpi-funnel", "CRM KPI / Sales and marketing funnel",
                     "Visits to leads to won deals per channel or region; spend, ROI and "
                     "commerce by channel.", kpi_variables(["channel", "region"]), panels)


def revenue() -> dict[str, Any]:
    """MRR and its movements, customers, churn and the LTV family."""
    panels = [
        row("Recurring revenue (now, and over $window)"),
        kpi_stat("mrr", "MRR", description="Now. " + MONEY_NOTE, decimals=0),
        kpi_stat("net_new_mrr", "Net new MRR", description="MRR now - MRR at the window "
                 "start. " + MONEY_NOTE, decimals=0),
        kpi_stat("active_customers", "Active customers", decimals=0),
        kpi_stat("arpu", "ARPU", description="MRR / active customers, now. " + MONEY_NOTE,
                 decimals=2),
        kpi_stat("cltv", "Customer lifetime value", description="ARPU x gross margin / "
                 "30-day churn rate. " + MONEY_NOTE, decimals=0),
        kpi_stat("ltv_to_cac", "LTV : CAC", description="CLTV over the 30-day CAC.", decimals=1),
        row("Churn and retention ($window; churn targets over 30 days)"),
        kpi_stat("churn_rate", "Customer churn (30d)", "percentunit",
                 "Customers active 30 days ago who have churned since.", 2, window="30d"),
        kpi_stat("revenue_churn_rate", "Gross MRR churn (30d)", "percentunit",
                 "MRR cancelled or contracted in 30 days / MRR 30 days ago.", 2, window="30d"),
        kpi_stat("churn_rate", "Customer churn", "percentunit",
                 "Customers active at the window start who have churned since.", 2),
        kpi_stat("renewal_rate", "Renewal rate", "percentunit",
                 "Renewals / (renewals + cancellations).", 1),
        kpi_stat("retention_cost_per_customer", "Retention cost per customer",
                 description="Retention spend / active customers. " + MONEY_NOTE, decimals=2),
        kpi_stat("new_customers", "New customers", decimals=0),
        kpi_stat("cac", "CAC", description="(Marketing + sales spend) / new customers. "
                 + MONEY_NOTE, decimals=0),
        kpi_stat("retention_rate", "Customer retention", "percentunit", "1 - churn.", 1),
        kpi_stat("revenue_churn_rate", "Gross MRR churn", "percentunit",
                 "MRR cancelled or contracted in the window / MRR at its start.", 2),
        row("Trends"),
        timeseries("MRR now and at the window start", [
            target(total("mrr"), "MRR"),
            target(total("mrr_at_start"), "MRR at the $window window start"),
        ], description=MONEY_NOTE, width=8),
        timeseries("Customer churn by window", [
            target(total("churn_rate", window), window) for window in ("24h", "7d", "30d")
        ], "percentunit", "The 24h rate against the longer windows: a spike shows as the "
           "24h line leaving the others (the ChurnSpike alert compares it with its own "
           "7-day average).", width=8),
        timeseries("Net new MRR ($window window)", [target(total("net_new_mrr"), "net new MRR")],
                   description=MONEY_NOTE, width=8),
        row("By $by"),
        bars("MRR", [target(sliced("mrr"), "{{segment}}")], description=MONEY_NOTE),
        bars("Active customers", [target(sliced("active_customers"), "{{segment}}")]),
        bars("ARPU", [target(sliced("arpu"), "{{segment}}")], description=MONEY_NOTE),
        bars("Customer churn ($window)", [target(sliced("churn_rate"), "{{segment}}")],
             "percentunit"),
        bars("Gross MRR churn ($window)", [target(sliced("revenue_churn_rate"), "{{segment}}")],
             "percentunit"),
        bars("Churned customers by reason ($window)", [
            target(per("churned_customers", "reason"), "{{segment}}"),
        ], description="Voluntary cancellations against failed payments (involuntary)."),
    ]
    return dashboard("crm-kpi-revenue", "CRM KPI / Revenue and churn",
                     "MRR, customers, churn, retention and lifetime value, per plan or region.",
                     kpi_variables(["plan", "region"]), panels)


def support() -> dict[str, Any]:
    """Satisfaction surveys and the support desk: response times from the histogram."""
    p90, p50 = rule("first_response_seconds_p90"), rule("first_response_seconds_p50")
    slo = RULES.duration(FIRST_RESPONSE_SLO)
    panels = [
        row("Satisfaction ($window)"),
        kpi_stat("nps", "NPS", description="Net Promoter Score, -100 to 100.", decimals=0),
        kpi_stat("csat", "CSAT", "percent", "Satisfied (top-2 box) / responses.", 0),
        kpi_stat("ces", "Customer effort", description="Mean CES score.", decimals=2),
        stat("Survey responses", f'sum({total("nps_responses")}) + sum({total("csat_responses")})'
             f' or sum({total("nps_responses")}) or sum({total("csat_responses")})',
             description="NPS and CSAT answers in the window.", decimals=0),
        bars("NPS answers", [
            target(total("nps_promoters"), "promoters (9-10)"),
            target(total("nps_passives"), "passives (7-8)"),
            target(total("nps_detractors"), "detractors (0-6)"),
        ], width=8, height=4),
        row("Support desk ($window)"),
        kpi_stat("tickets_created", "Tickets created", decimals=0),
        kpi_stat("open_tickets", "Open tickets", description="Tickets open now.", decimals=0),
        kpi_stat("first_response_seconds_p50", "First response p50", "s",
                 "Median time to the first public agent reply (interpolated within the "
                 "histogram's buckets; the API's value is exact to 1%)."),
        kpi_stat("first_response_seconds_p90", "First response p90", "s",
                 f"90th percentile time to the first public agent reply; SLO {slo}."),
        kpi_stat("first_response_seconds_avg", "First response mean", "s"),
        kpi_stat("resolution_seconds_avg", "Resolution mean", "s",
                 "Mean time from ticket created to its first resolution."),
        row("Trends"),
        timeseries(f"First response quantiles ($window window), SLO {slo}", [
            target(total("first_response_seconds_p50"), "p50"),
            target(total("first_response_seconds_p90"), "p90"),
        ], "s", "Quantiles of the first-reply delays of the tickets first replied in the "
           "window, from the histogram crm_kpi_first_response_seconds; the red line is the "
           "p90 SLO of the FirstResponseTimeHigh alert.", width=8,
           threshold=FIRST_RESPONSE_SLO),
        timeseries("First response p90: last hour against the week", [
            target(f'{p90}{{tenant="$tenant", window="1h", by="none"}}', "last hour"),
            target(f'{p90}{{tenant="$tenant", window="7d", by="none"}}', "last 7 days"),
        ], "s", "The FirstResponseTimeSpike alert fires when the hour's p90 is over twice the "
           "week's.", width=8),
        timeseries("NPS and CSAT: week against month", [
            target(total("nps", "7d"), "NPS 7d"),
            target(total("nps", "30d"), "NPS 30d"),
            target(total("csat", "7d"), "CSAT 7d"),
            target(total("csat", "30d"), "CSAT 30d"),
        ], description="The NpsDrop and CsatDrop alerts compare the week with the 23 days "
           "before it.", width=8),
        row("By $by ($window)"),
        bars("Tickets created", [target(sliced("tickets_created"), "{{segment}}")]),
        bars("First response p90", [
            target(f'{p90}{{tenant="$tenant", window="$window", by="$by", '
                   f'segment=~"$segment"}}', "{{segment}}"),
        ], "s"),
        bars("First response p50", [
            target(f'{p50}{{tenant="$tenant", window="$window", by="$by", '
                   f'segment=~"$segment"}}', "{{segment}}"),
        ], "s"),
        bars("Resolution mean", [target(sliced("resolution_seconds_avg"), "{{segment}}")],
             "s", width=12),
        bars("First response mean", [target(sliced("first_response_seconds_avg"),
                                            "{{segment}}")], "s", width=12),
    ]
    return dashboard("crm-kpi-support", "CRM KPI / Customer experience and support",
                     "NPS, CSAT, CES and the support desk: ticket volume, first response and "
                     "resolution times, per priority or channel.",
                     kpi_variables(["priority", "channel"]), panels)


def adoption() -> dict[str, Any]:
    """Is the CRM used, and does it pay for itself."""
    panels = [
        row("Adoption ($window)"),
        kpi_stat("active_users", "Active users", description="Distinct users who logged in.",
                 decimals=0),
        kpi_stat("records_created", "Records created", decimals=0),
        stat("Records per active user",
             f'{total("records_created")} / ({total("active_users")} > 0)',
             decimals=1),
        kpi_stat("routine_task_seconds_avg", "Routine task time", "s",
                 "Mean duration of completed routine tasks."),
        kpi_stat("spend_crm", "CRM spend", description=MONEY_NOTE, decimals=0),
        kpi_stat("crm_roi", "CRM ROI", "percentunit",
                 "(Won revenue x gross margin - CRM spend) / CRM spend.", 0),
        row("Trends"),
        timeseries("Active users by window", [
            target(total("active_users", window), window) for window in ("1h", "24h", "7d", "30d")
        ], description="Distinct users who logged in during each window.", width=8),
        timeseries("Records created ($window window)", [
            target(total("records_created"), "records created"),
        ], width=8),
        timeseries("Routine task time ($window window)", [
            target(total("routine_task_seconds_avg"), "mean"),
        ], "s", width=8),
        row("CRM spend and return by channel ($window)"),
        bars("CRM spend", [target(per("spend_crm", "channel"), "{{segment}}")],
             description=MONEY_NOTE, width=12),
        bars("CRM ROI", [target(per("crm_roi", "channel"), "{{segment}}")], "percentunit",
             width=12),
    ]
    return dashboard("crm-kpi-adoption", "CRM KPI / CRM adoption",
                     "Active users, records, routine-task time and the return on the CRM.",
                     kpi_variables(), panels)


def engine() -> dict[str, Any]:
    """Is the engine keeping up: workers, throughput, lag, dead letters, the gateway."""
    panels = [
        row("Status"),
        stat("Workers up", 'count(up{job="crm-kpi-worker"} == 1) or vector(0)', decimals=0),
        stat("Gateway up", 'sum(up{job="crm-kpi-gateway"}) or vector(0)', decimals=0),
        stat("Consumer lag", "sum(job:crm_consumer_lag:sum)", decimals=0,
             description="Records of the input topics not yet applied, over all partitions."),
        stat("Since last event applied",
             "time() - max(job:crm_kpi_last_event_timestamp_seconds:max)", "s",
             "Idle is fine; growing while there is lag means the engine is stuck."),
        stat("Events per second", "sum(job:crm_events_processed:rate5m)", decimals=1),
        stat("Firing alerts", 'count(ALERTS{alertstate="firing"}) or vector(0)', decimals=0),
        row("Workers"),
        timeseries("Events applied and rejected", [
            target("sum(job:crm_events_processed:rate5m)", "applied"),
            target("sum(job:crm_events_rejected:rate5m)", "rejected (dead letter)"),
        ], "ops"),
        timeseries("Consumer lag by partition", [
            target("max by (topic, partition) (crm_consumer_lag)", "{{topic}} {{partition}}"),
        ], description="Each partition is owned by one worker at a time."),
        timeseries("Events applied by worker", [
            target("sum by (instance) (rate(crm_events_processed_total[5m]))", "{{instance}}"),
        ], "ops", "How the partitions' work is spread over the workers."),
        timeseries("Since last event applied, by worker", [
            target("time() - crm_kpi_last_event_timestamp_seconds", "{{instance}}"),
        ], "s", "The KpiStale alert fires when this passes 10 minutes while records wait."),
        row("Gateway"),
        timeseries("Webhook requests by outcome", [
            target("sum by (outcome) (provider_outcome:crm_gateway_requests:rate5m)",
                   "{{outcome}}"),
        ], "reqps"),
        timeseries("Webhook requests by provider", [
            target("sum by (provider) (provider_outcome:crm_gateway_requests:rate5m)",
                   "{{provider}}"),
        ], "reqps"),
        timeseries("Kafka publish latency", [
            target(f"histogram_quantile({q}, sum by (le) "
                   f"(job:crm_gateway_publish_duration_seconds_bucket:rate5m))", f"p{q * 100:g}")
            for q in (0.5, 0.9, 0.99)
        ], "s", "Time for a webhook's events to be acknowledged by all in-sync replicas."),
        timeseries("Duplicates and dead letters", [
            target("sum(job:crm_gateway_dedup_hits:rate5m)", "duplicates (dedup hits)"),
            target("sum(job:crm_gateway_deadletter_writes:rate5m)", "gateway dead letters"),
            target("sum(job:crm_events_rejected:rate5m)", "worker rejects"),
        ], "ops"),
    ]
    return dashboard("crm-kpi-engine", "CRM KPI / Engine health",
                     "Workers, consumer lag, dead letters and the webhook gateway.", [], panels)


DASHBOARDS = {
    "crm-kpi-executive.json": executive,
    "crm-kpi-funnel.json": funnel,
    "crm-kpi-revenue.json": revenue,
    "crm-kpi-support.json": support,
    "crm-kpi-adoption.json": adoption,
    "crm-kpi-engine.json": engine,
}


def render() -> dict[str, str]:
    """Every dashboard file name and its JSON text."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a file differs from the generator")
    args = parser.parse_args(argv)
    stale = []
    rendered = render()
    for name, text in rendered.items():
        path = OUT_DIR / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    extra = sorted(p.name for p in OUT_DIR.glob("*.json") if p.name not in rendered)
    if args.check and (stale or extra):
        problems = [f"out of date: {', '.join(stale)}"] if stale else []
        problems += [f"not generated: {', '.join(extra)}"] if extra else []
        sys.stderr.write("; ".join(problems) + "; run python grafana/build_dashboards.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
