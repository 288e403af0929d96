"""`crm-kpi up` on a fresh home: answers /api/status within 60 s and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
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


def test_up_demo_serves_kpis_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    worker_port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKPI_")}
    env.update(CRMKPI_HOME=str(tmp_path), CRMKPI_WORKER_PORT=str(worker_port),
               CRMKPI_GATEWAY_PORT=str(gateway_port))
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "crmkpi", "up", "--demo"], env=env,
                          stdout=log, stderr=subprocess.STDOUT)
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
