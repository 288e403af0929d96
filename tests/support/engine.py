"""crm-kpi processes for integration tests: workers and CLI commands as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from crmkpi.embedded import free_port


@dataclass
class EngineEnv:
    """The environment one isolated crm-kpi deployment runs with (its own namespace)."""

    bootstrap: str
    redis_url: str
    home: Path
    namespace: str
    idempotence: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def variables(self, **more: str) -> dict[str, str]:
        """Environment variables for a crm-kpi child process."""
        return {
            **os.environ,
            "CRMKPI_KAFKA_BOOTSTRAP": self.bootstrap,
            "CRMKPI_REDIS_URL": self.redis_url,
            "CRMKPI_HOME": str(self.home),
            "CRMKPI_NAMESPACE": self.namespace,
            "CRMKPI_KAFKA_IDEMPOTENCE": str(self.idempotence).lower(),
            **self.extra,
            **more,
        }

    def run(
        self, *args: str, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `crm-kpi ARGS` to completion."""
        return subprocess.run([sys.executable, "-m", "crmkpi", *args], env=self.variables(),
                              input=stdin, capture_output=True, timeout=timeout, check=False)


class WorkerProcess:
    """A `crm-kpi worker` subprocess with its own port."""

    def __init__(self, env: EngineEnv, log_dir: Path) -> None:
        self.env = env
        self.port = free_port()
        self.log_path = log_dir / f"worker-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of this worker's API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        """Start the worker (returns at once)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmkpi", "worker"],
            env=self.env.variables(CRMKPI_WORKER_PORT=str(self.port)),
            stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def get(self, path: str) -> tuple[int, Any]:
        """GET a path of the API: (status, decoded JSON body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:  # noqa: S310
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read() or b"null")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(worker: WorkerProcess, path: str, ready: Callable[[Mapping[str, Any]], bool],
             timeout: float = 120) -> Mapping[str, Any]:
    """Poll `path` until it answers 200 with a body `ready` accepts; fail with the log tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if worker.process is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.log_tail()}")
        try:
            status, body = worker.get(path)
        except (urllib.error.URLError, OSError) as error:
            status, body = 0, str(error)
        last = (status, body)
        if status == 200 and ready(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{path} not ready after {timeout} s; last answer {last}\n{worker.log_tail()}")


def fx_rates_variable(rates: Mapping[str, str]) -> str:
    """The `CRMKPI_FX_RATES` value of a rate table: `EUR=1.08,GBP=1.27`."""
    return ",".join(f"{code}={rate}" for code, rate in rates.items())


def replay_until_applied(env: EngineEnv, history: Path, worker: WorkerProcess, processed: int,
                         timeout: float) -> Mapping[str, Any]:
    """Run `crm-kpi replay HISTORY` and wait until `worker` reports `processed` events and no
    lag; return its status."""
    replay = env.run("replay", str(history), timeout=300)
    assert replay.returncode == 0, replay.stderr.decode()[-2000:]
    return wait_for(worker, "/api/status",
                    lambda s: s["events_processed"] == processed and s["lag"] == 0, timeout=timeout)
