"""Prometheus and promtool (Debian package `prometheus`) for integration tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from crmkpi.embedded import LOOPBACK, EmbeddedProcess, free_port, launch, wait_until_ready

READY_TIMEOUT = 30.0
HTTP_TIMEOUT = 5.0


def prometheus_binary(name: str) -> str:
    """Path of `promtool` or `prometheus` on PATH; raise with an install hint if missing."""
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps (apt: prometheus)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with `args` and return its result (never raises on a non-zero exit)."""
    return subprocess.run(
        [prometheus_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def http_get(url: str) -> tuple[int, bytes]:
    """GET `url` and return (status, body); connection errors give status 0."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


class PrometheusServer:
    """A Prometheus server on 127.0.0.1 with its own temporary storage."""

    def __init__(self, config_path: Path, port: int | None = None) -> None:
        self.config_path = config_path
        self.port = port or free_port()
        self.storage_dir = Path(tempfile.mkdtemp(prefix="crmkpi-prometheus-"))
        self.log_path = self.storage_dir / "prometheus.log"
        self.server: EmbeddedProcess | None = None

    @property
    def url(self) -> str:
        """Base URL of the server's HTTP API."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Start Prometheus and wait until /-/ready answers 200."""
        command = [
            prometheus_binary("prometheus"),
            f"--config.file={self.config_path}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            f"--storage.tsdb.path={self.storage_dir / 'data'}",
        ]
        process = launch("Prometheus", command, self.log_path)
        self.server = EmbeddedProcess("Prometheus", self.url, process, self.log_path)
        wait_until_ready(self.server, lambda: http_get(f"{self.url}/-/ready")[0] == 200, READY_TIMEOUT)

    def stop(self) -> None:
        """Stop the server and delete its storage."""
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.storage_dir, ignore_errors=True)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant PromQL query and return its result vector."""
        params = urllib.parse.urlencode({"query": expr})
        status, body = http_get(f"{self.url}/api/v1/query?{params}")
        answer = json.loads(body) if body else {}
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"Prometheus query {expr!r} failed ({status}): {body[:500]!r}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result
