"""(d) The gateway under load, and (e) end-to-end latency from webhook to /api/kpis."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import statistics
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import Engine, Proc, Services, create_topics, log, now_ms
from streams.events import format_time_ms
from streams.gateway.signing import standard_signature
from streams.topics import Topics

SECRET = "whsec_" + base64.b64encode(b"crm-kpi-bench-secret-32-bytes!!!").decode()
PER_REQUEST = 100

WRK_SCRIPT = r"""
-- Pre-signed Standard Webhooks requests, one per line: id \t timestamp \t signature \t body.
local requests = {}
local counter = 1
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == tid then
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      table.insert(requests, wrk.format("POST", "/webhooks/events", {
        ["Content-Type"] = "application/json", ["webhook-id"] = id,
        ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body))
    end
    n = n + 1
  end
end

function request()
  local r = requests[counter]
  if r == nil then
    return wrk.format("GET", "/healthz")  -- all sent: cheap requests until the run ends
  end
  counter = counter + 1
  return r
end

function done(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status, latency:percentile(50),
    latency:percentile(99), latency.max))
end
"""


def gateway_env(engine: Engine, port: int) -> dict[str, str]:
    return {"CRMKPI_SECRET_STANDARD": SECRET, "CRMKPI_GATEWAY_PORT": str(port)}


def start_gateway(engine: Engine, **more: str) -> tuple[Proc, int]:
    from crmkpi.embedded import free_port

    port = free_port()
    proc = engine.spawn("gateway", **gateway_env(engine, port), **more)
    proc.port = port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _ = proc.get("/readyz")
        if status == 200:
            return proc, port
        if not proc.alive():
            raise RuntimeError(f"gateway exited:\n{proc.tail()}")
        time.sleep(0.3)
    raise RuntimeError(f"gateway not ready:\n{proc.tail()}")


def signed(body: bytes, msg_id: str) -> dict[str, str]:
    timestamp = int(time.time())
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(SECRET, msg_id, timestamp, body)}


def accepted_total(gateway: Proc) -> float:
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("crm_gateway_events_accepted_total{"))


@dataclass
class GatewayResult:
    accepted: float
    seconds: float
    requests: int
    non2xx: int
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def gateway_load(services: Services, events: list[dict], duration: float = 15.0,
                 connections: int = 16) -> GatewayResult:
    """POST signed batches of 100 events as fast as the gateway takes them (wrk if installed)."""
    namespace = f"bench-gw-{uuid.uuid4().hex[:6]}"
    topics = Topics(namespace)
    asyncio.run(create_topics(services.bootstrap, [topics.events, topics.customers, topics.deadletter]))
    engine = Engine(services, namespace, services.work / f"home-{namespace}")
    gateway, _ = start_gateway(engine)
    try:
        bodies = [orjson.dumps(events[i:i + PER_REQUEST]) for i in range(0, len(events), PER_REQUEST)]
        before = accepted_total(gateway)
        if shutil.which("wrk"):
            result = _wrk(gateway, bodies, duration, connections, services.work)
        else:
            result = asyncio.run(_aiohttp_load(gateway, bodies, duration, connections))
        result.accepted = accepted_total(gateway) - before
        return result
    finally:
        gateway.stop()


def _wrk(gateway: Proc, bodies: list[bytes], duration: float, connections: int, work: Path) -> GatewayResult:
    lines = []
    for number, body in enumerate(bodies):
        msg_id = f"bench-{uuid.uuid4().hex[:8]}-{number}"
        headers = signed(body, msg_id)
        lines.append(f"{msg_id}\t{headers['webhook-timestamp']}\t{headers['webhook-signature']}\t{body.decode()}")
    data = work / "wrk-requests.tsv"
    data.write_text("\n".join(lines) + "\n")
    script = work / "wrk-webhooks.lua"
    script.write_text(WRK_SCRIPT)
    threads = 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s",
                          "--timeout", "10s", "-s", str(script), gateway.url, "--", str(data), str(threads)],
                         capture_output=True, text=True, timeout=duration + 120, check=False)
    stats = next((json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")), None)
    if stats is None:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    return GatewayResult(0, stats["duration_us"] / 1e6, stats["requests"], stats["non2xx"],
                         stats["p50_us"] / 1000, stats["p99_us"] / 1000, "wrk")


async def _aiohttp_load(gateway: Proc, bodies: list[bytes], duration: float,
                        connections: int) -> GatewayResult:
    latencies: list[float] = []
    non2xx = 0
    queue = list(reversed(bodies))
    deadline = time.monotonic() + duration
    url = gateway.url + "/webhooks/events"

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal non2xx
        while queue and time.monotonic() < deadline:
            body = queue.pop()
            began = time.monotonic()
            async with session.post(url, data=body, headers=signed(body, f"bench-{uuid.uuid4().hex}")) as r:
                await r.read()
                if r.status >= 300:
                    non2xx += 1
            latencies.append(time.monotonic() - began)

    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    seconds = time.monotonic() - began
    latencies.sort()
    return GatewayResult(0, seconds, len(latencies), non2xx, 1000 * latencies[len(latencies) // 2],
                         1000 * latencies[int(len(latencies) * 0.99)], "aiohttp")


# -- (e) end-to-end latency ----------------------------------------------------------------------


@dataclass
class LatencyResult:
    rate: float
    achieved_rate: float
    samples: list[float]  # seconds, webhook accepted -> visible in /api/kpis

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(0.5)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


# Each marker has a tenant of its own, and tenants are an allow-list (CRMKPI_TENANTS).
MAX_MARKERS = 400
MARKER_TENANTS = ",".join(["default", *(f"mk{i}" for i in range(MAX_MARKERS))])


def end_to_end(services: Services, events: list[dict], rates: list[int], duration: float = 20.0,
               marker_every: float = 0.5) -> list[LatencyResult]:
    """Steady load through the gateway into one worker; marker events in their own tenant
    are timed from the gateway's 202 to the first /api/kpis answer that counts them."""
    from bench.common import wait_ready

    namespace = f"bench-e2e-{uuid.uuid4().hex[:6]}"
    topics = Topics(namespace)
    asyncio.run(create_topics(services.bootstrap, [topics.events, topics.customers, topics.deadletter]))
    engine = Engine(services, namespace, services.work / f"home-{namespace}")
    gateway, _ = start_gateway(engine, CRMKPI_TENANTS=MARKER_TENANTS)
    worker = engine.spawn("worker", CRMKPI_TENANTS=MARKER_TENANTS)
    try:
        wait_ready([worker])
        results = []
        offset = 0
        for first_marker, rate in zip(range(0, MAX_MARKERS, MAX_MARKERS // len(rates)), rates,
                                      strict=False):
            need = int(rate * duration)
            load = events[offset:offset + need]
            offset += need
            log(f"end-to-end at {rate} ev/s for {duration:.0f} s")
            results.append(asyncio.run(_steady(gateway, worker, load, rate, duration, marker_every,
                                               first_marker)))
            time.sleep(2)
        return results
    finally:
        worker.stop()
        gateway.stop()


async def _steady(gateway: Proc, worker: Proc, events: list[dict], rate: int, duration: float,
                  marker_every: float, first_marker: int) -> LatencyResult:
    url = gateway.url + "/webhooks/events"
    samples: list[float] = []
    sent = 0
    run = uuid.uuid4().hex[:6]
    tick = 0.1
    per_tick = rate * tick
    began = time.monotonic()
    deadline = began + duration

    async with aiohttp.ClientSession() as session:

        async def post(body: bytes, msg_id: str) -> bool:
            async with session.post(url, data=body, headers=signed(body, msg_id)) as response:
                await response.read()
                return response.status == 202

        async def load() -> None:
            nonlocal sent
            due = 0.0
            pending: set[asyncio.Task[Any]] = set()
            step = 0
            while time.monotonic() < deadline and sent < len(events):
                due += per_tick
                batch = events[sent:sent + int(due) - sent] if int(due) > sent else []
                for first in range(0, len(batch), PER_REQUEST):
                    chunk = batch[first:first + PER_REQUEST]
                    task = asyncio.create_task(post(orjson.dumps(chunk), f"l-{run}-{sent}-{first}"))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                sent += len(batch)
                step += 1
                await asyncio.sleep(max(0.0, began + step * tick - time.monotonic()))
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

        async def marker(number: int) -> None:
            tenant = f"mk{first_marker + number}"
            event = {"id": f"mk-{run}-{number}", "source": "bench", "type": "lead.created",
                     "occurred_at": format_time_ms(now_ms()), "tenant": tenant,
                     "data": {"lead_id": f"mk-{run}-{number}", "channel": "web", "region": "na"}}
            body = orjson.dumps([event])
            if not await post(body, f"m-{run}-{number}"):
                return
            accepted = time.monotonic()
            query = worker.url + f"/api/kpis?window=1h&tenant={tenant}"
            while time.monotonic() < accepted + 30:
                try:
                    async with session.get(query) as response:
                        if response.status == 200:
                            body_json = await response.json(loads=orjson.loads)
                            if (body_json.get("kpis") or {}).get("leads_created"):
                                samples.append(time.monotonic() - accepted)
                                return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            samples.append(float("inf"))

        async def markers() -> None:
            tasks = []
            number = 0
            while time.monotonic() < deadline - 1:
                tasks.append(asyncio.create_task(marker(number)))
                number += 1
                await asyncio.sleep(marker_every)
            await asyncio.gather(*tasks)

        await asyncio.gather(load(), markers())
    achieved = sent / (time.monotonic() - began)
    return LatencyResult(rate, achieved, samples)


def describe(samples: list[float]) -> str:
    return f"n={len(samples)} median={statistics.median(samples):.3f}s" if samples else "no samples"
