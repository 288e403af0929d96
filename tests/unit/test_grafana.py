"""Checks of the Grafana provisioning and of the generated dashboards.

The dashboards must match their generator (grafana/build_dashboards.py), keep stable uids,
use the provisioned data source, and query only recording rules of prometheus/rules/ or
metrics the engine exports, in PromQL that parses (checked with promtool when installed).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
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
    "crm-kpi-engine.json": "crm-kpi-engine",
}

# What the engine exports (the contract with agents/exporters and the gateway). Series of a
# histogram are listed with their suffixes.
KPI_FIELDS = (
    "leads_created", "leads_converted", "leads_engaged", "visits", "deals_won", "deals_lost",
    "deals_won_with_amount", "won_revenue", "sales_cycle_seconds_sum", "sales_cycle_deals",
    "spend_marketing", "spend_sales", "spend_retention", "spend_crm",
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
SAMPLE_VALUES = {"tenant": "default", "window": "30d", "channel": ".+",
                 "__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "offset", "bool", "inf", "nan"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
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


def test_kpi_dashboards_have_tenant_window_and_channel_variables() -> None:
    def variables(name: str) -> list[str]:
        return [v["name"] for v in DASHBOARDS[name]["templating"]["list"]]

    assert variables("crm-kpi-executive.json") == ["tenant", "window"]
    assert variables("crm-kpi-funnel.json") == ["tenant", "window", "channel"]
    window = DASHBOARDS["crm-kpi-funnel.json"]["templating"]["list"][1]
    assert window["query"].split(",") == ["1h", "24h", "7d", "30d", "mtd"]


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
