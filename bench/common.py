"""Shared pieces of the benchmarks: services, generated events, producing, timing, polling."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from crmkpi.embedded import EmbeddedProcess, free_port, start_redis
from streams.publisher import EventPublisher
from streams.topics import Topics, partition_for, routing_key
from tests.support.kafka import KafkaBroker

REPO = Path(__file__).resolve().parents[1]
# The crm-kpi source tree the worker and gateway subprocesses run from (default: this one);
# point it at a checkout of an older commit to measure before/after in one run.
ENGINE_DIR = Path(os.environ.get("CRMKPI_BENCH_ENGINE_DIR", str(REPO))).resolve()
PARTITIONS = 4
FX_RATES = "EUR=1.08,GBP=1.26735"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    """Wall time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def log(message: str) -> None:
    """Progress on stderr, timestamped."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- services ----------------------------------------------------------------------------------


@dataclass
class Services:
    """One Apache Kafka broker and one Redis on loopback for the whole run."""

    kafka: KafkaBroker
    redis: EmbeddedProcess
    work: Path

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.address


@contextmanager
def services(work: Path) -> Iterator[Services]:
    """Start Kafka (the test suite's Apache Kafka 4.x jars) and Redis; stop them afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    kafka = KafkaBroker(work / "kafka")
    log("starting Apache Kafka")
    kafka.start()
    try:
        redis = start_redis(data_dir=work / "redis")
        try:
            yield Services(kafka, redis, work)
        finally:
            redis.stop()
    finally:
        kafka.stop()


# -- events ------------------------------------------------------------------------------------


def generate_events(count: int, *, seed: int = 7, days: float = 2.0, end_ms: int | None = None) -> list[dict]:
    """`count` canonical events of the simulated CRM company (crmkpi/simulate.py), by time.

    The company's rate is chosen so that `count` events span about `days` of history ending
    now: a realistic mix (visits, leads, deals, tickets, subscriptions, orders, staff work).
    """
    from crmkpi.simulate import CrmCompany

    end_ms = end_ms or now_ms() - 60_000
    rate = max(count / (days * 86_400) * 0.8, 0.05)
    company = CrmCompany(rate=rate, seed=seed, run_id=f"b{seed:x}")
    start = end_ms - round(days * DAY_MS)
    events: list[dict] = []
    window = start
    while len(events) < count and window < end_ms:
        upper = min(window + HOUR_MS, end_ms)
        events += company.events_between(window, upper)
        window = upper
    return events[:count]


# -- topics and producing ----------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    """Create topics (if missing) with `partitions` partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1)
                   for n in names if n not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


async def produce_single(bootstrap: str, topic: str, events: list[dict]) -> float:
    """One event per record, keyed by its entity (streams/topics.py), as a third-party
    producer with Kafka's default partitioner writes them; the record timestamp is the event
    time. Returns the seconds it took."""
    from streams.events import parse_time_ms

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024, enable_idempotence=True)
    await producer.start()
    began = time.monotonic()
    try:
        partitions = len(await producer.partitions_for(topic))
        pending = []
        for event in events:
            key = routing_key(event)
            pending.append(await producer.send(
                topic, orjson.dumps(event), key=key, partition=partition_for(key, partitions),
                timestamp_ms=parse_time_ms(event["occurred_at"])))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - began


async def produce_batched(bootstrap: str, namespace: str, events: list[dict], chunk: int = 5000) -> float:
    """Through the engine's own publisher (as `crm-kpi replay`: events for one partition
    grouped in one record). Returns the seconds it took."""
    publisher = EventPublisher(bootstrap, topics=Topics(namespace))
    await publisher.start()
    began = time.monotonic()
    try:
        for first in range(0, len(events), chunk):
            await publisher.publish(events[first:first + chunk])
    finally:
        await publisher.stop()
    return time.monotonic() - began


# -- crm-kpi processes -------------------------------------------------------------------------


@dataclass
class Engine:
    """The environment of one crm-kpi deployment (its own namespace and home)."""

    services: Services
    namespace: str
    home: Path
    extra: dict[str, str] = field(default_factory=dict)
    engine_dir: Path = ENGINE_DIR  # the source tree the subprocesses import crm-kpi from

    def env(self, **more: str) -> dict[str, str]:
        return {
            **os.environ,
            "CRMKPI_KAFKA_BOOTSTRAP": self.services.bootstrap,
            "CRMKPI_REDIS_URL": self.services.redis_url,
            "CRMKPI_HOME": str(self.home),
            "CRMKPI_NAMESPACE": self.namespace,
            "PYTHONPATH": str(self.engine_dir),
            "CRMKPI_PARTITIONS": str(PARTITIONS),
            # The simulated company bills in USD, EUR and GBP: with rates, every event counts.
            "CRMKPI_FX_RATES": FX_RATES,
            **self.extra,
            **more,
        }

    def spawn(self, *args: str, **more: str) -> Proc:
        """Start `crm-kpi ARGS` in the background, logging to the home directory."""
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = self.home / f"{args[0]}-{port}.log"
        env = self.env(**more, CRMKPI_WORKER_PORT=str(port)) if args[0] == "worker" else self.env(**more)
        process = subprocess.Popen([sys.executable, "-m", "crmkpi", *args], env=env,
                                   stdout=log_path.open("ab"), stderr=subprocess.STDOUT, cwd=self.engine_dir)
        return Proc(process, port, log_path)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        """Run `crm-kpi ARGS` to completion."""
        return subprocess.run([sys.executable, "-m", "crmkpi", *args], env=self.env(), cwd=self.engine_dir,
                              capture_output=True, timeout=timeout, check=False)


@dataclass
class Proc:
    """A crm-kpi subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None
        except (urllib.error.URLError, OSError, ValueError):
            return 0, None

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kib(self) -> int:
        """Resident memory in KiB (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def processed(worker: Proc) -> tuple[int, int] | None:
    """(events applied: processed + rejected, lag) over the whole cluster, or None while it
    cannot answer."""
    status, body = worker.get("/api/status")
    if status != 200 or body is None:
        return None
    return body["events_processed"] + body["events_rejected"], body["lag"]


def wait_ready(workers: list[Proc], timeout: float = 120) -> None:
    """Until every worker answers and the cluster owns all partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.tail()}")
        status, body = workers[0].get("/api/status")
        if status == 200 and body and len(body["partitions"]) == PARTITIONS:
            return
        time.sleep(0.3)
    raise RuntimeError(f"workers not ready after {timeout} s:\n{workers[0].tail()}")


@dataclass
class Throughput:
    """Events applied between the first and the last one seen."""

    events: int
    seconds: float
    started: float = 0.0  # time.monotonic() of the first observation

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def time_until_applied(workers: list[Proc], expected: int, timeout: float, poll: float = 0.2,
                       from_zero: bool = True) -> Throughput:
    """Poll until `expected` events are applied; time from the first applied to the last.

    With `from_zero` the clock starts now (nothing applied yet); else at the first poll that
    sees progress, and the events applied before it are not counted.
    """
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = (time.monotonic(), 0) if from_zero else None
    last_seen = 0
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.tail()}")
        answer = processed(workers[0])
        moment = time.monotonic()
        if answer is not None:
            count, _ = answer
            last_seen = count
            if first is None and count > 0:
                first = (moment, count)
            if count >= expected and first is not None:
                return Throughput(count - first[1], moment - first[0], first[0])
        time.sleep(poll)
    raise RuntimeError(f"only {last_seen}/{expected} events applied after {timeout} s")


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("faust-streaming", "aiokafka", "orjson", "quixstreams", "confluent-kafka", "aiohttp"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001
            versions[package] = "not installed"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": _meminfo(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else "?",
        "kafka": "Apache Kafka (tests/support/kafka-pom.xml), KRaft, one node, loopback",
        **versions,
    }


def _meminfo() -> str:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return f"{int(first.split()[1]) // 1024 // 1024} GiB"
    except (OSError, ValueError, IndexError):
        return "?"


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
