"""Structural checks of docker-compose.yml, the Dockerfile and .env.example.

No Docker engine runs in CI, so `docker compose config` cannot validate the stack: these
tests check what would otherwise only fail at `docker compose up` on a user's machine.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmkpi.cli import main as crm_kpi

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {"worker": "worker", "gateway": "gateway"}  # service -> crm-kpi subcommand
LOOPBACK = "127.0.0.1"


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the service's bind mounts, in short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/", "~")):
                mounts.append((source, target))
    return mounts


def is_valid_subcommand(argv: list[str], capsys: pytest.CaptureFixture[str]) -> bool:
    """True when `crm-kpi <argv> --help` is accepted (argparse exits 0 on --help)."""
    with pytest.raises(SystemExit) as exit_info:
        crm_kpi([*argv, "--help"])
    capsys.readouterr()
    return exit_info.value.code == 0


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name} disables its healthcheck"
    assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), check


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_waits_for_healthy_services(name: str) -> None:
    depends_on = SERVICES[name].get("depends_on", {})
    # The short (list) form only waits for the container to start, not to be ready.
    assert isinstance(depends_on, dict), f"{name}: depends_on must use condition: service_healthy"
    for dependency, options in depends_on.items():
        assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
        assert options.get("condition") == "service_healthy", f"{name} -> {dependency}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_bind_loopback(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        if isinstance(port, dict):
            assert port.get("host_ip") == LOOPBACK, f"{name}: {port}"
        else:
            assert str(port).startswith(f"{LOOPBACK}:"), f"{name}: {port} is not on {LOOPBACK}"


def test_bind_mounted_files_exist_in_the_repo() -> None:
    mounts = [(name, *mount) for name, service in SERVICES.items()
              for mount in bind_mounts(service)]
    assert mounts, "no bind mounts found: the parser is broken"
    for name, source, _ in mounts:
        assert source.startswith("./"), f"{name}: mount {source} from outside the repo"
        assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


@pytest.mark.parametrize("service, subcommand", sorted(APP_SERVICES.items()))
def test_app_services_run_real_crm_kpi_subcommands(
    service: str, subcommand: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = SERVICES[service]["command"]
    assert command == ["crm-kpi", subcommand]
    assert is_valid_subcommand(command[1:], capsys)
    assert not is_valid_subcommand(["no-such-command"], capsys)  # the check can fail


def test_dockerfile_default_command_is_a_real_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    assert match, "Dockerfile has no exec-form CMD"
    command = yaml.safe_load(match.group(1))
    assert command[0] == "crm-kpi"
    assert is_valid_subcommand(command[1:], capsys)
    assert 'crm-kpi = "crmkpi.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_dockerfile_runs_the_compiled_build_as_non_root_on_python_311_slim() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    images = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert images and all(image == "python:3.11-slim" for image in images), images
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users
    assert re.search(r"^RUN CRMKPI_COMPILE=1 pip install \.$", dockerfile, re.MULTILINE)


def test_worker_can_scale_out() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker, "a fixed container name prevents --scale"
    for port in worker.get("ports", []):
        parts = str(port).split(":")  # [ip:][host_port:]container_port
        host_port = parts[-2] if len(parts) >= 2 else ""
        assert host_port == "", f"worker publishes the fixed host port {port}"


def test_app_services_reach_the_compose_backends() -> None:
    for service in APP_SERVICES:
        environment = SERVICES[service]["environment"]
        assert environment["CRMKPI_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert environment["CRMKPI_REDIS_URL"] == "redis://redis:6379/0"
        assert environment["CRMKPI_BIND"] == "0.0.0.0"  # noqa: S104
    assert "CRMKPI_API_TOKEN" in SERVICES["worker"]["environment"]


def test_redis_persists_dedup_keys() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_kafka_image_matches_the_test_broker_version() -> None:
    pom = ROOT / "tests" / "support" / "kafka-pom.xml"
    if not pom.exists():
        pytest.skip("tests/support/kafka-pom.xml is absent: nothing to compare")
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(pom).getroot()  # noqa: S314 (the repo's own file, not untrusted input)
    pinned = root.findtext("m:properties/m:kafka.version", namespaces=namespace)
    image, _, tag = SERVICES["kafka"]["image"].partition(":")
    assert image == "apache/kafka"
    assert tag == pinned, f"compose runs Kafka {tag}, the tests {pinned}"


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (worker_sd,) = jobs["crm-kpi-worker"]["dns_sd_configs"]
    assert worker_sd["names"] == ["worker"] and worker_sd["type"] == "A"
    assert worker_sd["port"] == 6066
    assert jobs["crm-kpi-gateway"]["static_configs"][0]["targets"] == ["gateway:8080"]
    # The rule files Prometheus loads are the ones compose mounts.
    mounts = dict(bind_mounts(SERVICES["prometheus"]))
    assert mounts["./prometheus/rules"] == "/etc/prometheus/rules"
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_env_example_documents_every_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    interface = set(re.findall(r"CRMKPI_[A-Z0-9_]+", (ROOT / "docs/interfaces.md").read_text()))
    interface = {name for name in interface if not name.endswith("_")}  # `CRMKPI_SEGMENTS_<DIM>`
    assert interface, "no variables found in docs/interfaces.md"
    assert interface <= documented, f"undocumented: {sorted(interface - documented)}"
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert used <= documented, f"compose reads undocumented {sorted(used - documented)}"
