"""Prometheus, its rules and the Grafana boards against the engine, end to end.

Two workers on Apache Kafka apply a known generated history; a webhook gateway takes a few
requests; a real Prometheus scrapes all three (every 3 s) with the rules of prometheus/rules
loaded (evaluated every second). Then:

- every KPI recording rule of the unsliced total equals the value of `GET /api/kpis` at the
  same T, in every window (quantiles: in the same or the neighbouring histogram bucket, as
  Prometheus interpolates within buckets and the API reads its exact sketch);
- every PromQL expression of every dashboard panel, and every variable query, returns data;
- the PNG previews render (grafana/render_previews.py); with CRMKPI_WRITE_PREVIEWS=1 they
  are written to docs/dashboards/ instead of a temporary folder, after the history's last 2
  days of events arrived through the gateway over CRMKPI_PREVIEW_MINUTES (default 10).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from crmkpi.embedded import EmbeddedProcess, free_port
from kpis.catalogue import CATALOGUE
from kpis.timebase import MINUTE_MS, WINDOWS
from streams.events import format_time_ms, parse_time_ms
from streams.gateway.signing import signed_headers
from tests.oracle.history import FX_RATES, generate_history, write_jsonl
from tests.oracle.kpis import events_processed
from tests.support.engine import EngineEnv, WorkerProcess, fx_rates_variable, replay_until_applied
from tests.support.kafka import KafkaBroker
from tests.support.prometheus import PrometheusServer, http_get

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEED = 23
N_EVENTS = 12_000
GROSS_MARGIN = "0.8"
# A worker computes every window's sums on each scrape: allow it up to SCRAPE_SECONDS.
SCRAPE_SECONDS = 3
SECRET = "whsec_" + base64.b64encode(b"observability e2e key").decode()
QUANTILES = {"first_response_seconds_p50", "first_response_seconds_p90"}
# CRMKPI_WRITE_PREVIEWS=1 writes docs/dashboards/*.png after CRMKPI_PREVIEW_MINUTES during which
# the history's last days arrive through the gateway (so the time series move); the test then
# needs longer than its default timeout.
WRITE_PREVIEWS = os.environ.get("CRMKPI_WRITE_PREVIEWS") == "1"
PREVIEW_MINUTES = float(os.environ.get("CRMKPI_PREVIEW_MINUTES", "10"))
PREVIEW_HOLDBACK_DAYS = 2
PROBE_TENANT = "e2e-probe"  # the gateway's test requests; the compared tenant is `default`
SUM_UNITS = {"count", "currency"}  # KPIs that are a plain sum: an omitted series means 0


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BUILD_RULES = load(ROOT / "prometheus" / "build_rules.py", "e2e_build_rules")


# -- helpers ---------------------------------------------------------------------------------


class GatewayProcess:
    """A `crm-kpi gateway` subprocess with its own port and a Standard Webhooks secret."""

    def __init__(self, env: EngineEnv, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / "gateway.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmkpi", "gateway"],
            env=env.variables(CRMKPI_GATEWAY_PORT=str(self.port), CRMKPI_SECRET_STANDARD=SECRET),
            stdout=log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            if http_get(f"{self.url}/readyz")[0] == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"gateway not ready:\n{self.log_path.read_text()[-3000:]}")

    def post_events(self, events: list[dict[str, Any]], *, forge: bool = False) -> int:
        body = json.dumps(events).encode()
        url = f"{self.url}/webhooks/events"
        headers = signed_headers("events", SECRET, body, url=url)
        if forge:
            headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def query(prometheus: PrometheusServer, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query, at `at` (Unix seconds) when given."""
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    status, body = http_get(f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode(params)}")
    answer = json.loads(body) if body else {}
    assert status == 200 and answer.get("status") == "success", f"{expr!r}: {status} {body[:500]!r}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def series(prometheus: PrometheusServer, selector: str) -> list[dict[str, str]]:
    params = urllib.parse.urlencode({"match[]": selector})
    status, body = http_get(f"{prometheus.url}/api/v1/series?{params}")
    assert status == 200, f"{selector!r}: {status} {body[:500]!r}"
    result: list[dict[str, str]] = json.loads(body)["data"]
    return result


def poll(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def write_prometheus_config(directory: Path, workers: list[WorkerProcess],
                            gateway: GatewayProcess) -> Path:
    """The repo's rules (gross margin set as the engine's) and a 1 s scrape of every process."""
    rules_dir = directory / "rules"
    rules_dir.mkdir()
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        text = path.read_text()
        if path.name == "crm-kpi-recording.yml":
            # docs/runbook.md: keep crm:gross_margin:ratio equal to CRMKPI_GROSS_MARGIN.
            text, count = re.subn(r"(record: crm:gross_margin:ratio\n\s+expr: )vector\([\d.]+\)",
                                  rf"\g<1>vector({GROSS_MARGIN})", text)
            assert count == 1, "crm:gross_margin:ratio is no longer a vector(<number>)"
        (rules_dir / path.name).write_text(text)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [
            {"job_name": "crm-kpi-worker",
             "static_configs": [{"targets": [w.url.removeprefix("http://") for w in workers]}]},
            {"job_name": "crm-kpi-gateway",
             "static_configs": [{"targets": [gateway.url.removeprefix("http://")]}]},
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def probe_events(now_ms: int) -> list[dict[str, Any]]:
    """A few canonical events of a tenant of their own (the compared tenant is `default`)."""
    at = format_time_ms(now_ms - 2 * MINUTE_MS)
    return [{"id": f"e2e-probe-{n}", "source": "api", "type": "lead.created", "occurred_at": at,
             "tenant": PROBE_TENANT, "data": {"lead_id": f"L-{n}", "channel": "web"}}
            for n in range(3)]


# -- comparison ------------------------------------------------------------------------------


def pick_time(prometheus: PrometheusServer) -> float:
    """T: an evaluation time of the rules whose inputs were all scraped in T's minute.

    Windows are read from 1-minute buckets (1h, 24h) and 1-hour buckets (7d, 30d, mtd), so
    every KPI is constant within a minute: the API evaluated at T and the rules evaluated at
    T agree exactly when each worker computed its scraped sums in T's minute. T is the
    timestamp of a rule sample, at least two scrapes past the minute (a scrape in flight at T
    was not yet visible to the rules), with both workers up since well before it.
    """
    for _ in range(40):
        latest = query(prometheus, 'timestamp(tenant_window_segment:crm_kpi_leads_created:sum'
                                   '{tenant="default", by="none", window="30d"})')
        at = float(latest[0]["value"][1]) if latest else 0.0
        if not 2 * SCRAPE_SECONDS + 3 <= at % 60 <= 57:
            time.sleep(1)
            continue
        up = query(prometheus, f'min_over_time(up{{job="crm-kpi-worker"}}[{4 * SCRAPE_SECONDS}s])', at)
        stamps = query(prometheus, 'timestamp(crm_kpi_leads_created'
                                   '{tenant="default", by="none", window="30d"})', at)
        if (len(up) == 2 and all(float(u["value"][1]) == 1 for u in up) and len(stamps) == 2
                and all(float(s["value"][1]) // 60 == at // 60 for s in stamps)):
            return at
        time.sleep(1)
    raise AssertionError("no evaluation time with every input scraped in its own minute")


def bucket_index(value: float, bounds: list[float]) -> int:
    """The index of the histogram bucket `(bounds[i-1], bounds[i]]` holding `value`."""
    for index, bound in enumerate(bounds):
        if value <= bound * (1 + 1e-9):
            return index
    return len(bounds)


def compare_window(prometheus: PrometheusServer, worker: WorkerProcess, window: str,
                   at: float) -> tuple[list[str], list[str]]:
    """(KPIs compared with both values defined, mismatches) in one window."""
    status, body = worker.get(f"/api/kpis?window={window}&at={format_time_ms(int(at * 1000))}")
    assert status == 200, body
    api = body["kpis"]
    units = {kpi.id: kpi.unit for kpi in CATALOGUE}
    compared, problems = [], []
    bounds = sorted(float(s["metric"]["le"]) for s in query(
        prometheus, f'tenant_window_segment:crm_kpi_first_response_seconds_bucket:sum'
                    f'{{tenant="default", window="{window}", by="none", le!="+Inf"}}', at))
    for kpi_id, rule in BUILD_RULES.KPI_RULES.items():
        result = query(prometheus, f'{rule}{{tenant="default", window="{window}", by="none"}}', at)
        assert len(result) <= 1, (kpi_id, result)
        got = float(result[0]["value"][1]) if result else None
        want = api[kpi_id]
        where = f"{window} {kpi_id} ({rule}): Prometheus {got}, API {want}"
        if got is None or want is None:
            # Omitted series: 0 for a sum, null for a ratio (docs/kpis.md).
            if got is None and want not in (None, 0) and units[kpi_id] in SUM_UNITS:
                problems.append(where)
            if got is not None and want is None:
                problems.append(where)
            continue
        compared.append(kpi_id)
        if kpi_id in QUANTILES:
            if abs(bucket_index(got, bounds) - bucket_index(want, bounds)) > 1:
                problems.append(where + f" (buckets {bounds})")
        elif not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6):
            problems.append(where)
    return compared, problems


# -- dashboards ------------------------------------------------------------------------------


def dashboards() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        yield path.name, json.loads(path.read_text())


def variable_values(board: dict[str, Any]) -> dict[str, str]:
    values = {"tenant": "default", "window": "30d", "__rate_interval": "1m",
              "__interval": "1m", "__range": "1h"}
    for variable in board["templating"]["list"]:
        if variable["name"] == "by":
            values["by"] = variable["current"]["value"]
        elif variable["name"] == "segment":
            values["segment"] = variable["allValue"]
    return values


def fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], text)


def check_dashboards(prometheus: PrometheusServer) -> list[str]:
    """Every panel query and variable query of every board, variables filled in."""
    problems = []
    for name, board in dashboards():
        values = variable_values(board)
        by_values = [v for v in board["templating"]["list"] if v["name"] == "by"]
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            selector = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
            assert selector, variable["definition"]
            # Each dimension the board offers must have segments.
            for by in (by_values[0]["query"].split(",") if by_values else [values.get("by", "")]):
                found = series(prometheus, fill(selector.group(1), {**values, "by": by}))
                if not any(selector.group(2) in s for s in found):
                    problems.append(f"{name}: variable {variable['name']} (by={by}) has no values")
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = fill(target["expr"], values)
                if not query(prometheus, expr):
                    problems.append(f"{name} / {panel['title']}: no data for {expr}")
    return problems


def held_back(events: list[dict[str, Any]], now_ms: int) -> tuple[list[dict], list[dict]]:
    """(events to replay first, events to send later): in preview mode, the last
    PREVIEW_HOLDBACK_DAYS of event time arrive through the gateway during the preview
    minutes, so that the time series move (late events, as the engine expects them)."""
    if not WRITE_PREVIEWS:
        return events, []
    cut_ms = now_ms - int(PREVIEW_HOLDBACK_DAYS * 24 * 3600 * 1000)
    first = [e for e in events if parse_time_ms(e["occurred_at"]) <= cut_ms]
    return first, [e for e in events if parse_time_ms(e["occurred_at"]) > cut_ms]


def live_traffic(gateway: GatewayProcess, events: list[dict[str, Any]], minutes: float) -> None:
    """Send `events` through the gateway in batches spread over `minutes`, with a duplicate
    and a forged request now and then (docs/dashboards/README.md)."""
    batches = max(1, int(minutes * 6))  # one every 10 s
    size = math.ceil(len(events) / batches)
    deadline = time.monotonic()
    for number in range(batches):
        batch = events[number * size:(number + 1) * size]
        if batch:
            assert gateway.post_events(batch) == 202
        if number % 6 == 5 and batch:
            assert gateway.post_events(batch[:3]) == 202  # a provider's retry: duplicates
            assert gateway.post_events(batch[:1], forge=True) == 401
        deadline += minutes * 60 / batches
        time.sleep(max(0.0, deadline - time.monotonic()))


# -- the test --------------------------------------------------------------------------------


@pytest.mark.timeout(600 + (PREVIEW_MINUTES * 60 if WRITE_PREVIEWS else 0))
def test_rules_and_dashboards_agree_with_the_api(
    kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, tmp_path: Path, unique_name: str,
) -> None:
    now_ms = time.time_ns() // 1_000_000
    end = datetime.fromtimestamp((now_ms - MINUTE_MS) / 1000, tz=UTC)
    events = generate_history(SEED, end=end, n_events=N_EVENTS)
    events, later = held_back(events, now_ms)
    write_jsonl(events, tmp_path / "history.jsonl")
    env = EngineEnv(kafka_broker.bootstrap, redis_server.address, tmp_path, unique_name,
                    extra={"CRMKPI_FX_RATES": fx_rates_variable(FX_RATES),
                           "CRMKPI_GROSS_MARGIN": GROSS_MARGIN,
                           "CRMKPI_TENANTS": f"default,{PROBE_TENANT}"})
    workers = [WorkerProcess(env, tmp_path).start() for _ in range(2)]
    gateway = GatewayProcess(env, tmp_path)
    prometheus: PrometheusServer | None = None
    try:
        status = replay_until_applied(env, tmp_path / "history.jsonl", workers[0],
                                      events_processed(events), timeout=180)
        assert status["partitions"] == [0, 1, 2, 3]

        # The gateway: accepted, duplicate and unauthorized requests, for the engine board.
        gateway.wait_ready()
        probe = probe_events(now_ms)
        assert gateway.post_events(probe) == 202
        assert gateway.post_events(probe) == 202  # all duplicates
        assert gateway.post_events(probe, forge=True) == 401

        prometheus = PrometheusServer(write_prometheus_config(tmp_path, workers, gateway))
        prometheus.start()
        scraping_since = time.time()
        poll(lambda: len(query(prometheus, "up == 1")) == 3, 30, "three targets up")
        poll(lambda: len(query(prometheus, 'count by (instance) (crm_kpi_leads_created)')) == 2
             and query(prometheus, "tenant_window_segment:crm_win_rate:ratio"), 30,
             "both workers' series and the first rule evaluation")
        # Rates need two scrapes of each target.
        for rate in ("job:crm_events_processed:rate5m", "provider_outcome:crm_gateway_requests:rate5m",
                     "job:crm_gateway_publish_duration_seconds_bucket:rate5m"):
            poll(lambda rate=rate: query(prometheus, rate), 30, f"a first sample of {rate}")

        # 1. Every KPI rule of the tenant's total equals the API at the same T.
        at = pick_time(prometheus)
        compared: set[str] = set()
        problems: list[str] = []
        for number, window in enumerate(WINDOWS):
            done, wrong = compare_window(prometheus, workers[number % 2], window, at)
            compared.update(done)
            problems += wrong
        assert not problems, "\n".join(problems)
        never = sorted(set(BUILD_RULES.KPI_RULES) - compared)
        assert not never, f"never defined on both sides, so never compared: {never}"
        assert set(BUILD_RULES.KPI_RULES) == {kpi.id for kpi in CATALOGUE}

        if WRITE_PREVIEWS:
            live_traffic(gateway, later, PREVIEW_MINUTES)

        # 2. Every dashboard query returns data.
        problems = check_dashboards(prometheus)
        assert not problems, "\n".join(problems)

        # 3. The previews render.
        pytest.importorskip("matplotlib", reason="previews need matplotlib (the dev extra)")
        previews = load(ROOT / "grafana" / "render_previews.py", "e2e_render_previews")
        out = previews.DEFAULT_OUT if WRITE_PREVIEWS else tmp_path / "previews"
        paths = previews.render(prometheus.url, out, ["all"], seconds=time.time() - scraping_since)
        assert len(paths) == len(list(dashboards()))
        for path in paths:
            assert path.stat().st_size > 20_000, path
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()
        for worker in workers:
            worker.stop()
