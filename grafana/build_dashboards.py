#!/usr/bin/env python3
"""Build the Grafana dashboards of crm-kpi from plain Python dicts.

    python grafana/build_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/build_dashboards.py --check   # exit 1 if a file is out of date

The JSON files are generated: change this script, run it, commit both
(tests/unit/test_grafana.py fails when they drift apart). Panels query the recording rules
of prometheus/rules/crm-kpi-recording.yml, whose level `tenant_window_segment` keeps the
labels tenant, window, by and segment: {by="none"} is a tenant's total, {by="channel"} its
channel slices (label `segment`). No dependency beyond the standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "crm-kpi-prometheus"}
TAGS = ["crm-kpi"]
WINDOWS = ["1h", "24h", "7d", "30d", "mtd"]
MONEY_NOTE = "In the reporting currency (CRMKPI_REPORTING_CURRENCY)."

Panel = dict[str, Any]

# -- queries ---------------------------------------------------------------------------------


def kpi(rule: str, by: str = "none", segment: str | None = None) -> str:
    """A recording rule of the tenant_window_segment level for the selected tenant/window."""
    matchers = f'tenant="$tenant", window="$window", by="{by}"'
    if segment is not None:
        matchers += f', segment=~"{segment}"'
    return f"tenant_window_segment:{rule}{{{matchers}}}"


def total(rule: str) -> str:
    """The tenant's total of a KPI."""
    return kpi(rule)


def by_channel(rule: str) -> str:
    """A KPI per selected channel (legend {{segment}})."""
    return kpi(rule, "channel", "$channel")


def channel_sum(rule: str) -> str:
    """A count summed over the selected channels (all of them = the tenant's total)."""
    return f"sum({by_channel(rule)})"


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
         decimals: int | None = None, width: int = 4) -> Panel:
    """One number: the latest value of an instant query."""
    panel = _panel("stat", title, description, [target(expr, title, instant=True)],
                   unit, width, 4)
    if decimals is not None:
        panel["fieldConfig"]["defaults"]["decimals"] = decimals
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
    return panel


def timeseries(title: str, targets: list[dict[str, Any]], unit: str = "short",
               description: str = "", width: int = 12, height: int = 8) -> Panel:
    """Lines over the dashboard's time range."""
    panel = _panel("timeseries", title, description, targets, unit, width, height)
    panel["fieldConfig"]["defaults"]["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
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
    return "{" + ", ".join(['__name__=~"tenant_window_segment:crm_kpi_.+:sum"', *matchers]) + "}"


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
    return variable


def tenant_variable() -> dict[str, Any]:
    return query_variable("tenant", "Tenant", f"label_values({any_input()}, tenant)")


def window_variable() -> dict[str, Any]:
    """The KPI window: the engine computes every window, Grafana picks one."""
    return {
        "type": "custom",
        "name": "window",
        "label": "Window",
        "query": ",".join(WINDOWS),
        "current": {"text": "30d", "value": "30d"},
        "options": [{"text": w, "value": w, "selected": w == "30d"} for w in WINDOWS],
        "multi": False,
        "includeAll": False,
    }


def channel_variable() -> dict[str, Any]:
    selector = any_input('tenant="$tenant"', 'by="channel"')
    query = f"label_values({selector}, segment)"
    return query_variable("channel", "Channel", query, multi=True)


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
    """The headline KPIs of one tenant over one window."""
    panels = [
        row("Revenue and pipeline ($window)"),
        stat("Won revenue", total("crm_kpi_won_revenue:sum"), description=MONEY_NOTE,
             decimals=0),
        stat("Deals won", total("crm_kpi_deals_won:sum"), decimals=0),
        stat("Win rate", total("crm_win_rate:ratio"), "percentunit",
             "Deals won / (deals won + deals lost).", 1),
        stat("Average deal size", total("crm_avg_deal_size:mean"),
             description="Won revenue / deals won with a known amount. " + MONEY_NOTE,
             decimals=0),
        stat("Sales cycle", total("crm_sales_cycle_seconds:mean"), "s",
             "Mean time from deal created to won, over deals won in the window."),
        stat("Lead conversion", total("crm_lead_conversion_rate:ratio"), "percentunit",
             "Share of the leads created in the window that have converted.", 1),
        row("Marketing ($window)"),
        stat("Visits", total("crm_kpi_visits:sum"), decimals=0),
        stat("Leads created", total("crm_kpi_leads_created:sum"), decimals=0),
        stat("Traffic to lead", total("crm_traffic_to_lead_rate:ratio"), "percentunit",
             "Leads created / visits.", 2),
        stat("Lead abandonment", total("crm_lead_abandonment_rate:ratio"), "percentunit",
             "Share of the leads created in the window never touched nor converted.", 1),
        stat("Marketing ROI", total("crm_marketing_roi:ratio"), "percentunit",
             "(Won revenue - marketing spend) / marketing spend.", 0),
        stat("CRM ROI", total("crm_crm_roi:ratio"), "percentunit",
             "(Won revenue x gross margin - CRM spend) / CRM spend.", 0),
        row("Trends"),
        timeseries("Won revenue and marketing spend ($window window)", [
            target(total("crm_kpi_won_revenue:sum"), "won revenue"),
            target(total("crm_kpi_spend_marketing:sum"), "marketing spend"),
        ], description="Each point is the window's total at that time. " + MONEY_NOTE),
        timeseries("Win rate and lead conversion ($window window)", [
            target(total("crm_win_rate:ratio"), "win rate"),
            target(total("crm_lead_conversion_rate:ratio"), "lead conversion"),
        ], "percentunit"),
        bars("Won revenue by channel", [
            target(kpi("crm_kpi_won_revenue:sum", "channel"), "{{segment}}"),
        ], description=MONEY_NOTE),
        bars("Won revenue by region", [
            target(kpi("crm_kpi_won_revenue:sum", "region"), "{{segment}}"),
        ], description=MONEY_NOTE),
        bars("Spend by category", [
            target(total(f"crm_kpi_spend_{category}:sum"), category)
            for category in ("marketing", "sales", "retention", "crm")
        ], description=MONEY_NOTE),
    ]
    return dashboard("crm-kpi-executive", "CRM KPI / Executive overview",
                     "Headline sales and marketing KPIs of a tenant over a window.",
                     [tenant_variable(), window_variable()], panels)


def funnel() -> dict[str, Any]:
    """From visit to won deal, per channel (and region where the KPI is sliced by region)."""
    panels = [
        row("Funnel ($window, selected channels)"),
        bars("Funnel", [
            target(channel_sum("crm_kpi_visits:sum"), "visits"),
            target(channel_sum("crm_kpi_leads_created:sum"), "leads created"),
            target(channel_sum("crm_kpi_leads_engaged:sum"), "leads touched or converted"),
            target(channel_sum("crm_kpi_leads_converted:sum"), "leads converted"),
            target(channel_sum("crm_kpi_deals_won:sum"), "deals won"),
        ], description="Counts in the window, summed over the selected channels.",
           width=12, height=9),
        bars("Won revenue by channel", [
            target(by_channel("crm_kpi_won_revenue:sum"), "{{segment}}"),
        ], description=MONEY_NOTE, width=12, height=9),
        row("Conversion by channel ($window window)"),
        timeseries("Traffic to lead rate", [
            target(by_channel("crm_traffic_to_lead_rate:ratio"), "{{segment}}"),
        ], "percentunit", "Leads created / visits."),
        timeseries("Lead conversion rate", [
            target(by_channel("crm_lead_conversion_rate:ratio"), "{{segment}}"),
        ], "percentunit", "Share of the leads created in the window that have converted."),
        timeseries("Lead abandonment rate", [
            target(by_channel("crm_lead_abandonment_rate:ratio"), "{{segment}}"),
        ], "percentunit", "Share of the leads created in the window never touched nor converted."),
        timeseries("Win rate", [
            target(by_channel("crm_win_rate:ratio"), "{{segment}}"),
        ], "percentunit", "Deals won / (deals won + deals lost)."),
        row("Deals and spend by channel ($window)"),
        bars("Average deal size", [
            target(by_channel("crm_avg_deal_size:mean"), "{{segment}}"),
        ], description=MONEY_NOTE),
        bars("Sales cycle", [
            target(by_channel("crm_sales_cycle_seconds:mean"), "{{segment}}"),
        ], "s", "Mean time from deal created to won."),
        bars("Marketing spend", [
            target(by_channel("crm_kpi_spend_marketing:sum"), "{{segment}}"),
        ], description=MONEY_NOTE),
        bars("Marketing ROI", [
            target(by_channel("crm_marketing_roi:ratio"), "{{segment}}"),
        ], "percentunit", "(Won revenue - marketing spend) / marketing spend.", width=12),
        bars("CRM ROI", [
            target(by_channel("crm_crm_roi:ratio"), "{{segment}}"),
        ], "percentunit", "(Won revenue x gross margin - CRM spend) / CRM spend.", width=12),
        row("By region ($window, all channels)"),
        bars("Win rate by region", [
            target(kpi("crm_win_rate:ratio", "region"), "{{segment}}"),
        ], "percentunit"),
        bars("Lead conversion by region", [
            target(kpi("crm_lead_conversion_rate:ratio", "region"), "{{segment}}"),
        ], "percentunit"),
        bars("Won revenue by region", [
            target(kpi("crm_kpi_won_revenue:sum", "region"), "{{segment}}"),
        ], description=MONEY_NOTE),
    ]
    return dashboard("crm-kpi-funnel", "CRM KPI / Sales and marketing funnel",
                     "Visits to leads to won deals, per channel and region.",
                     [tenant_variable(), window_variable(), channel_variable()], panels)


def engine() -> dict[str, Any]:
    """Is the engine keeping up: workers, throughput, lag, dead letters, the gateway."""
    panels = [
        row("Status"),
        stat("Workers up", 'count(up{job="crm-kpi-worker"} == 1) or vector(0)', decimals=0),
        stat("Gateway up", 'sum(up{job="crm-kpi-gateway"})', decimals=0),
        stat("Consumer lag", "sum(job:crm_consumer_lag:sum)", decimals=0,
             description="Records in the event topic not yet applied, over all partitions."),
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
    for name, text in render().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python grafana/build_dashboards.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
