"""(a)-(c2) and (g): consume throughput of raw aiokafka, Quix Streams and crm-kpi workers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.common import (
    ENGINE_DIR,
    REPO,
    Engine,
    Proc,
    Services,
    Throughput,
    create_topics,
    log,
    produce_batched,
    produce_single,
    time_until_applied,
    wait_ready,
)
from streams.topics import Topics

SUBPROCESS_TIMEOUT = 600


@dataclass
class Inputs:
    """The events on a topic of one event per record, for the raw and Quix consumers."""

    count: int
    single: str  # namespace whose events topic holds one event per record
    produce_single_s: float


def prepare(services: Services, events: list[dict]) -> Inputs:
    """Write the events one per record (before any consumer starts)."""
    single = f"bench-raw-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topics(services.bootstrap, [Topics(single).events]))
    log(f"producing {len(events)} events one per record (third-party style)")
    seconds = asyncio.run(produce_single(services.bootstrap, Topics(single).events, events))
    return Inputs(len(events), single, seconds)


def _json_subprocess(args: list[str]) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO,
                            timeout=SUBPROCESS_TIMEOUT, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    decoded: dict[str, float] = orjson.loads(lines[-1])
    return decoded


def raw_bound(services: Services, inputs: Inputs) -> Throughput:
    """(a) aiokafka getmany + orjson.loads per record, one event per record."""
    out = _json_subprocess(["bench.raw_consume", services.bootstrap, Topics(inputs.single).events,
                            str(inputs.count)])
    return Throughput(int(out["events"]), out["seconds"])


def quix(services: Services, inputs: Inputs) -> Throughput:
    """(b) Quix Streams tumbling windowed count by key, one event per record."""
    state = services.work / f"quix-{uuid.uuid4().hex[:6]}"
    out = _json_subprocess(["bench.quix_baseline", services.bootstrap, Topics(inputs.single).events,
                            str(inputs.count), str(state)])
    return Throughput(int(out["events"]), out["seconds"])


def engine_on(services: Services, events: list[dict], *, single: bool, workers: int = 1,
              timeout: float = 600, profile: Path | None = None,
              engine_dir: Path | None = None) -> Throughput:
    """crm-kpi workers (full KPI set) applying `events` from a fresh namespace.

    The workers start on empty topics and are frozen (SIGSTOP) once they own every
    partition; then the events are written, batched through the engine's publisher or one
    per record (`single`); the clock starts when the workers are resumed (SIGCONT) and stops
    at the first status poll that sees every event applied (processed or rejected).
    `engine_dir` runs the workers from another source tree (default: ENGINE_DIR).
    """
    namespace = f"bench-{'s' if single else 'b'}{workers}-{uuid.uuid4().hex[:6]}"
    topics = Topics(namespace)
    asyncio.run(create_topics(services.bootstrap, [topics.events, topics.customers, topics.deadletter]))
    engine = Engine(services, namespace, services.work / f"home-{namespace}",
                    engine_dir=engine_dir or ENGINE_DIR)
    procs = [engine.spawn("worker") for _ in range(workers)]
    spy = None
    try:
        wait_ready(procs)
        for proc in procs:
            proc.process.send_signal(signal.SIGSTOP)
        try:
            if single:
                asyncio.run(produce_single(services.bootstrap, topics.events, events))
            else:
                asyncio.run(produce_batched(services.bootstrap, namespace, events))
        finally:
            for proc in procs:
                proc.process.send_signal(signal.SIGCONT)
        began = time.monotonic()
        if profile is not None:
            spy = subprocess.Popen(["py-spy", "record", "-o", str(profile), "-f", "raw", "-r", "97",
                                    "--pid", str(procs[0].process.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = time_until_applied(procs, len(events), timeout)
        return Throughput(done.events, done.seconds + (done.started - began))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        for proc in procs:
            proc.stop()


def engine_ready_then(services: Services, namespace: str, workers: int) -> list[Proc]:
    """Start workers and wait until they own every partition (for live measurements)."""
    engine = Engine(services, namespace, services.work / f"home-{namespace}-{uuid.uuid4().hex[:4]}")
    procs = [engine.spawn("worker") for _ in range(workers)]
    wait_ready(procs)
    return procs
