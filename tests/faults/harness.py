"""A crm-kpi deployment under fault injection: workers, a background feeder, and the checks.

Conventions (shared/reference/faults.md section 3):

- **Input**: canonical events from `tests.oracle.history.generate_history` (late, out of
  order, 5% content duplicates), published in chunks by a background thread while faults are
  injected.
- **Oracle**: `tests.oracle.kpis.compute_kpis` over the events actually on the events topic
  (read back at the end, so a chunk a producer retried twice is in the oracle's input twice,
  where dedup by `(source, id)` absorbs it).
- **Checks**: `events_processed` equals the oracle's count of distinct valid events (nothing
  lost, nothing counted twice), the lag is 0, and every KPI of every window (and slice)
  equals the oracle's.
- **Figures**: every scenario reports events, faults injected, duplicates delivered and lost;
  `tests/faults/conftest.py` prints them at the end of the session (docs/reliability.md).

Every loop here is bounded in count and time; every process binds to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.state import StateKeeper
from crmkpi.embedded import free_port
from kpis.catalogue import DIMENSIONS
from kpis.families import families_of
from kpis.timebase import HOUR_MS, WINDOWS
from streams.codec import UndecodableRecord, decode_record
from streams.events import InvalidEvent, format_time_ms, parse_event
from streams.gateway.signing import signed_headers
from streams.publisher import EventPublisher, ensure_topics
from streams.topics import Topics
from tests.oracle.history import FX_RATES
from tests.oracle.kpis import compute_kpis, events_processed
from tests.support.engine import EngineEnv, WorkerProcess
from tests.support.pure_engine import ChangelogTable
from tests.unit.test_exactness import CONFIG, assert_same

PARTITIONS = 4
FX = ",".join(f"{code}={rate}" for code, rate in FX_RATES.items())
GROSS_MARGIN = "0.8"
SETTLE_SECONDS = 240.0
STABLE_SECONDS = 10.0  # how long a settled answer must hold
READ_SECONDS = 60.0
LAG_SAMPLE = re.compile(r'^crm_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)$')
PROCESSED_SAMPLE = re.compile(r'^crm_events_processed_total\{partition="(\d+)"\} (\S+)$', re.M)
# Redis databases 1-15 in turn: besides its namespace, each deployment gets a database of its
# own, so nothing an earlier test left in Redis can meet a later one.
_REDIS_DBS = itertools.cycle(range(1, 16))


class OracleMismatch(AssertionError):
    """The engine's counts or KPIs differ from the oracle's."""


def evaluation_time() -> tuple[int, datetime]:
    """T for the oracle: the last full hour (epoch ms, and as a datetime)."""
    at_ms = time.time_ns() // 1_000_000 // HOUR_MS * HOUR_MS
    return at_ms, datetime.fromtimestamp(at_ms / 1000, tz=UTC)


def redis_db_url(address: str, db: int | None = None) -> str:
    """`address` (redis://host:port/0) on its own database."""
    base = address.rsplit("/", 1)[0]
    return f"{base}/{next(_REDIS_DBS) if db is None else db}"


def run_async(coroutine: Any) -> Any:
    """Run a coroutine on a fresh event loop in this thread (tests here are synchronous)."""
    return asyncio.run(coroutine)


# ------------------------------------------------------------------------------- Kafka reads


async def _read_records(bootstrap: str, topic: str, start: Mapping[int, int] | None = None,
                        end: Mapping[int, int] | None = None) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        if end is not None:
            ends = {tp: min(ends[tp], end.get(tp.partition, 0)) for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        async with asyncio.timeout(READ_SECONDS):
            while True:
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
                batches = await consumer.getmany(timeout_ms=500)
                for tp, batch in batches.items():
                    records += [r for r in batch if r.offset < ends[tp]]
    finally:
        await consumer.stop()
    return records


def read_records(bootstrap: str, topic: str, start: Mapping[int, int] | None = None,
                 end: Mapping[int, int] | None = None) -> list[Any]:
    """Every record of `topic` (all partitions) from `start` up to `end` (default: the end)."""
    records: list[Any] = run_async(_read_records(bootstrap, topic, start, end))
    return records


def events_of(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The canonical events carried by records (undecodable records are skipped)."""
    events: list[dict[str, Any]] = []
    for record in records:
        try:
            events += decode_record(record.value)
        except UndecodableRecord:
            continue
    return events


def duplicate_deliveries(events: Sequence[Mapping[str, Any]]) -> int:
    """Deliveries of an event `(source, id)` after its first."""
    counts = Counter((str(e.get("source")), str(e.get("id"))) for e in events if isinstance(e, Mapping))
    return sum(n - 1 for n in counts.values())


async def _committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets, by (topic, partition)."""
    result: dict[tuple[str, int], int] = run_async(_committed(bootstrap, group))
    return result


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic`."""
    result: dict[int, int] = run_async(_end_offsets(bootstrap, topic))
    return result


# ------------------------------------------------------------------------------- the feeder


class Feeder(threading.Thread):
    """Publishes events in chunks from a background thread, as a producer that retries.

    A chunk whose write fails (broker down) is retried whole after a second, for at most
    `retry_seconds`: so a chunk can land twice, a duplicate the engine must absorb.
    """

    def __init__(self, bootstrap: str, topics: Topics, events: Sequence[Mapping[str, Any]], *,
                 chunk: int = 200, pause: float = 0.02, retry_seconds: float = 180.0) -> None:
        super().__init__(daemon=True, name="feeder")
        self.bootstrap = bootstrap
        self.topics = topics
        self.events = list(events)
        self.chunk = chunk
        self.pause = pause
        self.retry_seconds = retry_seconds
        self.published = 0
        self.retries = 0
        self.error: BaseException | None = None
        self.stop_requested = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # reported by join_checked
            self.error = error

    async def _run(self) -> None:
        publisher = EventPublisher(self.bootstrap, idempotence=True, topics=self.topics)
        await publisher.start()
        try:
            for first in range(0, len(self.events), self.chunk):
                if self.stop_requested.is_set():
                    return
                await self._publish(publisher, self.events[first:first + self.chunk])
                self.published = min(first + self.chunk, len(self.events))
                await asyncio.sleep(self.pause)
        finally:
            await publisher.stop()

    async def _publish(self, publisher: EventPublisher, chunk: list[Mapping[str, Any]]) -> None:
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                async with asyncio.timeout(30):
                    await publisher.publish(chunk)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(1.0)

    def fraction(self) -> float:
        """The share of the events published so far."""
        return self.published / max(len(self.events), 1)

    def wait_for_fraction(self, share: float, timeout: float = 120.0) -> None:
        """Block until `share` of the events are published (or the feeder ended)."""
        deadline = time.monotonic() + timeout
        while self.fraction() < share and self.is_alive():
            assert time.monotonic() < deadline, f"feeder stuck at {self.fraction():.0%}"
            time.sleep(0.05)

    def join_checked(self, timeout: float = 300.0) -> None:
        """Wait for the end of the feed; fail if it raised or did not finish."""
        self.join(timeout)
        assert not self.is_alive(), "the feeder did not finish in time"
        if self.error is not None:
            raise AssertionError(f"the feeder failed: {self.error!r}") from self.error


# ------------------------------------------------------------------------------- deployment


@dataclass
class Figures:
    """What one scenario reports (docs/reliability.md)."""

    scenario: str
    events: int = 0
    faults: list[str] = field(default_factory=list)
    duplicates_delivered: int = 0
    redelivered_records: int = 0
    redelivered_events: int = 0
    lost: int = 0
    overcounted: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def fault(self, text: str) -> None:
        """Record one injected fault."""
        self.faults.append(text)


class Deployment:
    """One crm-kpi namespace on the session's Kafka: its workers and what it published."""

    def __init__(self, bootstrap: str, redis_address: str, home: Path, namespace: str,
                 **extra: str) -> None:
        self.env = EngineEnv(bootstrap, redis_db_url(redis_address), home, namespace,
                             extra={"CRMKPI_FX_RATES": FX, "CRMKPI_GROSS_MARGIN": GROSS_MARGIN,
                                    **extra})
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.topics = Topics(namespace)
        self.workers: list[WorkerProcess] = []
        self.all_workers: list[WorkerProcess] = []
        run_async(ensure_topics(bootstrap, PARTITIONS, topics=self.topics))

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        return self.env.bootstrap

    def add_worker(self) -> WorkerProcess:
        """Start one more worker."""
        worker = WorkerProcess(self.env, self.home).start()
        self.workers.append(worker)
        self.all_workers.append(worker)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL a worker (a crash)."""
        worker.kill()
        self.workers.remove(worker)

    def stop_worker(self, worker: WorkerProcess) -> None:
        """Stop a worker cleanly (SIGTERM)."""
        worker.stop()
        self.workers.remove(worker)

    def close(self) -> None:
        """Stop every worker still running."""
        for worker in self.all_workers:
            worker.stop()

    def feeder(self, events: Sequence[Mapping[str, Any]], **options: Any) -> Feeder:
        """A started background feeder of `events` into this deployment's events topic."""
        feeder = Feeder(self.bootstrap, self.topics, events, **options)
        feeder.start()
        return feeder

    def published(self) -> list[dict[str, Any]]:
        """Every canonical event on the events topic, in partition order."""
        return events_of(read_records(self.bootstrap, self.topics.events))

    # -- observing workers -----------------------------------------------------------------

    def status(self) -> Mapping[str, Any] | None:
        """`/api/status` from the first live worker that answers 200, else None."""
        for worker in list(self.workers):
            try:
                code, body = worker.get("/api/status")
            except (urllib.error.URLError, OSError, ValueError):
                continue
            if code == 200:
                return dict(body)
        return None

    def wait_processed(self, at_least: int, timeout: float = 120.0) -> int:
        """Block until the engine reports `at_least` processed events; return the count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and status["events_processed"] >= at_least:
                return int(status["events_processed"])
            time.sleep(0.2)
        raise AssertionError(f"fewer than {at_least} events processed after {timeout} s:\n"
                             + self.log_tails())

    def settle(self, expected: int, timeout: float = SETTLE_SECONDS,
               quiet: float = 30.0) -> Mapping[str, Any]:
        """Wait until a worker answers `expected` events processed and no lag.

        Raises OracleMismatch when the count passes `expected`, or stays below it with no lag
        for `quiet` seconds (events lost); AssertionError when nothing settles in `timeout`.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        idle_since: float | None = None
        while time.monotonic() < deadline:
            for worker in self.workers:
                assert worker.process is not None and worker.process.poll() is None, (
                    f"worker {worker.port} exited:\n{worker.log_tail()}")
            last = self.status()
            if last is not None and last["lag"] == 0:
                if last["events_processed"] == expected and self._still_settled(expected):
                    return last
                if last["events_processed"] > expected:
                    raise OracleMismatch(f"{last['events_processed']} events processed, "
                                         f"{expected} distinct published: counted twice")
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > quiet:
                    raise OracleMismatch(f"{last['events_processed']} events processed with no "
                                         f"lag, {expected} distinct published: lost\n"
                                         + self.loss_report())
            else:
                idle_since = None
            time.sleep(0.5)
        raise AssertionError(f"not settled at {expected} events after {timeout} s: last {last}\n"
                             + self.commit_report() + "\n" + self.log_tails())

    def _still_settled(self, expected: int) -> bool:
        """Settled again after STABLE_SECONDS, and every record of both input topics committed.

        A consumer learns of new records (the customer upserts of the last batch) only with
        its next fetch, so one answer of no lag can come just before the customer stage sees
        its last input. The group's committed offsets are the engine-independent witness: a
        batch is committed only once it is applied and its state written.
        """
        time.sleep(STABLE_SECONDS)
        again = self.status()
        return (again is not None and again["lag"] == 0 and again["events_processed"] == expected
                and self._all_committed())

    def _all_committed(self) -> bool:
        """Whether the group has committed every record of the events and customers topics."""
        return all(committed == end for _, _, committed, end in self._commit_positions())

    def commit_report(self) -> str:
        """Per input partition: the group's committed offset and the end offset."""
        return "\n".join(f"{topic} {partition}: committed {committed}, end {end}"
                         for topic, partition, committed, end in self._commit_positions())

    def _commit_positions(self) -> list[tuple[str, int, int, int]]:
        committed = committed_offsets(self.bootstrap, self.env.namespace)
        return [(topic, partition, committed.get((topic, partition), 0), end)
                for topic in (self.topics.events, self.topics.customers)
                for partition, end in end_offsets(self.bootstrap, topic).items()]

    def loss_report(self) -> str:
        """Per events partition: distinct valid events published, processed by the live owner,
        processed in the state rebuilt from the changelog, committed and end offsets."""
        records = read_records(self.bootstrap, self.topics.events)
        published = {p: events_processed(valid_events(events_of(
            r for r in records if r.partition == p))) for p in range(PARTITIONS)}
        live: dict[int, str] = {}
        for worker in self.workers:
            try:
                with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:  # noqa: S310
                    text = response.read().decode()
            except (urllib.error.URLError, OSError):
                continue
            for partition, value in PROCESSED_SAMPLE.findall(text):
                live[int(partition)] = f"{float(value):.0f} (worker {worker.port})"
        written = ChangelogTable()
        written.send((r.partition, r.key, r.value) for r in read_records(
            self.bootstrap, f"{self.env.namespace}-{self.topics.state_table}-changelog"))
        keeper = StateKeeper(written.recovered(), families_of("events"),
                             CONFIG)
        committed = committed_offsets(self.bootstrap, self.env.namespace)
        ends = end_offsets(self.bootstrap, self.topics.events)
        return "\n".join(
            f"partition {p}: published {published[p]}, live {live.get(p, '-')}, changelog "
            f"{keeper.state(p).counters.processed}, committed "
            f"{committed.get((self.topics.events, p))}, end {ends[p]}" for p in range(PARTITIONS))

    def log_tails(self) -> str:
        """The last lines of every worker's log."""
        return "\n".join(f"--- worker {w.port}\n{w.log_tail(25)}" for w in self.all_workers)

    def consumed_positions(self, worker: WorkerProcess) -> dict[int, int]:
        """Per owned events partition: how far `worker` has applied (highwater - lag)."""
        ends = end_offsets(self.bootstrap, self.topics.events)
        with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        positions = {}
        for line in text.splitlines():
            match = LAG_SAMPLE.match(line)
            if match and match[2] == self.topics.events:
                partition = int(match[1])
                positions[partition] = ends[partition] - int(float(match[3]))
        return positions

    def crash(self, worker: WorkerProcess, figures: Figures) -> None:
        """SIGKILL `worker`, and count what it had applied beyond the committed offsets.

        Those records are delivered again to the partitions' next owner: the duplicates that
        the engine's stream positions must absorb (a lower bound: the worker may apply a few
        more between the scrape and the kill).
        """
        try:
            positions = self.consumed_positions(worker)
        except (urllib.error.URLError, OSError):
            positions = {}
        self.kill(worker)
        committed = committed_offsets(self.bootstrap, self.env.namespace)
        start = {p: committed.get((self.topics.events, p), 0) for p in positions}
        redelivered = {p: max(positions[p] - start[p], 0) for p in positions}
        figures.redelivered_records += sum(redelivered.values())
        if any(redelivered.values()):
            records = read_records(self.bootstrap, self.topics.events, start, positions)
            figures.redelivered_events += len(events_of(records))

    # -- the checks ------------------------------------------------------------------------

    def check_against_oracle(self, events: Sequence[Mapping[str, Any]], at_ms: int, at: datetime,
                             figures: Figures, *, windows: Iterable[str] = WINDOWS,
                             dimensions: Iterable[str | None] = (None, *DIMENSIONS)) -> None:
        """Settle, then compare counts and every KPI with the oracle over `events`.

        Invalid events (poison) are left out first: the engine dead-letters them.
        """
        events = valid_events(events)
        expected = events_processed(events)
        figures.events = expected
        figures.duplicates_delivered += duplicate_deliveries(events)
        try:
            status = self.settle(expected)
        finally:
            last = self.status()
            if last is not None:
                figures.lost = max(expected - last["events_processed"], 0)
                figures.overcounted = max(last["events_processed"] - expected, 0)
        assert status["partitions"] == list(range(PARTITIONS))
        mismatches: list[str] = []
        worker = self.workers[0]
        for window in windows:
            for by in dimensions:
                query = f"/api/kpis?window={window}&at={format_time_ms(at_ms)}" + (
                    f"&by={by}" if by else "")
                code, body = worker.get(query)
                assert code == 200, (code, body)
                oracle = compute_kpis(events, at, window=window, by=by, fx_rates=FX_RATES,
                                      gross_margin=GROSS_MARGIN)
                try:
                    assert_same(body["kpis"], oracle, f"{window} by={by}")
                except AssertionError as error:
                    mismatches.append(str(error).splitlines()[0])
        figures.notes["kpi_mismatches"] = len(mismatches)
        if mismatches:
            raise OracleMismatch(f"{len(mismatches)} window/slice(s) differ from the oracle, "
                                 f"first: {mismatches[:3]}")


def valid_events(events: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The events the engine accepts (parse_event with this deployment's currencies)."""
    currencies = frozenset({"USD", *FX_RATES})
    now_ms = time.time_ns() // 1_000_000
    kept = []
    for raw in events:
        try:
            parse_event(raw, now_ms=now_ms, known_currencies=currencies)
        except InvalidEvent:
            continue
        kept.append(raw)
    return kept


class GatewayProcess:
    """A `crm-kpi gateway` subprocess of a deployment, with the Standard Webhooks endpoint on."""

    def __init__(self, env: EngineEnv, log_dir: Path, secret: str) -> None:
        self.env = env
        self.secret = secret
        self.port = free_port()
        self.log_path = log_dir / f"gateway-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        """Start and wait until /healthz answers."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmkpi", "gateway"],
            env=self.env.variables(CRMKPI_GATEWAY_PORT=str(self.port),
                                   CRMKPI_SECRET_STANDARD=self.secret),
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"gateway exited:\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):  # noqa: S310
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise AssertionError(f"gateway not up after {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 60 s."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the gateway's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def post_events(self, events: Sequence[Mapping[str, Any]], *, base: str | None = None,
                    timeout: float = 30.0) -> tuple[int, bytes]:
        """POST canonical events to /webhooks/events, signed now: (status, body); 0 = no answer."""
        body = orjson.dumps(list(events))
        url = (base or self.url) + "/webhooks/events"
        headers = {**signed_headers("events", self.secret, body, url=url), "Connection": "close"}
        request = urllib.request.Request(url, data=body,  # noqa: S310 (our http URL)
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return 0, b""


def bounded_poll(condition: Callable[[], bool], timeout: float, interval: float = 0.2,
                 what: str = "condition") -> None:
    """Wait until `condition()` holds, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(interval)
