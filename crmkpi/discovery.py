"""How every command finds Kafka and Redis: the environment, else a running `crm-kpi up`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from crmkpi.settings import Settings


class ServicesNotFound(RuntimeError):
    """Neither the environment nor a running `crm-kpi up` says where Kafka and Redis are."""


@dataclass(frozen=True)
class Services:
    """Where the backing services listen."""

    kafka_bootstrap: str
    redis_url: str


def runfile(settings: Settings) -> Path:
    """The file in which `crm-kpi up` records its embedded services."""
    return settings.home / "services.json"


def record_services(settings: Settings, services: Services) -> None:
    """Write the runfile (done by `crm-kpi up`)."""
    path = runfile(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"kafka_bootstrap": services.kafka_bootstrap, "redis_url": services.redis_url,
               "pid": os.getpid()}
    path.write_bytes(orjson.dumps(payload))


def forget_services(settings: Settings) -> None:
    """Remove the runfile (when `crm-kpi up` stops)."""
    runfile(settings).unlink(missing_ok=True)


def find_services(settings: Settings) -> Services:
    """Kafka and Redis from the environment, else from a live `crm-kpi up` on this machine."""
    recorded: dict[str, str] = {}
    path = runfile(settings)
    if path.exists():
        data = orjson.loads(path.read_bytes())
        if _alive(int(data.get("pid", 0))):
            recorded = data
    kafka = settings.kafka_bootstrap or recorded.get("kafka_bootstrap")
    redis = settings.redis_url or recorded.get("redis_url")
    if not kafka or not redis:
        missing = " and ".join(
            name for name, value in (("CRMKPI_KAFKA_BOOTSTRAP", kafka), ("CRMKPI_REDIS_URL", redis))
            if not value
        )
        raise ServicesNotFound(
            f"{missing} not set and no `crm-kpi up` is running on this machine: "
            "start `crm-kpi up` (embedded Kafka and Redis) or set the variable(s)"
        )
    return Services(kafka, redis)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
