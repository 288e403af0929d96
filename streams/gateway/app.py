"""The gateway's aiohttp application, and running it against Kafka and Redis.

`POST /webhooks/{provider}`: read the body (limit), authenticate, decode, translate, validate
every event (parse_event), then write each new event exactly once (dedup.py) and answer 202.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crmkpi.discovery import find_services
from crmkpi.settings import Settings, publisher_for
from streams.events import InvalidEvent, format_time_ms, parse_event
from streams.gateway.dedup import (
    Deduplicator,
    OnceWriter,
    Publisher,
    RedisDeduplicator,
    Unavailable,
    seen_prefix,
)
from streams.gateway.metrics import GatewayMetrics, create_metrics
from streams.gateway.problems import (
    Problem,
    disabled,
    invalid_event,
    malformed,
    problem_middleware,
    too_large,
    unauthorized,
    unavailable,
)
from streams.gateway.providers import PROVIDERS
from streams.gateway.providers.base import (
    Malformed,
    Payload,
    Provider,
    Translation,
    Untranslatable,
)
from streams.gateway.signatures import Delivery, SignatureError
from streams.gateway.signing import standard_key
from streams.gateway.writes import Writes
from streams.publisher import EventPublisher

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")  # package data, committed
ANSWER_TIMEOUT_SECONDS = 3.0
PROBE_TIMEOUT_SECONDS = 2.0
DRAIN_SECONDS = 45.0
READ_CHUNK = 64 * 1024
REASON_LIMIT = 1024

Probe = Callable[[], Awaitable[bool]]


class GatewayConfigError(RuntimeError):
    """Settings the gateway refuses to start with."""


def wanted_providers(settings: Settings) -> list[str]:
    """The endpoints CRMKPI_PROVIDERS turns on (`all`, or a comma-separated list of names)."""
    if settings.providers.strip() == "all":
        return list(PROVIDERS)
    wanted = [name.strip() for name in settings.providers.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in PROVIDERS]
    if unknown:
        raise GatewayConfigError(
            f"CRMKPI_PROVIDERS names unknown endpoint(s) {', '.join(unknown)}: "
            f"expected 'all' or some of {', '.join(PROVIDERS)}"
        )
    return wanted


def provider_secrets(settings: Settings) -> dict[str, str]:
    """The secret of every enabled provider, by endpoint name (unset ones are disabled)."""
    secrets = {}
    for name in wanted_providers(settings):
        provider = PROVIDERS[name]
        value = getattr(settings, provider.secret_field)
        if value is not None:
            secrets[name] = value if isinstance(value, str) else value.get_secret_value()
    if "events" in secrets:
        try:
            standard_key(secrets["events"])
        except ValueError as error:
            raise GatewayConfigError(f"CRMKPI_SECRET_STANDARD: {error}") from None
    return secrets


def check_bind(settings: Settings) -> None:
    """Refuse a non-loopback bind while any wanted endpoint would be unauthenticated."""
    enabled = provider_secrets(settings)
    missing = [PROVIDERS[name].env for name in wanted_providers(settings) if name not in enabled]
    if missing and not settings.loopback_only:
        raise GatewayConfigError(
            f"CRMKPI_BIND={settings.bind} exposes the gateway beyond this machine, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} unset: set the "
            "secrets, limit CRMKPI_PROVIDERS to the endpoints you use, or bind to 127.0.0.1"
        )


def producer_probe(publisher: EventPublisher) -> Probe:
    """Readiness of Kafka: a metadata request over the publisher's own connection."""

    async def probe() -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await publisher.producer.client.fetch_all_metadata()
        except Exception:  # any failure means "not reachable now"
            return False
        return True

    return probe


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 by Content-Length or as soon as the stream passes limit."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class Gateway:
    """The request handlers, over one publisher, deduplicator and metrics registry."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        deduplicator: Deduplicator,
        kafka_ready: Probe,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.deduplicator = deduplicator
        self.kafka_ready = kafka_ready
        self.secrets = provider_secrets(settings)
        self.metrics: GatewayMetrics = create_metrics(PROVIDERS)
        self.writes = Writes(ANSWER_TIMEOUT_SECONDS)
        self.openapi_document = OPENAPI_PATH.read_bytes()
        self.writer = OnceWriter(
            deduplicator,
            publisher,
            self.writes,
            settings.dedup_ttl_seconds,
            self.metrics.publish_seconds,
        )

    def handler(self, provider: Provider) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The `POST /webhooks/{name}` handler of one provider, counting every outcome."""

        async def webhook(request: web.Request) -> web.Response:
            outcome = "error"
            try:
                response, outcome = await self.ingest(provider, request)
                return response
            except Problem as problem:
                outcome = problem.outcome
                raise
            finally:
                self.metrics.requests.labels(provider.name, outcome).inc()

        return webhook

    def signed_url(self, request: web.Request) -> str:
        """The URL the sender signed: CRMKPI_PUBLIC_URL + path when set, else the request's."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/") + request.raw_path
        return str(request.url)

    async def ingest(self, provider: Provider, request: web.Request) -> tuple[web.Response, str]:
        """Authenticate, translate, validate and write one delivery; the answer and outcome."""
        secret = self.secrets.get(provider.name)
        if secret is None:
            raise disabled(provider.name, provider.env)
        body = await read_body(request, self.settings.body_limit_bytes)
        url = self.signed_url(request)
        delivery = Delivery(request.method, url, request.headers, body, time.time())
        try:
            payload = provider.read(secret, delivery)
        except SignatureError as error:
            raise unauthorized(error.part) from None
        except Malformed as error:
            raise malformed(str(error)) from None
        translation = await self.translate(provider, delivery, payload)
        events = await self.validate(provider, delivery, translation.events)
        try:
            result = await self.writer.deliver(events)
        except Unavailable as error:
            raise unavailable(error.detail, error.retry_after) from None
        self.metrics.accepted.labels(provider.name).inc(result.accepted)
        self.metrics.dedup_hits.labels(provider.name).inc(result.duplicates)
        self.metrics.ignored.labels(provider.name).inc(translation.ignored)
        outcome = "accepted" if result.accepted else "duplicate" if result.duplicates else "ignored"
        return provider.reply(result), outcome

    async def translate(self, provider: Provider, delivery: Delivery, payload: Payload) -> Translation:
        """The provider's translation of an authenticated payload, or its refusal (400, 422)."""
        try:
            return provider.translate(payload)
        except Malformed as error:
            raise malformed(str(error)) from None
        except Untranslatable as error:
            raise await self.refuse(provider, delivery, error, None) from None
        except (LookupError, TypeError, ValueError, ArithmeticError) as error:
            failure = Untranslatable("payload", f"cannot be translated ({error!r})")
            raise await self.refuse(provider, delivery, failure, None) from None

    async def validate(
        self, provider: Provider, delivery: Delivery, raws: list[dict[str, Any]]
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """Each event's dedup identity, after checking it against the contract (else 422)."""
        now_ms = int(delivery.received_at * 1000)
        config = self.settings.kpi_config
        events: list[tuple[str, Mapping[str, Any]]] = []
        for index, raw in enumerate(raws):
            try:
                event = parse_event(raw, now_ms=now_ms, known_currencies=config.known_currencies,
                                    known_tenants=config.known_tenants)
            except InvalidEvent as error:
                raise await self.refuse(provider, delivery, error, index) from None
            events.append((event.uid, raw))
        return events

    async def refuse(
        self, provider: Provider, delivery: Delivery, error: InvalidEvent, index: int | None
    ) -> Problem:
        """The 422 for an unusable payload, after writing it raw to the dead-letter topic."""
        title = "Untranslatable payload" if isinstance(error, Untranslatable) else "Invalid event"
        problem = invalid_event(error, index, title)
        if not provider.dead_letters:
            return problem
        headers = [
            ("provider", provider.name.encode()),
            ("reason", problem.body["detail"].encode()[:REASON_LIMIT]),
            ("received_at", format_time_ms(int(delivery.received_at * 1000)).encode()),
        ]
        try:
            await self.writes.wait(self.publisher.dead_letter(delivery.body, headers))
        except Exception as error:
            return unavailable(f"Kafka cannot take the dead-letter write: {error!r}")
        self.metrics.dead_letters.labels(provider.name).inc()
        return problem

    async def healthz(self, _: web.Request) -> web.Response:
        """Liveness: the process answers."""
        return _json({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        """Readiness: Kafka and Redis both reachable (503 otherwise)."""
        kafka, redis = await asyncio.gather(self.kafka_ready(), self.deduplicator.ping())
        return _json({"kafka": kafka, "redis": redis}, 200 if kafka and redis else 503)

    async def prometheus(self, _: web.Request) -> web.Response:
        """The gateway's metrics in the Prometheus text format."""
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, _: web.Request) -> web.Response:
        """The committed OpenAPI document (streams/gateway/openapi.json), read at start-up."""
        return web.Response(body=self.openapi_document, content_type="application/json")

    async def drain(self, _: web.Application) -> None:
        """At shutdown, let writes the answers stopped waiting for finish."""
        await self.writes.drain(DRAIN_SECONDS)


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def create_gateway(
    settings: Settings,
    publisher: Publisher,
    deduplicator: Deduplicator,
    *,
    kafka_ready: Probe | None = None,
) -> web.Application:
    """The gateway application. `kafka_ready` defaults to a probe of an `EventPublisher`."""
    if kafka_ready is None:
        if not isinstance(publisher, EventPublisher):
            raise TypeError("pass kafka_ready for a publisher other than EventPublisher")
        kafka_ready = producer_probe(publisher)
    gateway = Gateway(settings, publisher, deduplicator, kafka_ready)
    app = web.Application(middlewares=[problem_middleware])
    for name, provider in PROVIDERS.items():
        app.router.add_post(f"/webhooks/{name}", gateway.handler(provider))
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.prometheus)
    app.router.add_get("/openapi.json", gateway.openapi)
    app.on_shutdown.append(gateway.drain)
    return app


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def run_gateway(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the gateway on `settings.bind:gateway_port` until `stop` is set (or SIGINT/TERM).

    Finds Kafka and Redis, creates the namespace's topics if missing, and on the way out stops
    accepting, lets in-flight writes finish, then closes the producer and Redis.
    """
    check_bind(settings)
    services = find_services(settings)
    async with AsyncExitStack() as stack:
        publisher = await publisher_for(settings, services.kafka_bootstrap)
        stack.push_async_callback(publisher.stop)
        deduplicator = RedisDeduplicator.from_url(services.redis_url, seen_prefix(settings.namespace))
        stack.push_async_callback(deduplicator.close)
        runner = web.AppRunner(create_gateway(settings, publisher, deduplicator))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, settings.bind, settings.gateway_port).start()
        log.info("gateway listening on http://%s:%d", settings.bind, settings.gateway_port)
        await (stop or _stop_on_signals()).wait()
