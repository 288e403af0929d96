"""KPI families: which entities and stateless rules feed which bucket fields."""

from __future__ import annotations

from kpis.entities import Family
from kpis.families.sales import SALES

FAMILIES: tuple[Family, ...] = (SALES,)
