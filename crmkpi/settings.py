"""Typed settings from `CRMKPI_*` environment variables (and an optional `.env` file)."""

from __future__ import annotations

import socket
from decimal import Decimal
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kpis.config import DEFAULT_SEGMENTS, KpiConfig, parse_fx_rates, parse_segment_list
from kpis.insights.targets import Targets, load_targets
from streams.publisher import EventPublisher, open_publisher
from streams.topics import DEFAULT_NAMESPACE, Topics

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_seconds(text: str) -> int:
    """Parse `7d`, `36h`, `90m`, `45s` or a plain number of seconds."""
    text = text.strip()
    unit = DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    if not number.isdigit():
        raise ValueError(f"bad duration {text!r}: expected e.g. 7d, 36h, 90m or 3600")
    return int(number) * (unit or 1)


class Settings(BaseSettings):
    """Every setting of every crm-kpi process; see docs/interfaces.md for the contract."""

    model_config = SettingsConfigDict(
        env_prefix="CRMKPI_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    namespace: str = Field(default=DEFAULT_NAMESPACE, pattern=r"^[a-z0-9][a-z0-9._-]{0,48}$")
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    timezone: str = "UTC"
    reporting_currency: str = "USD"
    fx_rates: str = ""
    gross_margin: Decimal = Decimal("1.0")
    segments_channel: str = ",".join(DEFAULT_SEGMENTS["channel"])
    segments_region: str = ",".join(DEFAULT_SEGMENTS["region"])
    segments_priority: str = ",".join(DEFAULT_SEGMENTS["priority"])
    segments_plan: str = ",".join(DEFAULT_SEGMENTS["plan"])
    # Tenants accepted; they become metric labels, so the list keeps label values bounded.
    tenants: str = "default"
    api_token: SecretStr | None = None
    # Prometheus then scrapes /metrics with `authorization: credentials_file:` (the same token).
    metrics_token_required: bool = False
    public_url: str | None = None
    dedup_ttl: str = "7d"
    bind: str = "127.0.0.1"
    advertised_host: str | None = None
    gateway_port: int = 8080
    worker_port: int = 6066
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    kafka_idempotence: bool = True
    body_limit_bytes: int = 5 * 1024 * 1024
    batch_size: int = Field(default=5000, ge=1)
    home: Path = Path.home() / ".crm-kpi"
    targets_file: Path | None = None

    providers: str = "all"
    secret_standard: SecretStr | None = None
    secret_hubspot: SecretStr | None = None
    secret_stripe: SecretStr | None = None
    secret_zendesk: SecretStr | None = None
    secret_intercom: SecretStr | None = None
    basic_auth_pipedrive: SecretStr | None = None
    basic_auth_freshdesk: SecretStr | None = None
    salesforce_org_id: str | None = None

    @field_validator("fx_rates")
    @classmethod
    def _valid_fx_rates(cls, value: str) -> str:
        parse_fx_rates(value)
        return value

    @field_validator("dedup_ttl")
    @classmethod
    def _valid_ttl(cls, value: str) -> str:
        parse_duration_seconds(value)
        return value

    @field_validator("targets_file")
    @classmethod
    def _valid_targets(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_targets(value)
        return value

    @cached_property
    def targets(self) -> Targets:
        """KPI targets and benchmarks (docs/insights.md); none without a targets file."""
        return Targets() if self.targets_file is None else load_targets(self.targets_file)

    @cached_property
    def kpi_config(self) -> KpiConfig:
        """The part of the settings that KPI values depend on."""
        return KpiConfig(
            timezone=self.timezone,
            reporting_currency=self.reporting_currency.upper(),
            fx_rates=parse_fx_rates(self.fx_rates),
            gross_margin=self.gross_margin,
            segments={
                "channel": parse_segment_list(self.segments_channel),
                "region": parse_segment_list(self.segments_region),
                "priority": parse_segment_list(self.segments_priority),
                "plan": parse_segment_list(self.segments_plan),
            },
            tenants=tuple(t.strip() for t in self.tenants.split(",") if t.strip()),
        )

    @property
    def topics(self) -> Topics:
        """The Kafka names of this deployment."""
        return Topics(self.namespace)

    @property
    def dedup_ttl_seconds(self) -> int:
        """How long the gateway remembers an event id."""
        return parse_duration_seconds(self.dedup_ttl)

    @property
    def reachable_host(self) -> str:
        """The host other workers reach this one at (the bind address unless a wildcard)."""
        if self.advertised_host:
            return self.advertised_host
        return socket.gethostname() if self.bind in ("0.0.0.0", "::") else self.bind  # noqa: S104

    @property
    def loopback_only(self) -> bool:
        """True when every listener stays on this machine."""
        return self.bind in ("127.0.0.1", "localhost", "::1")


async def publisher_for(settings: Settings, bootstrap: str) -> EventPublisher:
    """A started publisher for this deployment's topics, as every producing command needs."""
    return await open_publisher(
        bootstrap,
        partitions=settings.partitions,
        replication=settings.replication_factor,
        idempotence=settings.kafka_idempotence,
        topics=settings.topics,
    )
