"""KPI families: which entities and stateless rules feed which bucket fields."""

from __future__ import annotations

from kpis.entities import Family
from kpis.families.adoption import ADOPTION
from kpis.families.commerce import COMMERCE
from kpis.families.customers import CUSTOMERS
from kpis.families.sales import SALES
from kpis.families.subscriptions import SUBSCRIPTIONS
from kpis.families.support import SUPPORT
from kpis.families.surveys import SURVEYS

FAMILIES: tuple[Family, ...] = (SALES, SUPPORT, SURVEYS, SUBSCRIPTIONS, CUSTOMERS, COMMERCE, ADOPTION)


def families_of(stage: str) -> tuple[Family, ...]:
    """The families applied by `stage` ("events" or "customers")."""
    return tuple(family for family in FAMILIES if family.stage == stage)
