"""The gateway's Prometheus metrics, in a registry of its own (served on `GET /metrics`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class GatewayMetrics:
    """Requests by provider and outcome, event counts, publish latency, dead-letter writes."""

    registry: CollectorRegistry
    requests: Counter
    accepted: Counter
    dedup_hits: Counter
    ignored: Counter
    dead_letters: Counter
    publish_seconds: Histogram


def create_metrics(providers: Iterable[str]) -> GatewayMetrics:
    """A fresh registry with every per-provider series present from the start."""
    registry = CollectorRegistry()

    def per_provider(name: str, doc: str) -> Counter:
        return Counter(name, doc, ["provider"], registry=registry)

    metrics = GatewayMetrics(
        registry=registry,
        requests=Counter(
            "crm_gateway_requests",
            "Webhook requests by provider and outcome (accepted, duplicate, ignored, invalid, "
            "unauthorized, too_large, unavailable, disabled, error)",
            ["provider", "outcome"],
            registry=registry,
        ),
        accepted=per_provider("crm_gateway_events_accepted", "New canonical events written"),
        dedup_hits=per_provider("crm_gateway_dedup_hits", "Events already seen (not written)"),
        ignored=per_provider("crm_gateway_events_ignored", "Provider events that map to no KPI"),
        dead_letters=per_provider(
            "crm_gateway_deadletter_writes", "Payloads written to the dead-letter topic"
        ),
        publish_seconds=Histogram(
            "crm_gateway_publish_duration_seconds",
            "Time from publishing a request's events to their acknowledgement by Kafka",
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        ),
    )
    for provider in providers:
        for counter in (metrics.accepted, metrics.dedup_hits, metrics.ignored, metrics.dead_letters):
            counter.labels(provider)
    return metrics
