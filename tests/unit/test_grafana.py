"""Checks of the Grafana provisioning, the generated dashboards and their PNG previews.

The dashboards must match their generator (grafana/build_dashboards.py), keep stable uids,
use the provisioned data source, and query only recording rules of prometheus/rules/ or
metrics the engine exports, in PromQL that parses (checked with promtool when installed).
tests/integration/test_observability_e2e.py runs every query against a live Prometheus.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"

# Stable uids: links, bookmarks and Grafana's provisioning key on them. Never change one.
UIDS = {
    "crm-kpi-executive.json": "crm-kpi-executive",
    "crm-kpi-funnel.json": "crm-kpi-funnel",
    "crm-kpi-revenue.json": "crm-kpi-revenue",
    "crm-kpi-support.json": "crm-kpi-support",
    "crm-kpi-adoption.json": "crm-kpi-adoption",
    "crm-kpi-engine.json": "crm-kpi-engine",
}
# The template variables of each board, and the dimensions its `by` offers.
VARIABLES = {
    "crm-kpi-executive.json": (["tenant", "window", "by", "segment"], ["channel", "region"]),
    "crm-kpi-funnel.json": (["tenant", "window", "by", "segment"], ["channel", "region"]),
    "crm-kpi-revenue.json": (["tenant", "window", "by", "segment"], ["plan", "region"]),
    "crm-kpi-support.json": (["tenant", "window", "by", "segment"], ["priority", "channel"]),
    "crm-kpi-adoption.json": (["tenant", "window"], []),
    "crm-kpi-engine.json": ([], []),
}

# What the engine exports (the contract with agents/exporters and the gateway), checked
# against the pure engine below. Series of a histogram are listed with their suffixes.
KPI_FIELDS = (
    # sales
    "leads_created", "leads_converted", "leads_engaged", "visits", "deals_won", "deals_lost",
    "deals_won_with_amount", "won_revenue", "sales_cycle_seconds_sum", "sales_cycle_deals",
    "spend_marketing", "spend_sales", "spend_retention", "spend_crm",
    # support
    "tickets_created", "first_responses", "first_response_seconds_bucket",
    "first_response_seconds_sum", "first_response_seconds_count", "resolution_seconds_sum",
    "resolutions", "open_tickets", "open_tickets_at_start",
    # surveys
    "nps_promoters", "nps_passives", "nps_detractors", "csat_satisfied", "csat_unsatisfied",
    "ces_responses", "ces_score_sum",
    # subscriptions and customers
    "new_customers", "mrr", "mrr_at_start", "mrr_churned", "active_customers",
    "active_customers_at_start", "churned_customers", "renewals", "cancellations",
    # commerce
    "orders", "order_amount", "buyers", "repeat_buyers", "carts_created", "carts_checked_out",
    # adoption
    "active_users", "records_created", "routine_tasks", "routine_task_seconds_sum",
)
EXPORTED_METRICS = {f"crm_kpi_{field}" for field in KPI_FIELDS} | {
    "crm_events_processed_total",
    "crm_events_rejected_total",
    "crm_consumer_lag",
    "crm_kpi_last_event_timestamp_seconds",
    "crm_gateway_requests_total",
    "crm_gateway_publish_duration_seconds_bucket",
    "crm_gateway_publish_duration_seconds_sum",
    "crm_gateway_publish_duration_seconds_count",
    "crm_gateway_dedup_hits_total",
    "crm_gateway_deadletter_writes_total",
    "crm_gateway_events_accepted_total",
    "crm_gateway_events_ignored_total",
}
PROMETHEUS_BUILTINS = {"up", "ALERTS"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
# Values put in place of template variables to get plain PromQL.
SAMPLE_VALUES = {"tenant": "default", "window": "30d", "by": "channel", "segment": ".+",
                 "__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "offset", "bool", "inf", "nan"}


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GENERATOR = load(GRAFANA / "build_dashboards.py", "test_grafana_build_dashboards")
PREVIEWS = load(GRAFANA / "render_previews.py", "test_grafana_render_previews")
DASHBOARDS: dict[str, dict[str, Any]] = {
    path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
}


def recording_rules() -> set[str]:
    names = set()
    for path in (ROOT / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


KNOWN_SERIES = recording_rules() | EXPORTED_METRICS | PROMETHEUS_BUILTINS


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def expressions() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every panel query."""
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield name, panel["title"], target["expr"]


def variable_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, variable name, selector) of every label_values() variable."""
    for name, dashboard in DASHBOARDS.items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
                assert match, f"{name}: unexpected variable query {variable['definition']}"
                yield name, variable["name"], match.group(1)


def series_names(expr: str) -> tuple[set[str], set[str]]:
    """Metric names an expression selects: plain names, and `__name__=~` regexes.

    A small tokenizer, enough for the dashboards' PromQL: matchers, ranges and label lists
    are dropped, then every identifier that is not a function call or keyword is a name.
    """
    regexes = set(re.findall(r'__name__=~"([^"]*)"', expr))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        followed_by_call = re.match(r"\s*\(", text[match.end():])
        if not followed_by_call and match.group(0).lower() not in PROMQL_KEYWORDS:
            names.add(match.group(0))
    return names, regexes


def substitute_variables(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLE_VALUES[m.group(1)], expr)


def test_dashboards_match_their_generator() -> None:
    rendered = GENERATOR.render()
    assert set(rendered) == set(DASHBOARDS), "run: python grafana/build_dashboards.py"
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, (
            f"{name} is out of date: run python grafana/build_dashboards.py"
        )


def test_dashboard_uids_are_stable_and_unique() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == UIDS
    for uid in UIDS.values():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", uid), uid


def test_panels_use_the_provisioned_datasource() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    assert {"type": "prometheus", "uid": datasource["uid"]} == GENERATOR.DATASOURCE
    assert datasource["uid"] == "crm-kpi-prometheus"
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == datasource["uid"], (name, variable)


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    provider_file = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert Path(home).name in DASHBOARDS


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_ids_are_unique_and_panels_fit_the_grid(name: str) -> None:
    all_panels = list(panels(DASHBOARDS[name]))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_kpi_dashboards_have_tenant_window_and_segment_variables(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    names, dimensions = VARIABLES[name]
    assert list(variables) == names
    if "window" in variables:
        assert variables["window"]["query"].split(",") == ["1h", "24h", "7d", "30d", "mtd"]
        assert variables["window"]["current"]["value"] == "30d"
    if "by" in variables:
        assert variables["by"]["query"].split(",") == dimensions
        assert variables["by"]["current"]["value"] == dimensions[0]
        assert set(dimensions) <= {"channel", "region", "priority", "plan"}
        segment = variables["segment"]
        assert segment["multi"] and segment["includeAll"] and segment["allValue"] == ".+"
        assert 'by="$by"' in segment["definition"] and 'tenant="$tenant"' in segment["definition"]


def test_expressions_only_use_defined_variables() -> None:
    for name, dashboard in DASHBOARDS.items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
        texts = [expr for file, _, expr in expressions() if file == name]
        texts += [panel["title"] for panel in panels(dashboard)]
        texts += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
        for text in texts:
            used = set(re.findall(r"\$\{?(\w+)", text))
            assert used <= defined, f"{name}: {text} uses undefined {used - defined}"


def test_series_name_parser() -> None:
    names, regexes = series_names(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m]))) '
        '/ on (job) group_left () b offset 1w > 0 and c or d:e:f{__name__=~"g.+"}'
    )
    assert names == {"a_bucket", "b", "c", "d:e:f"}
    assert regexes == {"g.+"}


def test_panels_query_known_recording_rules_and_metrics() -> None:
    found = []
    for name, title, expr in expressions():
        names, regexes = series_names(expr)
        assert names or regexes, f"{name} / {title}: no series in {expr}"
        assert names <= KNOWN_SERIES, f"{name} / {title}: unknown {sorted(names - KNOWN_SERIES)}"
        for regex in regexes:
            assert any(re.fullmatch(regex, known) for known in KNOWN_SERIES), (name, regex)
        found.append(expr)
    assert found


def test_variable_queries_select_known_series() -> None:
    for name, variable, selector in variable_queries():
        names, regexes = series_names(selector)
        assert names <= KNOWN_SERIES, (name, variable, names - KNOWN_SERIES)
        for regex in regexes:
            assert any(re.fullmatch(regex, known) for known in KNOWN_SERIES), (name, regex)


def test_every_catalogue_kpi_is_on_a_dashboard() -> None:
    from kpis.catalogue import CATALOGUE

    queried = " ".join(expr for _, _, expr in expressions())
    missing = [kpi.id for kpi in CATALOGUE
               if not re.search(re.escape(GENERATOR.KPI_RULES[kpi.id]) + r"\{", queried)]
    assert not missing, f"KPIs on no dashboard: {missing}"


def test_targets_colour_their_stats() -> None:
    from kpis.catalogue import BY_ID

    assert set(GENERATOR.TARGETS) <= set(BY_ID)
    stats = [panel for panel in panels(DASHBOARDS["crm-kpi-executive.json"])
             if panel["type"] == "stat" and panel["options"]["colorMode"] == "value"]
    assert len(stats) >= 6, "the executive overview shows its headline KPIs against targets"
    for panel in stats:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["color"] for step in steps] in (["red", "orange", "green"],
                                                    ["green", "orange", "red"]), panel["title"]
    slo = GENERATOR.RULES.THRESHOLDS["FirstResponseTimeHigh"]["slo_seconds"]
    assert GENERATOR.TARGETS["first_response_seconds_p90"].bad == slo


def test_window_bound_targets_only_colour_their_window() -> None:
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            if panel["type"] != "stat" or panel["options"]["colorMode"] != "value":
                continue
            expr = panel["targets"][0]["expr"]
            for kpi_id, target in GENERATOR.TARGETS.items():
                if target.window and GENERATOR.KPI_RULES[kpi_id] + "{" in expr:
                    assert f'window="{target.window}"' in expr, (name, panel["title"])


def test_exported_metrics_are_what_the_engine_exports() -> None:
    """The contract above against a pure engine fed a history of every family."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from agents.exporters.fields import histogram_name, histogram_part, metric_for
    from kpis.config import KpiConfig
    from kpis.timebase import HOUR_MS, WINDOWS
    from tests.oracle.history import FX_RATES, generate_history
    from tests.support.pure_engine import PureEngine

    at_ms = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000) // HOUR_MS * HOUR_MS
    events = generate_history(7, end=datetime.fromtimestamp(at_ms / 1000, tz=UTC), n_events=3000)
    engine = PureEngine(KpiConfig(fx_rates={k: Decimal(v) for k, v in FX_RATES.items()}))
    engine.publish(events)
    engine.run(at_ms)
    exported = set()
    for window in WINDOWS:
        for (_, field, _, _) in engine.totals(window, at_ms, at_ms):
            part = histogram_part(field)
            if part is not None:
                base = histogram_name(part[0])
                exported |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
            elif (metric := metric_for(field)) is not None:
                exported.add(metric[0])
    assert exported == {f"crm_kpi_{field}" for field in KPI_FIELDS}


class StubPrometheus:
    """Answers every query with one series per segment, for rendering without a server."""

    at = 1_795_000_000.0

    def instant(self, expr: str) -> list[object]:
        if "by=" in expr and 'by="none"' not in expr:
            return [PREVIEWS.Series({"segment": s}, [(self.at, v)]) for s, v in
                    (("web", 0.4), ("ads", 0.25), ("email", 0.31))]
        return [PREVIEWS.Series({}, [(self.at, 0.42)])]

    def range(self, expr: str, seconds: float) -> list[object]:
        points = [(self.at - seconds + 60 * i, 0.3 + 0.01 * i) for i in range(int(seconds // 60))]
        return [PREVIEWS.Series({"segment": "web"}, points)]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_previews_render(name: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="previews need matplotlib (the dev extra)")
    out = PREVIEWS.render_dashboard(DASHBOARDS[name], StubPrometheus(), tmp_path / "board.png",
                                    tenant="default", window="30d", seconds=1800)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_number_formats() -> None:
    assert PREVIEWS.fmt(0.456, "percentunit", 1) == "45.6%"
    assert PREVIEWS.fmt(52.0, "percent", 0) == "52%"
    assert PREVIEWS.fmt(7200, "s") == "2.0 h"
    assert PREVIEWS.fmt(226829.79, "short", 0) == "226.8k"
    assert PREVIEWS.fmt(131, "short", 0) == "131"
    assert PREVIEWS.axis_scale("s", [30, 5400]) == (1 / 3600, "hours")


def test_committed_previews_exist() -> None:
    """docs/dashboards/ holds a preview of every board (python grafana/render_previews.py)."""
    previews = ROOT / "docs" / "dashboards"
    assert {p.stem for p in previews.glob("*.png")} == set(UIDS.values())


def test_expressions_parse_as_promql(tmp_path: Path) -> None:
    """Every query (variables filled in) is loaded by promtool as a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: run scripts/install-test-deps (apt: prometheus)")
    queries = [substitute_variables(expr) for _, _, expr in expressions()]
    queries += [substitute_variables(selector) for _, _, selector in variable_queries()]
    rules = [{"record": f"grafana_panel_query_{n}", "expr": q} for n, q in enumerate(queries)]
    path = tmp_path / "panel-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
