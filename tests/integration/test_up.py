"""`crm-kpi up` on a fresh home: answers /api/status within 60 s and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from crmkpi.embedded import free_port

pytestmark = pytest.mark.integration


def _status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as answer:  # noqa: S310
            return orjson.loads(answer.read())
    except OSError:
        return None


def _up(tmp_path: Path, worker_port: int, *options: str) -> subprocess.Popen[bytes]:
    """`crm-kpi up` with a fresh home and the given worker port, logging to up.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKPI_")}
    env.update(CRMKPI_HOME=str(tmp_path), CRMKPI_WORKER_PORT=str(worker_port),
               CRMKPI_GATEWAY_PORT=str(free_port()))
    log = (tmp_path / "up.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "crmkpi", "up", *options], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def test_up_demo_serves_kpis_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    worker_port = free_port()
    up = _up(tmp_path, worker_port, "--demo")
    try:
        started = time.monotonic()
        status = None
        while time.monotonic() - started < 60 and status is None:
            status = _status(worker_port)
            time.sleep(0.5)
        assert status is not None, (tmp_path / "up.log").read_text()
        # The demo's backfill flows through the gateway into the KPIs.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (_status(worker_port) or {}).get("events_processed", 0) == 0:
            time.sleep(1)
        assert (_status(worker_port) or {})["events_processed"] > 0
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0, (tmp_path / "up.log").read_text()
    assert b"crm-kpi stopped" in (tmp_path / "up.log").read_bytes()
    assert not (tmp_path / "services.json").exists()
    assert _status(worker_port) is None


def test_up_takes_the_next_port_when_the_worker_port_is_busy_and_says_so(tmp_path: Path) -> None:
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        busy = other_server.getsockname()[1]
        up = _up(tmp_path, busy)
        try:
            deadline = time.monotonic() + 90
            printed = None
            while time.monotonic() < deadline and printed is None:
                printed = re.search(rb"KPI API +http://127.0.0.1:(\d+)/", (tmp_path / "up.log").read_bytes())
                time.sleep(0.5)
            assert printed is not None, (tmp_path / "up.log").read_text()
            port = int(printed[1])
            assert port > busy and _status(port) is not None
        finally:
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=60) == 0, (tmp_path / "up.log").read_text()
