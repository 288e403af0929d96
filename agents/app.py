"""The Faust worker: the events agent, the state table, and the web endpoints around them."""

from __future__ import annotations

import hmac
import logging
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agents.exporters.api import kpis_response, problem, status_response
from agents.exporters.cluster import Partials, WorkerRegistry, gather
from agents.exporters.metrics import KpiCollector
from agents.ingest import RecordApplier, wall_ms
from agents.state import StateKeeper
from crmkpi.discovery import Services
from crmkpi.settings import Settings
from kpis.families import FAMILIES
from streams.events import parse_time_ms
from streams.topics import DEADLETTER_TOPIC, EVENTS_TOPIC, STATE_TABLE

log = logging.getLogger("crm-kpi.worker")
PRUNE_SECONDS = 60.0


def free_port_from(port: int, bind: str) -> int:
    """The first port at or after `port` that nothing listens on."""
    for candidate in range(port, port + 100):
        with socket.socket() as probe:
            try:
                probe.bind((bind, candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port in {port}..{port + 99} on {bind}")


class Worker:
    """One stream-processing worker and everything it serves."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.port = free_port_from(settings.worker_port, settings.bind)
        self.worker_id = uuid.uuid4().hex[:12]
        datadir = Path(settings.home) / "worker"
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            "crm-kpi",
            broker=f"kafka://{services.kafka_bootstrap}",
            store="memory://",
            datadir=str(datadir / self.worker_id),
            web_enabled=True,
            web_bind=settings.bind,
            web_port=self.port,
            web_host=settings.bind,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=0,
            stream_buffer_maxsize=65536,
            broker_commit_interval=1.0,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
        )
        self.events = self.app.topic(EVENTS_TOPIC, key_type=bytes, value_type=bytes,
                                     key_serializer="raw", value_serializer="raw",
                                     partitions=settings.partitions)
        self.deadletters = self.app.topic(DEADLETTER_TOPIC, key_serializer="raw",
                                          value_serializer="raw", partitions=settings.partitions)
        self.table = self.app.Table(STATE_TABLE, key_type=bytes, value_type=bytes,
                                    partitions=settings.partitions)
        self.keeper = StateKeeper(self.table, FAMILIES, settings.kpi_config)
        self.applier = RecordApplier(self.keeper, settings.partitions)
        url = f"http://{settings.bind}:{self.port}"
        self.registry = WorkerRegistry(services.redis_url, self.worker_id, url)
        self.metrics = CollectorRegistry()
        self.metrics.register(KpiCollector(self.keeper, self.owned, wall_ms, self.lag))
        self._wire()

    # -- ownership ---------------------------------------------------------------------------

    def owned(self) -> list[int]:
        """Input partitions this worker owns and has recovered (empty while rebalancing)."""
        if self.app.rebalancing or not self.app.tables.recovery.completed.is_set():
            return []
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives()
                      if tp.topic == EVENTS_TOPIC)

    def lag(self) -> dict[int, int]:
        """Records not yet applied, per owned partition."""
        lags = {}
        for partition in self.owned():
            highwater = self.app.consumer.highwater(faust.types.TP(EVENTS_TOPIC, partition))
            consumed = self.applier.next_offsets.get(partition, 0)
            lags[partition] = max((highwater or 0) - consumed, 0)
        return lags

    async def local_partials(self, query: Mapping[str, str]) -> Partials:
        """This worker's share of a KPI query."""
        now = wall_ms()
        at = parse_time_ms(query["at"], "at")
        partitions = self.owned()
        sums = self.keeper.window_totals(partitions, query["window"], at, now)
        sums_30d = self.keeper.window_totals(partitions, "30d", at, now)
        states = [self.keeper.state(p) for p in partitions]
        lags = self.lag()
        return Partials(partitions, sums, sums_30d,
                        sum(s.counters.processed for s in states),
                        sum(s.counters.rejected for s in states),
                        sum(lags.values()))

    async def global_partials(self, query: Mapping[str, str]) -> Partials:
        """Every worker's share of a KPI query, merged."""
        token = self.settings.api_token.get_secret_value() if self.settings.api_token else None
        return await gather(self.registry, self.local_partials, query, self.settings.partitions,
                            token=token)

    # -- wiring ------------------------------------------------------------------------------

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.events, name="apply-events", concurrency=1)
        async def apply_events(stream: Any) -> None:
            async for batch in stream.noack_take(self.settings.batch_size, within=0.02):
                await self._process(batch)
                for event in batch:
                    await stream.ack(event)

        @app.timer(PRUNE_SECONDS)
        async def prune() -> None:
            self.keeper.prune(wall_ms())

        @app.timer(2.0)
        async def heartbeat() -> None:
            await self.registry.heartbeat()

        @app.on_partitions_revoked.connect
        async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
            self.keeper.forget(tp.partition for tp in revoked if tp.topic == EVENTS_TOPIC)

        @app.page("/api/kpis")
        async def api_kpis(view: Any, request: web.Request) -> web.Response:
            return await self._guarded(request, lambda: kpis_response(
                request.query, wall_ms(), self.global_partials, self.settings.kpi_config))

        @app.page("/api/status")
        async def api_status(view: Any, request: web.Request) -> web.Response:
            return await self._guarded(request, lambda: status_response(
                self.global_partials, wall_ms()))

        @app.page("/internal/partials")
        async def internal_partials(view: Any, request: web.Request) -> web.Response:
            async def answer() -> web.Response:
                partials = await self.local_partials(request.query)
                return web.Response(body=partials.to_json(), content_type="application/json")
            return await self._guarded(request, answer)

        @app.page("/metrics")
        async def metrics(view: Any, request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.metrics),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        @app.page("/healthz")
        async def healthz(view: Any, request: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "worker": self.worker_id})

    async def _process(self, batch: list[Any]) -> None:
        now = wall_ms()
        touched = set()
        for event in batch:
            message = event.message
            touched.add(message.partition)
            outcome = self.applier.apply(message.partition, message.offset, message.value, now)
            for value, headers in outcome.dead_letters:
                await self.deadletters.send(value=value, headers=headers)
            for partition, raw in outcome.forwards:
                await self.events.send(value=orjson.dumps(raw), partition=partition)
        self.keeper.flush(touched)

    async def _guarded(self, request: web.Request, answer: Any) -> web.Response:
        """Require the bearer token when one is configured."""
        token = self.settings.api_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return problem(401, "Unauthorized", "a valid bearer token is required")
        response: web.Response = await answer()
        return response
