"""`crm-kpi up`: the whole engine on one machine, started and stopped as one."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from crmkpi.discovery import Services, forget_services, record_services
from crmkpi.embedded import EmbeddedProcess, free_port_from, start_redis, start_tansu
from crmkpi.settings import Settings

READY_TIMEOUT = 90.0
DEMO_FX_RATES = "EUR=1.08,GBP=1.27"  # the simulated company bills in USD, EUR and GBP


class Stack:
    """Embedded services (when not configured), workers, the gateway and the demo feed."""

    def __init__(self, settings: Settings, *, workers: int, demo: bool, console: Console) -> None:
        self.settings = settings
        self.workers = workers
        self.demo = demo
        self.console = console
        self.embedded: list[EmbeddedProcess] = []
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.worker_ports: list[int] = []

    def start(self) -> threading.Event:
        """Start everything, print every URL; returns the event that asks the stack to stop."""
        services, env = self._services()
        record_services(self.settings, services)
        if self.demo:
            env.update(self._demo_settings())
        port = self.settings.worker_port
        for _ in range(self.workers):  # each on the next free port, told to it and waited for
            port = free_port_from(port, self.settings.bind)
            self._spawn(["worker"], {**env, "CRMKPI_WORKER_PORT": str(port)})
            self._wait_for(f"http://127.0.0.1:{port}/healthz")
            self.worker_ports.append(port)
            port += 1
        self._spawn(["gateway"], env)
        self._wait_for(f"http://127.0.0.1:{self.worker_ports[0]}/api/status")
        self._print_urls(services)
        if self.demo:
            self._wait_for(f"http://127.0.0.1:{self.settings.gateway_port}/healthz")
            self._spawn(["simulate", "--history-days", "3", "--rate", "20", "--webhooks"], env)
        return threading.Event()

    def watch(self, stop: threading.Event) -> None:
        """Block until asked to stop or until a child dies."""
        while not stop.wait(1.0):
            for name, child in self.children:
                if child.poll() is not None and child.returncode != 0:
                    self.console.print(f"[red]crm-kpi {name} exited with {child.returncode}[/red]")
                    return

    def stop(self) -> None:
        """Stop children, then embedded services; forget the runfile."""
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        for _, child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(self.embedded):
            server.stop()
        forget_services(self.settings)
        self.console.print("crm-kpi stopped")

    def _demo_settings(self) -> dict[str, str]:
        """What the simulated company needs: a webhook secret and rates for its currencies."""
        demo = {}
        if self.settings.secret_standard is None:
            demo["CRMKPI_SECRET_STANDARD"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        if not self.settings.fx_rates:
            demo["CRMKPI_FX_RATES"] = DEMO_FX_RATES
        return demo

    def _services(self) -> tuple[Services, dict[str, str]]:
        env: dict[str, str] = {}
        logs = Path(self.settings.home) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        kafka = self.settings.kafka_bootstrap
        if not kafka:
            broker = start_tansu(log_path=logs / "tansu.log")
            self.embedded.append(broker)
            kafka = broker.address
            env["CRMKPI_KAFKA_IDEMPOTENCE"] = "false"  # Tansu rejects InitProducerId v0
        redis = self.settings.redis_url
        if not redis:
            server = start_redis(data_dir=Path(self.settings.home) / "redis")
            self.embedded.append(server)
            redis = server.address
        env.update(CRMKPI_KAFKA_BOOTSTRAP=kafka, CRMKPI_REDIS_URL=redis)
        return Services(kafka, redis), env

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen([sys.executable, "-m", "crmkpi", *command], env={**os.environ, **env})
        self.children.append((command[0], process))

    def _wait_for(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except OSError:
                pass
            if any(child.poll() is not None for _, child in self.children):
                raise RuntimeError(f"a crm-kpi process exited while waiting for {url}")
            time.sleep(0.5)
        raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT:.0f} s")

    def _print_urls(self, services: Services) -> None:
        port, gateway = self.worker_ports[0], self.settings.gateway_port
        self.console.print(
            "[green]crm-kpi is up[/green]\n"
            f"  KPI API      http://127.0.0.1:{port}/api/kpis?window=30d\n"
            f"  status       http://127.0.0.1:{port}/api/status\n"
            f"  metrics      http://127.0.0.1:{port}/metrics\n"
            f"  webhooks     http://127.0.0.1:{gateway}/webhooks/events\n"
            f"  Kafka        {services.kafka_bootstrap}\n"
            f"  Redis        {services.redis_url}\n"
            "Ctrl-C stops everything."
        )
