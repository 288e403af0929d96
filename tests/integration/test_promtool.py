"""promtool (and amtool) checks of prometheus/: rules, rule unit tests, configuration.

Also checks that the rules are what prometheus/build_rules.py generates, that every KPI of
the catalogue has a recording rule (tested in recording.test.yml) and every metric the engine
exports a `:sum` rule, and that every alert carries the annotations operators rely on, is
documented in docs/runbook.md, and has promtool test cases both ways (fires / stays quiet).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agents.exporters.fields import histogram_name, histogram_part, metric_for
from kpis.catalogue import CATALOGUE
from kpis.config import KpiConfig
from kpis.timebase import HOUR_MS, WINDOWS
from tests.oracle.history import FX_RATES, generate_history
from tests.support.prometheus import run_promtool
from tests.support.pure_engine import PureEngine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTS_FILE = PROMETHEUS / "rules" / "crm-kpi-alerts.yml"
RECORDING_FILE = PROMETHEUS / "rules" / "crm-kpi-recording.yml"
RECORDING_TESTS = PROMETHEUS / "tests" / "recording.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("promtool_build_rules", PROMETHEUS / "build_rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def recorded() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def alert_cases() -> list[dict[str, Any]]:
    """Every alert_rule_test case of every promtool test file."""
    return [case for path in TEST_FILES
            for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", [])]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def checked(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- generated files -------------------------------------------------------------------------


def test_rules_and_runbook_tables_match_their_generator() -> None:
    for path, text in GENERATOR.render().items():
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is out of date: run python prometheus/build_rules.py")


def test_every_catalogue_kpi_has_a_recording_rule() -> None:
    assert set(GENERATOR.KPI_RULES) == {kpi.id for kpi in CATALOGUE}
    assert set(GENERATOR.KPI_RULES.values()) <= recorded()


def test_every_kpi_rule_is_unit_tested() -> None:
    tests = yaml.safe_load(RECORDING_TESTS.read_text())["tests"]
    tested = {re.match(r"[\w:]+", case["expr"]).group(0)  # type: ignore[union-attr]
              for test in tests for case in test.get("promql_expr_test", [])}
    untested = sorted(set(GENERATOR.KPI_RULES.values()) - tested)
    assert not untested, f"no promql_expr_test in {RECORDING_TESTS.name} for {untested}"


def engine_exports() -> set[str]:
    """Every metric name a worker exports for a history of every family (pure engine)."""
    at_ms = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000 // HOUR_MS * HOUR_MS
    events = generate_history(5, end=datetime.fromtimestamp(at_ms / 1000, tz=UTC), n_events=4000)
    engine = PureEngine(KpiConfig(fx_rates={k: Decimal(v) for k, v in FX_RATES.items()}))
    engine.publish(events)
    engine.run(int(at_ms))
    names = set()
    for window in WINDOWS:
        for (_, field, _, _), _ in engine.totals(window, int(at_ms), int(at_ms)).items():
            part = histogram_part(field)
            if part is not None:
                base = histogram_name(part[0])
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
            elif (metric := metric_for(field)) is not None:
                names.add(metric[0])
    return names


def test_every_exported_kpi_input_is_summed_over_workers() -> None:
    exported = engine_exports()
    summed = {name.removeprefix("tenant_window_segment:").removesuffix(":sum")
              for name in recorded() if name.startswith("tenant_window_segment:crm_kpi_")}
    # crm_kpi_first_responses repeats the histogram's _count, which the rules use instead.
    missing = sorted(exported - summed - {"crm_kpi_first_responses"})
    assert not missing, f"exported but never summed by a recording rule: {missing}"
    inputs = {f"crm_kpi_{name}" for family in GENERATOR.FAMILIES for name in family.inputs}
    assert inputs <= exported, f"rules sum metrics the engine does not export: {inputs - exported}"


# -- promtool --------------------------------------------------------------------------------


def test_rule_files_are_valid() -> None:
    assert len(RULE_FILES) >= 2
    checked(run_promtool("check", "rules", *map(str, RULE_FILES)))


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    checked(run_promtool("test", "rules", str(test_file)))


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda path: path.name)
def test_rule_tests_fix_the_group_order(test_file: Path) -> None:
    """promtool 2.42 evaluates rule groups in random order unless told: an alert evaluated
    before the recording rules it reads sees samples one lookback old, that is none."""
    spec = yaml.safe_load(test_file.read_text())
    if ALERTS_FILE.name not in " ".join(spec["rule_files"]):
        return
    order = spec.get("group_eval_order", [])
    assert order[:1] == ["crm-kpi"], f"{test_file.name}: group_eval_order must start with crm-kpi"


def test_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    """prometheus.yml names rule files by their container path: check a copy with repo paths."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(PROMETHEUS / "rules" / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    output = checked(run_promtool("check", "config", str(copy)))
    assert f"{len(RULE_FILES)} rule files found" in output


def test_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not found (Debian package prometheus-alertmanager)")
    result = subprocess.run([amtool, "check-config", str(PROMETHEUS / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    checked(result)


# -- alerts ----------------------------------------------------------------------------------


def test_thresholds_are_those_of_the_alerts() -> None:
    assert set(GENERATOR.THRESHOLDS) == {alert["alert"] for alert in alerts()}
    for alert in alerts():
        assert alert["for"] == GENERATOR.THRESHOLDS[alert["alert"]]["for"], alert["alert"]


@pytest.mark.parametrize("alert", alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_labelled_and_documented(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert alert["labels"]["severity"] in ("critical", "warning")
    assert alert["labels"]["component"] in ("engine", "gateway", "kpi")
    annotations = alert["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}"
    headings = re.findall(r"^#+\s+(.+)$", RUNBOOK.read_text(), re.MULTILINE)
    assert name.lower() in {github_anchor(h) for h in headings}, f"{name}: no runbook section"
    # The threshold table at the top of the rules file lists every alert.
    header = ALERTS_FILE.read_text().split("groups:")[0]
    assert re.search(rf"^#\s+{name}\s", header, re.MULTILINE), f"{name} not in threshold table"


@pytest.mark.parametrize("alert", alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_tested_firing_and_quiet(alert: dict[str, Any]) -> None:
    cases = [case for case in alert_cases() if case["alertname"] == alert["alert"]]
    quiet = [case for case in cases if not case.get("exp_alerts")]
    firing = [case for case in cases if case.get("exp_alerts")]
    assert quiet, f"{alert['alert']}: no case where it must not fire"
    assert firing, f"{alert['alert']}: no case where it must fire"
    for case in firing:
        for expected in case["exp_alerts"]:
            assert expected["exp_labels"]["severity"] == alert["labels"]["severity"]
            assert expected["exp_labels"]["component"] == alert["labels"]["component"]
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}
