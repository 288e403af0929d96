"""Hand-written histories through the worker's record path, evaluated at a fixed T."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kpis.catalogue import KpiValues
from kpis.config import KpiConfig
from streams.events import EPOCH, format_time_ms
from tests.support.pure_engine import PureEngine

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
T_MS = (T - EPOCH) // timedelta(milliseconds=1)


def event(event_id: str, event_type: str, before_t: timedelta, **data: Any) -> dict[str, Any]:
    """A canonical event that occurred `before_t` before T."""
    occurred_ms = T_MS - before_t // timedelta(milliseconds=1)
    return {"id": event_id, "source": "test", "type": event_type,
            "occurred_at": format_time_ms(occurred_ms), "data": data}


def kpis(events: list[dict[str, Any]], ids: tuple[str, ...], window: str, *, by: str | None = None,
         at: datetime = T) -> KpiValues:
    """The KPIs `ids` at `at` over `window`, the engine's clock being T."""
    engine = PureEngine(KpiConfig())
    engine.publish(events)
    engine.run(T_MS)
    at_ms = (at - EPOCH) // timedelta(milliseconds=1)
    values = engine.kpis(window, at_ms, T_MS, by=by)
    return {kpi_id: values[kpi_id] for kpi_id in ids}
