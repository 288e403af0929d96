"""The worker's HTTP API: `/api/kpis`, `/api/status`, `/internal/partials`, `/healthz`.

The insight endpoints (`/api/forecast`, `/api/customers/at-risk`) are in `insights.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from agents.exporters.cluster import ClusterIncomplete, Partials
from kpis.catalogue import DIMENSIONS, evaluate
from kpis.config import KpiConfig
from kpis.insights.targets import Targets
from kpis.timebase import WINDOWS
from streams.events import InvalidEvent, format_time_ms, parse_time_ms

Gather = Callable[[Mapping[str, str]], Awaitable[Partials]]


class BadQuery(ValueError):
    """A query parameter that is not acceptable; `name` says which."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True)
class KpiQuery:
    """A validated `/api/kpis` (or partials) query."""

    window: str
    at_ms: int
    tenant: str
    by: str | None
    targets: bool = False  # add each KPI's target, benchmark and gap

    @classmethod
    def parse(cls, query: Mapping[str, str], now_ms: int) -> KpiQuery:
        """Validate query parameters, naming the bad one."""
        window = query.get("window", "30d")
        if window not in WINDOWS:
            raise BadQuery("window", f"must be one of {', '.join(WINDOWS)}")
        by = query.get("by") or None
        if by is not None and by not in DIMENSIONS:
            raise BadQuery("by", f"must be one of {', '.join(DIMENSIONS)}")
        try:
            at_ms = parse_time_ms(query["at"], "at") if "at" in query else now_ms
        except InvalidEvent as exc:
            raise BadQuery("at", exc.problem) from None
        tenant = query.get("tenant", "default")
        targets = query.get("targets", "0")
        if targets not in ("0", "1", "false", "true"):
            raise BadQuery("targets", "must be 1 or 0")
        return cls(window, at_ms, tenant, by, targets in ("1", "true"))

    def forward(self) -> dict[str, str]:
        """The query as sent to other workers (with `at` fixed, so all evaluate the same T)."""
        return {"window": self.window, "at": format_time_ms(self.at_ms), "tenant": self.tenant}


def problem(status: int, title: str, detail: str, **extra: str) -> web.Response:
    """An `application/problem+json` response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(status=status, body=orjson.dumps(body),
                        content_type="application/problem+json")


def json_response(payload: object) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def kpis_response(query: Mapping[str, str], now_ms: int, gather: Gather,
                        config: KpiConfig, targets: Targets | None = None) -> web.Response:
    """Answer `GET /api/kpis` from the merged partials of all workers."""
    try:
        request = KpiQuery.parse(query, now_ms)
    except BadQuery as exc:
        return problem(400, "Bad query parameter", str(exc), field=exc.name)
    try:
        partials = await gather(request.forward())
    except ClusterIncomplete as exc:
        return problem(503, "Workers are rebalancing", str(exc))
    kpis = evaluate(partials.sums, tenant=request.tenant, by=request.by,
                    gross_margin=config.gross_margin, sums_30d=partials.sums_30d)
    body = {"tenant": request.tenant, "window": request.window,
            "as_of": format_time_ms(request.at_ms), "kpis": kpis}
    if request.targets:
        body["targets"] = (targets or Targets()).annotate(kpis, request.window, request.tenant)
    return json_response(body)


# A partials query with this parameter asks for counters and lag only, no window sums.
COUNTS_ONLY = "counts_only"


async def status_response(gather: Gather, now_ms: int) -> web.Response:
    """Answer `GET /api/status` from the merged partials of all workers."""
    try:
        partials = await gather({"window": "1h", "at": format_time_ms(now_ms), "tenant": "default",
                                 COUNTS_ONLY: "1"})
    except ClusterIncomplete as exc:
        return problem(503, "Workers are rebalancing", str(exc))
    return json_response({"events_processed": partials.processed,
                          "events_rejected": partials.rejected, "lag": partials.lag,
                          "partitions": sorted(partials.partitions)})
