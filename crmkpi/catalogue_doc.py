"""Render docs/catalogue.md from the KPI catalogue: `python -m crmkpi.catalogue_doc > docs/catalogue.md`.

The catalogue in code (`kpis.catalogue.CATALOGUE`) is the single source: the API evaluates it,
the exporter names its inputs, and a test fails when this document drifts from it.
"""

from __future__ import annotations

from agents.exporters.fields import histogram_part, metric_for
from kpis.catalogue import CATALOGUE
from kpis.formulas import Kpi
from kpis.timebase import WINDOWS

HEADER = """# KPI catalogue

Generated from `kpis/catalogue.py` by `python -m crmkpi.catalogue_doc > docs/catalogue.md`;
a test keeps it in step. Definitions: [kpis.md](kpis.md); exact arithmetic and open choices:
[semantics.md](semantics.md).

Every KPI is served by `GET /api/kpis?window=W[&by=DIM][&tenant=T]` for W in {windows}.
Prometheus gets the inputs, not the ratios: each metric below is a gauge per `tenant`,
`window`, `by` (`none` or the slicing dimension) and `segment` (`all` when `by="none"`),
summed across workers with `sum without (instance)`; recording rules in
`prometheus/rules/` divide after aggregating.

| KPI | meaning | formula | unit | sliced by | Prometheus inputs |
|---|---|---|---|---|---|
"""


def metric_names(kpi: Kpi) -> list[str]:
    """The exported metrics a KPI is computed from."""
    names = []
    for field in kpi.inputs:
        part = histogram_part(field)
        if part is not None:
            names.append(f"crm_kpi_{part[0].name}_seconds (histogram)")
            continue
        for candidate in (field, f"{field}@at", f"{field}@start"):
            metric = metric_for(candidate)
            if metric is not None and metric[0] not in names:
                names.append(metric[0])
    return names


def render() -> str:
    """The whole catalogue document."""
    rows = []
    for kpi in CATALOGUE:
        dims = ", ".join(kpi.dimensions) or "—"
        unit = kpi.unit + (" (point in time)" if kpi.point_in_time else "")
        metrics = ", ".join(f"`{name}`" for name in metric_names(kpi))
        formula = kpi.formula.replace("|", "\\|")
        rows.append(f"| `{kpi.id}` | {kpi.meaning} | {formula} | {unit} | {dims} | {metrics} |")
    return HEADER.format(windows=", ".join(f"`{w}`" for w in WINDOWS)) + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")  # noqa: T201
