"""F17: the gateway's answer is lost after Kafka acknowledged the write: the provider retries,
and the event counts once.

Two ways to lose the answer:

- **A proxy that drops the response** (deterministic): the delivery goes through a TCP proxy
  that forwards the request, waits for the gateway's complete answer (sent only after every
  record is acknowledged by all in-sync replicas and the ids are marked done in Redis) and
  closes the sender's connection without relaying it. The sender retries straight to the
  gateway: the ids are known, the answer is 202 with every event a duplicate, nothing is
  written twice.
- **SIGKILL of the gateway with requests in flight** (slow): some deliveries were written to
  Kafka but never answered, their ids left `pending` in Redis. The restarted gateway answers
  their retries 503 until the 300 s claim lease ends; the test fast-forwards that by deleting
  the pending keys (what their expiry does). The retries are then published again: Kafka holds
  duplicates, which the worker's `(source, id)` dedup absorbs. To make the kill land between
  the ack and the answer, Redis is frozen (SIGSTOP) for half a second first: requests whose
  write Kafka acknowledged then wait on marking their ids done when the gateway dies.

Reproduce: python3 -m pytest tests/faults/test_gateway_crash.py -m "slow or not slow"
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from crmkpi.embedded import EmbeddedProcess
from tests.faults.harness import Deployment, Figures, GatewayProcess, evaluation_time
from tests.oracle.history import generate_history
from tests.support.kafka import KafkaBroker
from tests.unit.gateway.support import SECRETS

pytestmark = pytest.mark.integration
DELIVERY = 25
PROXY_SECONDS = 30.0


class DroppingProxy(threading.Thread):
    """Forwards each request to `target`, reads the whole answer, and drops it."""

    def __init__(self, target_port: int) -> None:
        super().__init__(daemon=True, name="dropping-proxy")
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.dropped: list[bytes] = []  # status lines of the answers dropped
        self.closing = threading.Event()

    def run(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port), timeout=10) as up:
            client.settimeout(PROXY_SECONDS)
            up.settimeout(PROXY_SECONDS)
            request = _read_request(client)
            up.sendall(request)
            answer = b""
            while chunk := up.recv(65536):  # Connection: close, so the gateway closes
                answer += chunk
            self.dropped.append(answer.split(b"\r\n", 1)[0])
            client.shutdown(socket.SHUT_RDWR)  # the sender sees no answer

    def close(self) -> None:
        self.closing.set()
        self.join(5)
        self.listener.close()


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def stack(kafka_broker: KafkaBroker, redis_server: EmbeddedProcess, tmp_path: Path,
          unique_name: str) -> Iterator[tuple[Deployment, GatewayProcess]]:
    deployment = Deployment(kafka_broker.bootstrap, redis_server.address, tmp_path, unique_name)
    gateway = GatewayProcess(deployment.env, tmp_path, SECRETS["events"])
    try:
        deployment.add_worker()
        gateway.start()
        yield deployment, gateway
    finally:
        gateway.stop()
        deployment.close()


def deliveries(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [list(events[i:i + DELIVERY]) for i in range(0, len(events), DELIVERY)]


def test_answer_dropped_after_the_ack_then_retried(
        stack: tuple[Deployment, GatewayProcess], figures: Figures) -> None:
    began = time.monotonic()
    deployment, gateway = stack
    at_ms, at = evaluation_time()
    sent = deliveries(generate_history(90, end=at, n_events=1_000, duplicate_rate=0))
    proxy = DroppingProxy(gateway.port)
    proxy.start()
    try:
        first = [gateway.post_events(d, base=f"http://127.0.0.1:{proxy.port}") for d in sent]
    finally:
        proxy.close()
    assert [status for status, _ in first] == [0] * len(sent)
    assert len(proxy.dropped) == len(sent) and all(b" 202 " in line for line in proxy.dropped)
    figures.fault(f"{len(sent)} gateway answers (202) dropped by a proxy")
    retried = [gateway.post_events(d) for d in sent]
    assert all(status == 202 for status, _ in retried)
    assert all(b'"accepted":0' in body for _, body in retried)
    figures.notes["deliveries_sent_twice"] = len(sent)
    published = deployment.published()
    assert len(published) == sum(len(d) for d in sent)  # nothing written twice
    deployment.check_against_oracle(published, at_ms, at, figures)
    figures.seconds = time.monotonic() - began


@pytest.mark.slow
def test_gateway_killed_with_requests_in_flight(
        stack: tuple[Deployment, GatewayProcess], figures: Figures,
        redis_server: EmbeddedProcess) -> None:
    began = time.monotonic()
    redis_pid = redis_server.process.pid
    deployment, gateway = stack
    at_ms, at = evaluation_time()
    sent = deliveries(generate_history(91, end=at, n_events=6_000, duplicate_rate=0))
    answered: dict[int, int] = {}

    def deliver(index: int) -> None:
        answered[index] = gateway.post_events(sent[index], timeout=20)[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(deliver, index) for index in range(len(sent))]
        deadline = time.monotonic() + 60
        while sum(1 for s in answered.values() if s == 202) < len(sent) // 3:
            assert time.monotonic() < deadline, "deliveries too slow"
            time.sleep(0.01)
        # Freeze Redis for a moment so that requests whose write Kafka has acknowledged wait
        # on marking their ids done: the kill then lands between the ack and the answer.
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            gateway.kill()
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        figures.fault("SIGKILL the gateway with 16 requests in flight (Redis frozen 0.5 s)")
        for future in futures:
            future.result(timeout=60)
    unanswered = [i for i in range(len(sent)) if answered.get(i) != 202]
    on_kafka = {(e["source"], e["id"]) for e in deployment.published()}
    written_not_answered = [i for i in unanswered
                            if all((e["source"], e["id"]) in on_kafka for e in sent[i])]
    figures.notes.update(deliveries=len(sent), unanswered=len(unanswered),
                         written_but_unanswered=len(written_not_answered))
    gateway.start()
    client = redis.Redis.from_url(deployment.env.redis_url)
    pending = [k for k in client.scan_iter(f"{deployment.env.namespace}:seen:*", count=1000)
               if client.get(k) == b"pending"]
    if pending:
        client.delete(*pending)  # the 300 s lease, fast-forwarded
    figures.notes["pending_claims_expired"] = len(pending)
    for index in unanswered:
        status, body = gateway.post_events(sent[index])
        assert status == 202, (status, body)
    published = deployment.published()
    assert written_not_answered, "the kill never fell between a Kafka ack and its answer"
    deployment.check_against_oracle(published, at_ms, at, figures)
    figures.seconds = time.monotonic() - began
