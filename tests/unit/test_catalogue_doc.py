"""docs/catalogue.md is generated from the catalogue in code and must not drift from it."""

import re
from pathlib import Path

from crmkpi.catalogue_doc import render
from kpis.catalogue import CATALOGUE

DOC = Path(__file__).resolve().parents[2] / "docs" / "catalogue.md"


def test_catalogue_doc_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run: python -m crmkpi.catalogue_doc > docs/catalogue.md"


def test_every_kpi_of_kpis_md_is_in_the_catalogue() -> None:
    spec = (DOC.parent / "kpis.md").read_text()
    catalogued = {kpi.id for kpi in CATALOGUE}
    catalogue = spec.split("## Catalogue")[1].split("## Segments")[0]
    ids = set(re.findall(r"`([a-z_]+)`", "\n".join(
        line.split("|")[1] for line in catalogue.splitlines() if line.startswith("| `"))))
    ids |= {"first_response_seconds_p50", "first_response_seconds_p90"}  # written `_p50`, `_p90`
    assert ids - catalogued == set()
