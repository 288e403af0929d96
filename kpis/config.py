"""The configuration the KPI semantics depend on (currency, margin, time zone, segments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

DEFAULT_SEGMENTS: dict[str, tuple[str, ...]] = {
    "channel": ("web", "email", "ads", "social", "referral", "partner", "events", "organic"),
    "region": ("na", "emea", "apac", "latam"),
    "priority": ("low", "normal", "high", "urgent"),
    "plan": ("free", "starter", "pro", "enterprise"),
}


@dataclass(frozen=True)
class KpiConfig:
    """Everything a KPI value depends on besides the events themselves."""

    timezone: str = "UTC"
    reporting_currency: str = "USD"
    fx_rates: dict[str, Decimal] = field(default_factory=dict)
    gross_margin: Decimal = Decimal("1.0")
    segments: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_SEGMENTS))
    tenants: tuple[str, ...] = ()  # empty: any tenant (tenants become metric labels)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of calendar windows."""
        return ZoneInfo(self.timezone)

    @property
    def known_tenants(self) -> frozenset[str] | None:
        """The tenants events may name, or None when any is accepted."""
        return frozenset(self.tenants) if self.tenants else None

    @property
    def known_currencies(self) -> frozenset[str]:
        """Currencies an event may carry: the reporting one and every configured rate."""
        return frozenset({self.reporting_currency.upper(), *(c.upper() for c in self.fx_rates)})


def parse_fx_rates(text: str) -> dict[str, Decimal]:
    """Parse `EUR=1.08,GBP=1.27` into rates; raises ValueError naming the bad entry."""
    rates: dict[str, Decimal] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        code, sep, rate = entry.partition("=")
        try:
            value = Decimal(rate.strip())
        except ArithmeticError:
            value = Decimal(-1)
        if not sep or len(code.strip()) != 3 or not value.is_finite() or value <= 0:
            raise ValueError(f"bad FX rate {entry!r}: expected CODE=positive number, e.g. EUR=1.08")
        rates[code.strip().upper()] = value
    return rates


def parse_segment_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated allow-list into normalised segment values."""
    return tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
