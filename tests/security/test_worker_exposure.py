"""What a worker and a gateway expose: metric labels, the API behind its token, secrets.

One deployment on Apache Kafka with every webhook secret and `CRMKPI_API_TOKEN` set:

- **Labels**: events whose segment fields hold ids, e-mails, long values and exposition-format
  injection attempts; every label value of every `crm_kpi_*` series on `/metrics` must be in
  the allow-lists or one of other/unknown/all/none.
- **Access**: `/api/*` and `/internal/partials` answer 401 without the token or with a wrong
  one, with one body for both that holds no KPI data; the right token gets 200. A worker bound
  beyond loopback without a token refuses to start. With `CRMKPI_METRICS_TOKEN_REQUIRED`,
  `/metrics` is behind the same token.
- **Secrets**: after bad requests of every kind, no configured secret or token appears in the
  gateway's or worker's log, or in any answer.

Reproduce: python3 -m pytest tests/security/test_worker_exposure.py
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crmkpi.embedded import EmbeddedProcess
from kpis.config import DEFAULT_SEGMENTS
from kpis.timebase import WINDOWS
from streams.events import format_time_ms
from streams.gateway.providers import PROVIDERS
from tests.faults.harness import Deployment, GatewayProcess, bounded_poll
from tests.support.engine import WorkerProcess
from tests.support.kafka import KafkaBroker
from tests.unit.gateway.support import SAMPLES, SECRETS, WRONG_SECRETS, fixture

pytestmark = pytest.mark.integration
TOKEN = "tok-" + uuid.uuid4().hex
EMAIL = "jane.doe+vip@example.com"
LONG = "x" * 250
INJECTIONS = ['web"} 1\ncrm_kpi_injected{a="b', "web\\", "web\n", "emea,region=\"na\"", "ＷＥＢ"]
HOSTILE_VALUES = [EMAIL, LONG, "cus_0001234", "deal-98765", *INJECTIONS]
ALLOWED_SEGMENTS = {v for values in DEFAULT_SEGMENTS.values() for v in values} | {
    "other", "unknown", "all", "none"}
ALLOWED_BY = {*DEFAULT_SEGMENTS, "none"}


@dataclass
class Exposure:
    deployment: Deployment
    worker: WorkerProcess
    gateway: GatewayProcess
    answers: list[bytes] = field(default_factory=list)


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 (our http URL)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _processed(url: str) -> int:
    status, body = _get(url + "/api/status", TOKEN)
    return int(orjson.loads(body)["events_processed"]) if status == 200 else -1


def _hostile_events(at_ms: int) -> list[dict[str, Any]]:
    events = []
    for index, value in enumerate(HOSTILE_VALUES):
        def event(event_type: str, /, index: int = index, **data: Any) -> dict[str, Any]:
            return {"id": f"{event_type}-{index}", "source": "labels", "type": event_type,
                    "occurred_at": format_time_ms(at_ms - 600_000 - index), "data": data}
        events += [
            event("lead.created", lead_id=f"l{index}", channel=value, region=value),
            event("deal.won", deal_id=f"d{index}", amount=10, channel=value, region=value),
            event("ticket.created", ticket_id=f"t{index}", channel=value, priority=value),
            event("subscription.started", subscription_id=f"s{index}", customer_id=value,
                  mrr=10, plan=value, region=value),
            event("order.placed", order_id=value, customer_id=value, amount=5, channel=value),
            event("task.completed", user_id=value, duration_seconds=3, team=value, kind=value),
            event("record.created", user_id=value, object=value, team=value),
            event("deal.lost", deal_id=f"x{index}", reason=value, channel=value),
        ]
    return events


@pytest.fixture(scope="module")
def exposure(kafka_broker: KafkaBroker, redis_server: EmbeddedProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposure]:
    home = tmp_path_factory.mktemp("exposure")
    secrets = {f"CRMKPI_{PROVIDERS[name].secret_field.upper()}": secret
               for name, secret in SECRETS.items()}
    deployment = Deployment(kafka_broker.bootstrap, redis_server.address, home,
                            f"exposure-{uuid.uuid4().hex[:12]}", CRMKPI_API_TOKEN=TOKEN, **secrets)
    gateway = GatewayProcess(deployment.env, home, SECRETS["events"])
    try:
        worker = deployment.add_worker()
        gateway.start()
        at_ms = time.time_ns() // 1_000_000
        status, body = gateway.post_events(_hostile_events(at_ms))
        assert status == 202, body
        bounded_poll(lambda: _processed(worker.url) == len(_hostile_events(at_ms)),
                     timeout=120, what="hostile events processed")
        yield Exposure(deployment, worker, gateway)
    finally:
        gateway.stop()
        deployment.close()


def _series(worker: WorkerProcess) -> list[tuple[str, dict[str, str]]]:
    status, text = _get(worker.url + "/metrics")
    assert status == 200
    return [(sample.name, sample.labels)
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples if sample.name.startswith("crm_kpi_")]


def test_hostile_segment_values_never_become_labels(exposure: Exposure) -> None:
    series = _series(exposure.worker)
    assert series
    names = {name for name, _ in series}
    assert not any("injected" in name for name in names)
    for name, labels in series:
        assert labels.get("segment", "all") in ALLOWED_SEGMENTS, (name, labels)
        assert labels.get("by", "none") in ALLOWED_BY, (name, labels)
        assert labels.get("window", WINDOWS[0]) in WINDOWS, (name, labels)
        assert set(labels) <= {"tenant", "window", "by", "segment", "le"}, (name, labels)
        for value in labels.values():
            assert len(value) <= 32 and "@" not in value, (name, labels)


def test_tenant_values_are_bounded_too(exposure: Exposure) -> None:
    """Tenants outside CRMKPI_TENANTS (default `default`) are refused, so never a label."""
    at_ms = time.time_ns() // 1_000_000
    event = {"id": "tenant-email", "source": "labels", "type": "lead.created", "tenant": EMAIL,
             "occurred_at": format_time_ms(at_ms - 60_000), "data": {"lead_id": "tl"}}
    assert exposure.gateway.post_events([event])[0] == 422
    time.sleep(5)
    tenants = {labels.get("tenant") for _, labels in _series(exposure.worker)}
    assert EMAIL not in tenants, tenants


PROTECTED = ["/api/kpis?window=30d", "/api/kpis?window=7d&by=channel", "/api/status",
             "/internal/partials?window=30d&at=2026-11-20T00:00:00Z&tenant=default"]


@pytest.mark.parametrize("path", PROTECTED)
def test_api_without_or_with_a_wrong_token_is_401_and_says_nothing(exposure: Exposure,
                                                                    path: str) -> None:
    answers = [_get(exposure.worker.url + path, token)
               for token in (None, "wrong", TOKEN[:-1], TOKEN + "x", "", f"Bearer {TOKEN}")]
    assert {status for status, _ in answers} == {401}
    assert len({body for _, body in answers}) == 1  # nothing tells the cases apart
    body = answers[0][1]
    for leak in (b"kpis", b"events_processed", b"sums", b"partitions", TOKEN.encode()):
        assert leak not in body
    exposure.answers += [body for _, body in answers]


@pytest.mark.parametrize("path", PROTECTED)
def test_api_with_the_token_answers(exposure: Exposure, path: str) -> None:
    status, body = _get(exposure.worker.url + path, TOKEN)
    assert status == 200, body
    exposure.answers.append(body)


def test_worker_beyond_loopback_without_a_token_refuses_to_start(exposure: Exposure) -> None:
    # 127.0.0.2 is "beyond 127.0.0.1" to the worker, yet still loopback should it start.
    env = exposure.deployment.env.variables(CRMKPI_BIND="127.0.0.2", CRMKPI_API_TOKEN="")
    env.pop("CRMKPI_API_TOKEN")
    result = subprocess.run([sys.executable, "-m", "crmkpi", "worker"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"CRMKPI_API_TOKEN is required" in result.stdout + result.stderr


def test_metrics_behind_the_token_when_required(exposure: Exposure) -> None:
    env = exposure.deployment.env
    guarded = WorkerProcess(dataclasses.replace(
        env, extra={**env.extra, "CRMKPI_METRICS_TOKEN_REQUIRED": "true"}), env.home).start()
    try:
        bounded_poll(lambda: _get(guarded.url + "/healthz")[0] == 200, timeout=120,
                     what="guarded worker up")
        answers = [_get(guarded.url + "/metrics", token) for token in (None, "wrong", TOKEN + "x")]
        assert {status for status, _ in answers} == {401}
        assert not any(b"crm_kpi_" in body for _, body in answers)
        status, body = _get(guarded.url + "/metrics", TOKEN)
        assert status == 200 and b"crm_kpi_" in body
        assert _get(exposure.worker.url + "/metrics")[0] == 200  # open unless required
    finally:
        guarded.stop()


def test_metrics_token_required_without_a_token_refuses_to_start(exposure: Exposure) -> None:
    env = exposure.deployment.env.variables(CRMKPI_METRICS_TOKEN_REQUIRED="true")
    env.pop("CRMKPI_API_TOKEN")
    result = subprocess.run([sys.executable, "-m", "crmkpi", "worker"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"CRMKPI_METRICS_TOKEN_REQUIRED needs CRMKPI_API_TOKEN" in result.stdout + result.stderr


def _bad_requests(exposure: Exposure) -> None:
    """Deliveries that fail in every way a secret could be echoed."""
    gateway = exposure.gateway.url
    for name in PROVIDERS:
        body = fixture(SAMPLES[name])
        for headers in ({"Authorization": f"Basic {WRONG_SECRETS.get(name, 'x')}"},
                        {"webhook-signature": f"v1,{SECRETS[name]}", "webhook-id": "1",
                         "webhook-timestamp": "1"},
                        {"Stripe-Signature": f"t=1,v1={SECRETS[name]}"}, {}):
            request = urllib.request.Request(f"{gateway}/webhooks/{name}", data=body,  # noqa: S310
                                             headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    exposure.answers.append(response.read())
            except urllib.error.HTTPError as error:
                exposure.answers.append(error.read())
    exposure.answers.append(exposure.gateway.post_events([{"id": "x", "type": "deal.won"}])[1])
    for path in ("/metrics", "/readyz", "/openapi.json", "/nope"):
        exposure.answers.append(_get(gateway + path)[1])
    for path in ("/metrics", "/healthz", "/api/kpis?window=bogus", "/nope"):
        exposure.answers.append(_get(exposure.worker.url + path, TOKEN)[1])


def test_no_secret_in_logs_or_answers(exposure: Exposure) -> None:
    _bad_requests(exposure)
    secrets = [TOKEN, *SECRETS.values(), *(s.split(":", 1)[1] for s in SECRETS.values()
                                          if ":" in s)]
    texts = {"answers": b"\n".join(exposure.answers),
             "gateway log": Path(exposure.gateway.log_path).read_bytes(),
             "worker log": Path(exposure.worker.log_path).read_bytes()}
    for where, text in texts.items():
        for secret in secrets:
            assert secret.encode() not in text, f"{secret!r} in the {where}"
