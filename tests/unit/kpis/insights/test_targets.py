"""Targets and benchmarks: lookup by window and tenant, gaps, and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpis.insights.targets import Targets, TargetsError, load_targets, parse_targets

ROOT = Path(__file__).resolve().parents[4]

DOCUMENT = {
    "kpi": {
        "win_rate": {"target": 0.3, "benchmark": 0.21},
        "leads_created": {"target": {"7d": 150, "30d": 600}},
        "churn_rate": {"benchmark": {"30d": 0.035}},
    },
    "tenant": {"acme": {"kpi": {"win_rate": {"target": 0.35}}}},
}


@pytest.fixture
def targets() -> Targets:
    return parse_targets(DOCUMENT)


def test_gap_is_value_minus_target_and_null_when_either_is(targets: Targets) -> None:
    values = {"win_rate": 0.25, "leads_created": 170, "churn_rate": 0.02, "nps": 10.0}
    assert targets.annotate(values, "7d", "default") == {
        "leads_created": {"target": 150.0, "benchmark": None, "gap": 20.0},
        "win_rate": {"target": 0.3, "benchmark": 0.21, "gap": -0.05},
    }
    assert targets.annotate({"win_rate": None, "churn_rate": 0.02}, "30d", "default") == {
        "leads_created": {"target": 600.0, "benchmark": None, "gap": None},
        "win_rate": {"target": 0.3, "benchmark": 0.21, "gap": None},
        "churn_rate": {"target": None, "benchmark": 0.035, "gap": None},
    }


def test_a_tenant_overrides_field_by_field_and_slices_get_a_gap_each(targets: Targets) -> None:
    sliced = {"win_rate": {"web": 0.5, "ads": None}}
    assert targets.annotate(sliced, "24h", "acme") == {
        "win_rate": {"target": 0.35, "benchmark": 0.21, "gap": {"web": 0.15, "ads": None}},
    }


def test_samples_cover_every_configured_window_and_named_tenant(targets: Targets) -> None:
    samples = set(targets.samples({"default"}))
    assert ("target", "win_rate", "mtd", "acme", 0.35) in samples
    assert ("benchmark", "win_rate", "1h", "acme", 0.21) in samples
    assert ("target", "leads_created", "30d", "default", 600.0) in samples
    assert not any(kpi == "leads_created" and window == "24h" for _, kpi, window, _, _ in samples)


@pytest.mark.parametrize(("document", "message"), [
    ({"kpi": {"win_rat": {"target": 0.3}}}, "kpi.win_rat: unknown KPI id; did you mean 'win_rate'?"),
    ({"kpi": {"win_rate": {"targt": 0.3}}},
     "kpi.win_rate.targt: unknown key; expected one of target, benchmark"),
    ({"kpi": {"leads_created": {"target": {"week": 3}}}}, "kpi.leads_created.target.week: unknown window"),
    ({"kpi": {"nps": {"target": "40"}}}, "kpi.nps.target: expected a finite number, got '40'"),
    ({"kpi": {"nps": {"target": True}}}, "kpi.nps.target: expected a finite number, got True"),
    ({"kpi": {"nps": {"target": float("nan")}}}, "kpi.nps.target: expected a finite number"),
    ({"kpis": {}}, "kpis: unknown key; expected one of kpi, tenant"),
    ({"tenant": {"acme": {"kpi": {"cac": {"goal": 2}}}}}, "tenant.acme.kpi.cac.goal: unknown key"),
    ({"kpi": {"nps": 40}}, "kpi.nps: expected a table, got 40"),
])
def test_bad_documents_name_the_bad_entry(document: dict, message: str) -> None:
    with pytest.raises(TargetsError) as raised:
        parse_targets(document)
    assert message in str(raised.value)


def test_files_are_read_and_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "targets.toml"
    broken.write_text("[kpi.win_rate\ntarget = 1\n")
    with pytest.raises(TargetsError, match=r"targets\.toml: not valid TOML"):
        load_targets(broken)
    with pytest.raises(TargetsError, match=r"missing\.toml: cannot read"):
        load_targets(tmp_path / "missing.toml")
    broken.write_text('[kpi.churn]\ntarget = 0.02\n')
    with pytest.raises(TargetsError, match=r"targets\.toml: kpi\.churn: unknown KPI id"):
        load_targets(broken)


def test_the_committed_example_is_valid() -> None:
    example = load_targets(ROOT / "config" / "targets.example.toml")
    assert example.value("win_rate", "target", "7d", "acme") == 0.35
    assert example.value("churn_rate", "benchmark", "30d", "default") == 0.035
