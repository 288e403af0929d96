"""The Faust worker: the events agent, the state table, and the web endpoints around them."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiohttp import web
from faust.types import Message
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from agents.exporters.api import COUNTS_ONLY, kpis_response, problem, status_response
from agents.exporters.cluster import Partials, WorkerRegistry, gather
from agents.exporters.insights import (
    INSIGHTS_SECONDS,
    InsightsCache,
    InsightsCollector,
    at_risk_response,
    fill_partials,
    forecast_response,
)
from agents.exporters.metrics import KpiCollector
from agents.fetch import BatchingTransport, queue_sink
from agents.ingest import RecordApplier, canonical_applier, customer_applier, wall_ms
from agents.state import StateKeeper
from crmkpi.discovery import Services
from crmkpi.embedded import free_port_from
from crmkpi.settings import Settings
from kpis.buckets import SumKey, merge_into
from kpis.families import families_of
from streams.codec import encode_batches
from streams.events import parse_time_ms
from streams.internal import encode_internal
from streams.topics import partition_for, routed_for

log = logging.getLogger("crm-kpi.worker")
# The lag of a partition not fetched since its assignment: its end offset is not known yet.
UNFETCHED_LAG = 1
Answer = Callable[[web.Request], Awaitable[web.Response]]
PRUNE_SECONDS = 60.0
# How long a batch may wait to fill: bigger batches write fewer changelog records per event
# (one per changed key per batch), at the cost of at most this much latency.
BATCH_WITHIN_S = 0.25
# Fetched lists of records (one partition's new records each) waiting for the applier.
QUEUED_FETCHES = 64


@dataclass
class Stage:
    """One input topic with its state table, the keeper of its partitions and its applier.

    `lock` keeps the pruning timer from writing a batch's state changes before that batch's
    sends are acknowledged.
    """

    topic: Any
    table: Any
    keeper: StateKeeper
    applier: RecordApplier
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Worker:
    """One stream-processing worker and everything it serves."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.port = free_port_from(settings.worker_port, settings.bind)
        self.worker_id = uuid.uuid4().hex[:12]
        self.recovered = False
        datadir = Path(settings.home) / "worker"
        datadir.mkdir(parents=True, exist_ok=True)
        self.topics = topics = settings.topics
        self.app = faust.App(
            topics.namespace,
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
            # Short sessions: a crashed worker's partitions move within seconds, and Tansu
            # holds a group's first join for half the session timeout.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=1.0,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
        )
        # Records of both input topics reach their stages in bulk (agents/fetch.py).
        self.transport = BatchingTransport(self.app.conf.broker_consumer, self.app)
        self.app.transport = self.transport
        self.deadletters = self.app.topic(topics.deadletter, key_serializer="raw",
                                          value_serializer="raw", partitions=settings.partitions)
        config = settings.kpi_config
        self.events = self._stage(topics.events, topics.state_table, "events", canonical_applier)
        self.customers = self._stage(topics.customers, topics.customer_state_table, "customers",
                                     customer_applier)
        self.config = config
        url = f"http://{settings.reachable_host}:{self.port}"
        self.registry = WorkerRegistry(services.redis_url, self.worker_id, url, topics.namespace)
        self.metrics = CollectorRegistry()
        self.metrics.register(KpiCollector(
            self.window_totals, self.counters, wall_ms, self.lag,
            lambda: max(self.events.applier.last_applied_ms, self.customers.applier.last_applied_ms),
        ))
        self.insights = InsightsCache(config.zone)
        self.metrics.register(InsightsCollector(settings.targets, self.current_totals, self.insights))
        self._wire()

    def _stage(self, topic_name: str, table_name: str, stage: str, applier: Any) -> Stage:
        partitions = self.settings.partitions
        topic = self.app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw", partitions=partitions)
        table = self.app.Table(table_name, key_type=bytes, value_type=bytes, partitions=partitions)
        families = families_of(stage)
        keeper = StateKeeper(table, families, self.settings.kpi_config)
        return Stage(topic, table, keeper, applier(keeper, partitions, topic_name))

    # -- ownership and reading ---------------------------------------------------------------

    def owned(self, topic: str | None = None) -> list[int]:
        """Partitions of `topic` this worker owns and has recovered (empty while rebalancing)."""
        if self.app.rebalancing or not self.recovered:
            return []
        wanted = topic or self.topics.events
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives()
                      if tp.topic == wanted)

    def window_totals(self, window: str, at_ms: int, now_ms: int) -> dict[SumKey, int]:
        """Window sums over every partition of both stages this worker owns."""
        totals = self.events.keeper.window_totals(self.owned(), window, at_ms, now_ms)
        merge_into(totals, self.customers.keeper.window_totals(
            self.owned(self.topics.customers), window, at_ms, now_ms))
        return totals

    def counters(self) -> dict[int, tuple[int, int]]:
        """(processed, rejected) canonical events per owned partition of the events topic."""
        return {p: (c.processed, c.rejected) for p in self.owned()
                for c in [self.events.keeper.state(p).counters]}

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied, per owned partition of both input topics.

        Until its first fetch after an assignment the consumer knows no end offset of a
        partition: it counts as UNFETCHED_LAG, so that unread records never pass for none.
        (Asking the broker instead would go through Faust's consumer thread, whose two call
        slots its own commits and seeks wait for.)
        """
        lags = {}
        consumer = self.app.consumer
        for stage in (self.events, self.customers):
            topic = stage.topic.get_topic_name()
            for partition in self.owned(topic):
                tp = faust.types.TP(topic, partition)
                end = consumer.highwater(tp)
                if end is None:
                    lags[(topic, partition)] = UNFETCHED_LAG
                    continue
                # Faust keeps the committed offset (the next record to read); until this
                # worker consumes again, nothing from it on has been applied here.
                committed = cast(Any, consumer)._committed_offset.get(tp) or 0
                consumed = max(stage.applier.next_offsets.get(partition, 0), committed)
                lags[(topic, partition)] = max(end - consumed, 0)
        return lags

    def current_totals(self) -> dict[SumKey, int]:
        """The 1h window sums now (with every cumulative field at now)."""
        now = wall_ms()
        return self.window_totals("1h", now, now)

    async def local_partials(self, query: Mapping[str, str]) -> Partials:
        """This worker's share of a KPI query (and of an insight query: see fill_partials)."""
        now = wall_ms()
        at = parse_time_ms(query["at"], "at")
        counters = self.counters()
        partials = Partials(
            self.owned(), self.owned(self.topics.customers),
            processed=sum(c[0] for c in counters.values()),
            rejected=sum(c[1] for c in counters.values()), lag=sum(self.lag().values()),
        )
        if COUNTS_ONLY in query:  # /api/status: no window sums
            return partials
        partials.sums = self.window_totals(query["window"], at, now)
        partials.sums_30d = self.window_totals("30d", at, now)
        fill_partials(partials, query, at, map(self.events.keeper.state, partials.partitions),
                      map(self.customers.keeper.state, partials.customer_partitions))
        return partials

    async def global_partials(self, query: Mapping[str, str]) -> Partials:
        """Every worker's share of a KPI query, merged."""
        token = self.settings.api_token.get_secret_value() if self.settings.api_token else None
        return await gather(self.registry, self.local_partials, query, self.settings.partitions,
                            token=token)

    # -- wiring ------------------------------------------------------------------------------

    def _wire(self) -> None:
        app = self.app
        batch_size = self.settings.batch_size

        # Both input topics reach their stages in bulk (agents/fetch.py): the events topic,
        # which third-party producers may fill with one event per record, and the customer
        # topic. What a rebalance leaves in their queues is dropped by generation.
        for stage in (self.events, self.customers):
            fetched: asyncio.Queue[list[Message]] = asyncio.Queue()
            app.topics.add(stage.topic)  # subscribed; records go to `fetched`, not a stream
            self.transport.batch_sinks[stage.topic.get_topic_name()] = queue_sink(
                fetched, QUEUED_FETCHES, app.flow_control)
            app.task(partial(self._apply_batches, stage, fetched, batch_size))

        # Only partitions owned and recovered: between a revocation and the next assignment,
        # the decoded states still include partitions that may already have a new owner.
        @app.timer(PRUNE_SECONDS)
        async def prune() -> None:
            for stage in (self.events, self.customers):
                async with stage.lock:
                    owned = self.owned(stage.topic.get_topic_name())
                    stage.keeper.prune(wall_ms(), owned)
                    await self._write_state(stage, owned)

        @app.timer(2.0)
        async def heartbeat() -> None:
            try:
                await self.registry.heartbeat()
            except RedisError as exc:  # keep aggregating; the API answers 503 meanwhile
                log.warning("worker registry heartbeat failed: %s", exc)

        # Readers (API, metrics) load a partition's state from its table on first use, so they
        # wait for the recovery of each new assignment; Faust holds the agents until then.
        @cast(Any, app.on_rebalance_complete).connect
        async def on_recovered(app: faust.App, **_: Any) -> None:
            self.recovered = True

        @cast(Any, app.on_before_shutdown).connect
        async def leave_registry(app: faust.App, **_: Any) -> None:
            try:
                await self.registry.leave()
            except RedisError as exc:
                log.warning("could not leave the worker registry: %s", exc)

        @app.timer(INSIGHTS_SECONDS)
        async def insights() -> None:
            # Forecasts and anomaly scores are cluster-wide: the owner of partition 0 exports them.
            if 0 not in self.owned():
                self.insights.clear()
                return
            try:
                await self.insights.refresh(self.global_partials, wall_ms())
            except Exception:
                log.exception("refreshing forecasts and anomaly scores failed")

        # Every rebalance revokes all partitions and then assigns the new set. Faust resumes
        # the changelog of a partition it keeps where it stopped, so the table rows of kept
        # partitions must survive; rows of partitions assigned elsewhere are dropped (one that
        # comes back is recovered from the changelog's start). Decoded states are rebuilt.
        @cast(Any, app.on_partitions_assigned).connect
        async def on_assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
            self.recovered = False  # until the tables of the new assignment are recovered
            for stage in (self.events, self.customers):
                topic = stage.topic.get_topic_name()
                stage.keeper.reassign({tp.partition for tp in assigned if tp.topic == topic})

        now = wall_ms
        partials = self.global_partials
        api: dict[str, Answer] = {
            "/api/kpis": lambda r: kpis_response(r.query, now(), partials, self.config,
                                                 self.settings.targets),
            "/api/forecast": lambda r: forecast_response(r.query, now(), partials),
            "/api/customers/at-risk": lambda r: at_risk_response(r.query, now(), partials),
            "/api/status": lambda r: status_response(partials, now()),
            "/internal/partials": self._partials_response,
        }
        for path, answer in api.items():
            self._serve(path, answer, token_required=True)
        self._serve("/metrics", self._metrics_response,
                    token_required=self.settings.metrics_token_required)
        self._serve("/healthz", self._health_response, token_required=False)

    def _serve(self, path: str, answer: Answer, *, token_required: bool) -> None:
        """Answer GET `path` on Faust's web server, behind the bearer token if required."""

        async def view(_: Any, request: web.Request) -> web.Response:
            if token_required and not self._authorized(request):
                return problem(401, "Unauthorized", "a valid bearer token is required")
            return await answer(request)

        self.app.page(path)(cast(Any, view))

    def _authorized(self, request: web.Request) -> bool:
        """Whether the request carries the configured bearer token (always, when none is set)."""
        token = self.settings.api_token
        if token is None:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode())

    async def _partials_response(self, request: web.Request) -> web.Response:
        partials = await self.local_partials(request.query)
        return web.Response(body=partials.to_json(), content_type="application/json")

    async def _metrics_response(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health_response(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": self.worker_id})

    async def _apply_batches(self, stage: Stage, fetched: asyncio.Queue[list[Message]],
                             batch_size: int) -> None:
        """Apply the stage's fetched records in batches, forever; a failure stops the worker.

        A batch waits at most BATCH_WITHIN_S to fill, and while a rebalance is under way.
        Records fetched in an earlier rebalance generation (or of partitions no longer
        assigned) are then dropped unapplied: Faust seeks back to the committed offsets after
        every rebalance, so they come again if this worker still owns them. Records of the
        current generation are never dropped: they may have been fetched after that seek.
        """
        app, consumer = self.app, self.app.consumer
        try:
            while not app.should_stop:
                batch = await fetched.get()
                deadline = time.monotonic() + BATCH_WITHIN_S
                while len(batch) < batch_size:
                    if not fetched.empty():
                        batch += fetched.get_nowait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        batch += await asyncio.wait_for(fetched.get(), remaining)
                    except TimeoutError:
                        break
                await app.flow_control.acquire()  # until the rebalance under way has ended
                generation, assigned = app.consumer_generation_id, consumer.assignment()
                batch = [m for m in batch if m.generation_id == generation and m.tp in assigned]
                for message in batch:  # in flight: a rebalance now waits for their acks
                    consumer.track_message(message)
                await self._process(stage, batch)
                # Faust's stall detector reads when a partition's records last reached a stream.
                applied_at, inbound = time.monotonic(), app.monitor.stream_inbound_time
                for message in batch:
                    consumer.ack(message)
                    inbound[message.tp] = applied_at
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the agent cannot go on: let the worker stop and restart
            log.exception("applying %s failed", stage.topic.get_topic_name())
            await app.crash(exc)

    async def _process(self, stage: Stage, messages: list[Message]) -> None:
        """Apply a batch, send what it produced, then write the changed state.

        Dead letters, forwards and internal events are acknowledged by Kafka before the state
        that produced them is written, so a crash can re-send them but never lose them; the
        state's changelog records are acknowledged before the batch is (and so before its
        offsets can be committed).
        """
        async with stage.lock:
            now = wall_ms()
            touched = set()
            sends = []
            for message in messages:
                touched.add(message.partition)
                outcome = stage.applier.apply(message.partition, message.offset, message.value, now,
                                              message.headers)
                for value, headers in outcome.dead_letters:
                    sends.append(await self.deadletters.send(value=value, headers=headers))
                for partition, raw in outcome.forwards:
                    sends.append(await stage.topic.send(value=orjson.dumps(raw), partition=partition))
            sends.extend(await self._send_internal(stage, touched))
            for future in sends:
                await future
            await self._write_state(stage, touched)
            # Only now is the batch done: /api/status shows no lag before the customer stage
            # has been sent what it produced.
            stage.applier.done(messages)

    async def _write_state(self, stage: Stage, partitions: Iterable[int]) -> None:
        """Write the changed state of `partitions` and wait until Kafka has its changelog.

        The records go straight to the Kafka client, as one record batch per partition (more
        when they exceed the batch size): Faust's `send_changelog` buffer may still hold
        records when the consumer commits (its flush gives up after 0.1 s without progress),
        and a crash then would lose state whose input offsets are committed.
        """
        producer = cast(Any, self.app.producer)._ensure_producer()
        changelog = stage.table.changelog_topic.get_topic_name()
        sent = []
        # write_changes goes partition by partition, in the order the records must land.
        for partition, records in groupby(stage.keeper.write_changes(partitions),
                                          key=itemgetter(0)):
            batch = producer.create_batch()
            for _, key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    sent.append(await producer.send_batch(batch, changelog, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # a first one always fits
            sent.append(await producer.send_batch(batch, changelog, partition=partition))
        for future in sent:
            await future

    async def _send_internal(self, stage: Stage, partitions: set[int]) -> list[Any]:
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for partition in partitions:
            for tenant, (key, event_type, time_ms, data) in stage.keeper.state(partition).take_outbox():
                target = partition_for(key.encode(), self.settings.partitions)
                by_partition[target].append(encode_internal(tenant, event_type, time_ms, data))
        headers = [routed_for(self.settings.partitions)]
        return [await self.customers.topic.send(value=record, partition=target, headers=headers)
                for target, values in by_partition.items() for record in encode_batches(values)]
