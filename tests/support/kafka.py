"""A single-node Apache Kafka (KRaft) broker for integration tests, run from Maven Central jars."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from crmkpi.embedded import (
    LOOPBACK,
    EmbeddedProcess,
    free_port,
    kafka_ready,
    launch,
    wait_until_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = Path(__file__).with_name("kafka-pom.xml")
DEFAULT_JAR_DIR = REPO_ROOT / ".cache" / "kafka-jars"
JARS_COMPLETE_MARKER = ".copied-for-pom"
MAVEN_TIMEOUT = 600.0
FORMAT_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
HEAP = "-Xmx512m"

LOG4J2_CONFIG = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
"""


def ensure_kafka_jars(dest: Path = DEFAULT_JAR_DIR) -> Path:
    """Copy the broker's jars (per kafka-pom.xml) into `dest` once; return `dest`."""
    marker = dest / JARS_COMPLETE_MARKER
    pom_text = KAFKA_POM.read_text()
    if marker.is_file() and marker.read_text() == pom_text:
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found: run scripts/install-test-deps (needs Maven and Java 17)")
    shutil.rmtree(dest, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={dest}"],
        capture_output=True, text=True, timeout=MAVEN_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"fetching Kafka jars failed:\n{result.stdout}\n{result.stderr}")
    marker.write_text(pom_text)
    return dest


def new_cluster_id() -> str:
    """A random KRaft cluster id like `kafka-storage random-uuid` prints (never starting "-")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """One Apache Kafka node (broker and controller) on 127.0.0.1 with its data in `work_dir`."""

    def __init__(self, work_dir: Path, jar_dir: Path | None = None) -> None:
        self.work_dir = work_dir
        self.jar_dir = jar_dir
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "broker.log"
        self.config_path = work_dir / "server.properties"
        self.log4j_config_path = work_dir / "log4j2.properties"
        self.port = free_port()
        self.controller_port = free_port()
        self.server: EmbeddedProcess | None = None
        self.start_seconds: list[float] = []

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string for clients."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the broker process is running."""
        return self.server is not None and self.server.alive

    def start(self) -> None:
        """Start (formatting storage the first time) and wait until clients can use the broker."""
        began = time.monotonic()
        classpath = f"{ensure_kafka_jars(self.jar_dir or DEFAULT_JAR_DIR)}/*"
        if not (self.data_dir / "meta.properties").is_file():
            self.write_config()
            self.format_storage(classpath)
        command = [*self.java_command(classpath), "kafka.Kafka", str(self.config_path)]
        process = launch("Apache Kafka", command, self.log_path)
        self.server = EmbeddedProcess("Apache Kafka", self.bootstrap, process, self.log_path)
        wait_until_ready(self.server, lambda: kafka_ready(self.bootstrap), READY_TIMEOUT)
        self.start_seconds.append(time.monotonic() - began)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut down cleanly with SIGTERM (SIGKILL after `timeout` seconds)."""
        if self.server is not None:
            self.server.stop(timeout)

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash would."""
        if self.server is not None:
            self.server.kill()

    def restart(self) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop()
        self.start()

    def java_command(self, classpath: str) -> list[str]:
        """The java command line up to the main class."""
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java not found: Apache Kafka 4.x needs Java 17 or later")
        return [
            java, HEAP, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config_path}", "-cp", classpath,
        ]  # fmt: skip

    def write_config(self) -> None:
        """Write server.properties and the log4j2 configuration into the work dir."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        controller = f"{LOOPBACK}:{self.controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": controller,
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.num.partitions": "4",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A broker restarted after SIGKILL waits this long for its old registration to expire.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
        }
        self.config_path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self.log4j_config_path.write_text(LOG4J2_CONFIG)

    def format_storage(self, classpath: str) -> None:
        """Format the data dir as a new single-voter KRaft cluster."""
        command = [
            *self.java_command(classpath), "kafka.tools.StorageTool", "format",
            "--cluster-id", new_cluster_id(), "--config", str(self.config_path), "--standalone",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=FORMAT_TIMEOUT, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"Kafka StorageTool format failed:\n{result.stdout}{result.stderr}")
