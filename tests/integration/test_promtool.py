"""promtool (and amtool) checks of prometheus/: rules, rule unit tests, configuration.

Also checks that every alert carries the annotations operators rely on, is documented in
docs/runbook.md, and has promtool test cases both ways (fires / stays quiet).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import run_promtool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTS_FILE = PROMETHEUS / "rules" / "crm-kpi-alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


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


def test_rule_files_are_valid() -> None:
    assert len(RULE_FILES) >= 2
    checked(run_promtool("check", "rules", *map(str, RULE_FILES)))


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    checked(run_promtool("test", "rules", str(test_file)))


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
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}
