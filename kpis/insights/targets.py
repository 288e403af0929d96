"""Per-KPI targets and industry benchmarks from a TOML file (CRMKPI_TARGETS_FILE).

```toml
[kpi.win_rate]                                # any catalogue id
target = 0.30                                 # a number: every window
benchmark = 0.21
[kpi.leads_created]
target = { "7d" = 150, "30d" = 600 }          # or a table by window
[tenant.acme.kpi.win_rate]                    # a tenant's own values, field by field
target = 0.35
```

Every id, window and key is checked against the catalogue; an error names the file, the
place (`kpi.win_rat`) and what was expected.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from kpis.catalogue import BY_ID, KpiValues
from kpis.formulas import Value
from kpis.timebase import WINDOWS

FIELDS = ("target", "benchmark")
DEFAULT_TENANT = "default"

# (kpi, field) -> window -> value; the defaults and each tenant's overrides.
Table = dict[tuple[str, str], dict[str, float]]


class TargetsError(ValueError):
    """A targets file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Targets:
    """Targets and benchmarks by KPI and window, with per-tenant overrides."""

    defaults: Table = field(default_factory=dict)
    tenants: dict[str, Table] = field(default_factory=dict)

    def value(self, kpi: str, name: str, window: str, tenant: str) -> float | None:
        """The `target` or `benchmark` of `kpi` in `window` for `tenant`, else None."""
        own = self.tenants.get(tenant, {}).get((kpi, name), {})
        return own.get(window, self.defaults.get((kpi, name), {}).get(window))

    def kpis(self, tenant: str) -> list[str]:
        """Catalogue ids with a target or benchmark for `tenant`, in catalogue order."""
        named = {kpi for kpi, _ in self.defaults} | {kpi for kpi, _ in self.tenants.get(tenant, {})}
        return [kpi for kpi in BY_ID if kpi in named]

    def annotate(self, values: KpiValues, window: str, tenant: str) -> dict[str, dict[str, Any]]:
        """`{kpi: {target, benchmark, gap}}` for the KPIs that have one; gap = value - target."""
        out: dict[str, dict[str, Any]] = {}
        for kpi in self.kpis(tenant):
            target = self.value(kpi, "target", window, tenant)
            benchmark = self.value(kpi, "benchmark", window, tenant)
            if target is None and benchmark is None:
                continue
            out[kpi] = {"target": target, "benchmark": benchmark, "gap": gap(values.get(kpi), target)}
        return out

    def samples(self, tenants: set[str]) -> Iterator[tuple[str, str, str, str, float]]:
        """(field, kpi, window, tenant, value) of every configured value for these tenants and
        every tenant the file names."""
        for tenant in sorted(tenants | set(self.tenants)):
            for kpi in self.kpis(tenant):
                for name in FIELDS:
                    for window in WINDOWS:
                        value = self.value(kpi, name, window, tenant)
                        if value is not None:
                            yield name, kpi, window, tenant, value


def gap(value: Value | Mapping[str, Value], target: float | None) -> Value | dict[str, Value]:
    """`value - target`, per slice for a sliced value; None when either is None. Computed on the
    shortest decimal texts of both, so 0.25 - 0.35 is -0.1."""
    if isinstance(value, Mapping):
        return {label: _minus(v, target) for label, v in value.items()}
    return _minus(value, target)


def _minus(value: Value, target: float | None) -> Value:
    if value is None or target is None:
        return None
    return float(Fraction(repr(value)) - Fraction(repr(target)))


def load_targets(path: Path | str) -> Targets:
    """Read and validate a targets file; raises TargetsError naming the bad entry."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as unread:
        raise TargetsError(f"{path}: cannot read the targets file: {unread.strerror or unread}") from None
    except tomllib.TOMLDecodeError as not_toml:
        raise TargetsError(f"{path}: not valid TOML: {not_toml}") from None
    try:
        return parse_targets(document)
    except TargetsError as wrong:
        raise TargetsError(f"{path}: {wrong}") from None


def parse_targets(document: Mapping[str, Any]) -> Targets:
    """Validate a decoded targets document (see the module docstring)."""
    _only(document, ("kpi", "tenant"), "")
    tenants: dict[str, Table] = {}
    for tenant, section in _table(document.get("tenant", {}), "tenant").items():
        place = f"tenant.{tenant}"
        if not tenant or len(tenant) > 64:
            raise TargetsError(f"{place}: a tenant name has 1-64 characters")
        _only(_table(section, place), ("kpi",), place)
        tenants[tenant] = _kpi_table(section.get("kpi", {}), f"{place}.kpi")
    return Targets(_kpi_table(document.get("kpi", {}), "kpi"), tenants)


def _kpi_table(section: Any, place: str) -> Table:
    table: Table = {}
    for kpi, entry in _table(section, place).items():
        where = f"{place}.{kpi}"
        if kpi not in BY_ID:
            close = difflib.get_close_matches(kpi, BY_ID, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (see docs/kpis.md)"
            raise TargetsError(f"{where}: unknown KPI id{hint}")
        _only(_table(entry, where), FIELDS, where)
        for name in FIELDS:
            if name in entry:
                table[(kpi, name)] = _by_window(entry[name], f"{where}.{name}")
    return table


def _by_window(value: Any, place: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        _only(value, WINDOWS, place, what="window")
        return {window: _number(v, f"{place}.{window}") for window, v in value.items()}
    return dict.fromkeys(WINDOWS, _number(value, place))


def _number(value: Any, place: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TargetsError(f"{place}: expected a finite number, got {value!r}")
    return float(value)


def _table(value: Any, place: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TargetsError(f"{place or 'the file'}: expected a table, got {value!r}")
    return dict(value)


def _only(table: Mapping[str, Any], allowed: tuple[str, ...], place: str, what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            where = f"{place}.{key}" if place else key
            raise TargetsError(f"{where}: unknown {what}; expected one of {', '.join(allowed)}")
