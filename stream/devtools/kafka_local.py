"""A real single-node Apache Kafka (KRaft, broker+controller) for development, tests and the demo.

The broker comes from Maven Central (`stream/devtools/kafka_pom.xml` resolved with `mvn dependency:copy-dependencies`)
because there is no Docker engine or download site on our machines (docs/SPEC.md §9). We run the same classes the
distribution's scripts run: `kafka.tools.StorageTool format` then `kafka.Kafka server.properties`.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stream.devtools import local_process
from stream.devtools.local_process import is_listening

POM = Path(__file__).with_name("kafka_pom.xml")  # shipped in the package: the broker is resolved from it


@dataclass(frozen=True)
class LocalKafka:
    cache_dir: Path
    version: str
    port: int
    max_message_bytes: int
    heap_opts: str = "-Xms256m -Xmx1g"  # Settings.kafka_heap_opts

    @property
    def lib_dir(self) -> Path:
        return self.cache_dir / "kafka" / f"lib-{self.version}"

    @property
    def home(self) -> Path:
        return self.cache_dir / "kafka" / f"node-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"


def resolve(k: LocalKafka) -> Path:
    """Resolve the broker jars once into the cache (Maven's own local repository makes a rerun cheap)."""
    marker = k.lib_dir / ".complete"
    if marker.exists():
        return k.lib_dir
    if not shutil.which("mvn"):
        raise RuntimeError("Maven (mvn) is needed to resolve Apache Kafka from Maven Central")
    tmp = k.lib_dir.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={tmp}", f"-Dkafka.version={k.version}",
    ]
    subprocess.run(cmd, check=True)
    shutil.rmtree(k.lib_dir, ignore_errors=True)
    tmp.rename(k.lib_dir)
    marker.touch()
    return k.lib_dir


def _properties(k: LocalKafka) -> str:
    data = k.home / "data"
    controller_port = k.port + 1000
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{k.port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{k.port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        # docs/SPEC.md §10: one size limit on every hop, the broker included.
        f"message.max.bytes={k.max_message_bytes + 65536}",
        f"replica.fetch.max.bytes={k.max_message_bytes + 65536}",
        f"socket.request.max.bytes={max(k.max_message_bytes * 2, 104857600)}",
        "log.retention.hours=168",
        "",
    ])


def _java_cmd(k: LocalKafka, *args: str) -> list[str]:
    heap = k.heap_opts.split()
    log4j = k.home / "log4j2.properties"
    return ["java", *heap, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{k.lib_dir}/*", *args]


def _write_config(k: LocalKafka) -> Path:
    k.home.mkdir(parents=True, exist_ok=True)
    props = k.home / "server.properties"
    props.write_text(_properties(k))
    (k.home / "log4j2.properties").write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\n"
        "appender.out.type=Console\nappender.out.name=out\n"
        "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%d] %p %m (%c)%n\n"
        "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
    )
    return props


def running_pid(k: LocalKafka) -> int | None:
    return local_process.running_pid(k.pid_file)


def _broker_ready(bootstrap: str, timeout_s: float) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    port = int(bootstrap.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        if not is_listening(port):  # a booting broker: kafka-python would log every refused connection as an ERROR
            time.sleep(0.5)
            continue
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.describe_cluster()
                return True
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError):
            time.sleep(0.5)
    return False


def up(k: LocalKafka, timeout_s: float = 90.0) -> str:
    """Start the broker (resolving and formatting on first use); idempotent. Returns a status line."""
    if running_pid(k) and _broker_ready(f"127.0.0.1:{k.port}", 10):
        return f"Kafka {k.version} already running on 127.0.0.1:{k.port} (pid {running_pid(k)})"
    if is_listening(k.port):
        raise RuntimeError(f"port {k.port} is taken by another process; set TWIWATCH_KAFKA_PORT")
    resolve(k)
    props = _write_config(k)
    meta = k.home / "data" / "meta.properties"
    if not meta.exists():
        cluster_id = uuid.uuid4().bytes.hex()[:22]
        out = subprocess.run(_java_cmd(k, "kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            cluster_id = out.stdout.strip().splitlines()[-1]
        subprocess.run(
            _java_cmd(k, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
            check=True, capture_output=True, text=True,
        )
    log = open(k.log_file, "ab")
    proc = subprocess.Popen(
        _java_cmd(k, "kafka.Kafka", str(props)), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    k.pid_file.write_text(str(proc.pid))
    if not _broker_ready(f"127.0.0.1:{k.port}", timeout_s):
        tail = k.log_file.read_text(errors="replace")[-3000:]
        down(k)
        raise RuntimeError(f"Kafka did not become ready within {timeout_s:.0f} s; broker log tail:\n{tail}")
    return f"Kafka {k.version} up on 127.0.0.1:{k.port} (pid {proc.pid}, data {k.home / 'data'})"


def down(k: LocalKafka, timeout_s: float = 30.0) -> str:
    pid = running_pid(k)
    if pid is None:
        return "Kafka is not running"
    local_process.stop(pid, k.pid_file, timeout_s)
    return f"Kafka stopped (pid {pid})"


def status(k: LocalKafka) -> tuple[bool, str]:
    pid = running_pid(k)
    if pid and _broker_ready(f"127.0.0.1:{k.port}", 3):
        return True, f"Kafka {k.version} running on 127.0.0.1:{k.port} (pid {pid})"
    if pid:
        return False, f"Kafka process {pid} exists but does not answer on 127.0.0.1:{k.port}"
    return False, "Kafka is not running"


def wipe(k: LocalKafka) -> None:
    """Delete the broker's data (topics, offsets). Only with the broker down."""
    if running_pid(k):
        raise RuntimeError("stop the broker first")
    shutil.rmtree(k.home / "data", ignore_errors=True)
