"""Exact conversions at ingest: money to integer micro-units, segment values to bounded labels."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kpis.config import KpiConfig

MICRO = Decimal("0.000001")
UNKNOWN = "unknown"
OTHER = "other"


def to_micro(amount: Any, currency: Any, config: KpiConfig) -> int:
    """Convert an amount in `currency` to integer micro-units of the reporting currency.

    The amount is read from its shortest decimal text (so 19.99 is exactly 19.99), multiplied
    by the configured rate and rounded half-even to 6 decimals.
    """
    code = (currency or config.reporting_currency).upper()
    rate = Decimal(1) if code == config.reporting_currency.upper() else config.fx_rates[code]
    converted = (Decimal(repr(amount)) * rate).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    return int(converted.scaleb(6))


def to_ms(seconds: Any) -> int:
    """Convert a duration in seconds (a JSON number) to integer milliseconds, truncated."""
    return int(Decimal(repr(seconds)) * 1000)


def segment(value: Any, dimension: str, config: KpiConfig) -> str:
    """The bounded label of a segment value: itself if allow-listed, else `other`/`unknown`."""
    if value is None:
        return UNKNOWN
    text = str(value).strip().lower()
    if not text:
        return UNKNOWN
    return text if text in config.segments.get(dimension, ()) else OTHER
