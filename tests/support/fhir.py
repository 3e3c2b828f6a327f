"""Helpers for the tests against the real HAPI FHIR server (one per test session, tests/conftest.py): settings for a
sink on isolated topics, running the real `twiwatch fhir-sink` process, reading back what reached the server."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from integrations.fhir.client import FhirClient
from integrations.fhir.delivery import version_of
from stream.config import ToolSettings
from stream.deadletter import read_headers
from stream.devtools.e2e import free_port, start_sink, stop_worker, wait_sink_ready
from stream.devtools.fhir_local import LocalFhir
from stream.producer import make_producer
from stream.topics import delivery_topic_specs, ensure_topics, topic_specs

STATIC_TOKEN = "twiwatch-test-static-token"  # noqa: S105 - the test server's development token
REPORT_SYSTEM = "urn:twiwatch:report"


@dataclass
class TestFhir:
    """The session's FHIR server: HTTPS (tokens enforced: STATIC_TOKEN or Hydra introspection) + plain HTTP (open)."""

    local: LocalFhir
    ca_cert: Path
    other_ca_cert: Path
    hydra_public_port: int
    hydra_admin_port: int

    @property
    def plain_url(self) -> str:
        return self.local.plain_url

    @property
    def tls_url(self) -> str:
        return self.local.base_url

    def client(self) -> FhirClient:
        return FhirClient(self.plain_url, timeout_s=30)


def sink_settings(isolated: ToolSettings, url: str, **updates) -> ToolSettings:
    """Settings for a sink of this test: its own group, dead-letter topic and health port."""
    s = isolated.model_copy(update={"fhir_sink_url": url, **updates})
    ensure_topics(s, topic_specs(s) + delivery_topic_specs(s))
    return s


@contextlib.contextmanager
def running_sink(s: ToolSettings, name: str = "sink", ready_timeout_s: float = 120) -> Iterator[list]:
    """The real `twiwatch fhir-sink` process; yields [proc] (replace proc[0] to restart it); stopped at exit."""
    log = s.cache_dir / "test" / f"{s.fhir_sink_group_id}-{name}.log"
    procs = [start_sink(s, log)]
    try:
        wait_sink_ready(s, procs[0], ready_timeout_s)
        yield procs
    finally:
        stop_worker(procs[0])


def restart_sink(s: ToolSettings, procs: list, kill: bool = True, name: str = "sink") -> None:
    if kill:
        procs[0].send_signal(signal.SIGKILL)
    else:
        procs[0].send_signal(signal.SIGTERM)
    procs[0].wait(30)
    s = s.model_copy(update={"fhir_sink_web_port": free_port()})
    procs[0] = start_sink(s, s.cache_dir / "test" / f"{s.fhir_sink_group_id}-{name}.log")
    wait_sink_ready(s, procs[0])


def sink_health(s: ToolSettings) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.fhir_sink_web_port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def sink_metrics(s: ToolSettings) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.fhir_sink_web_port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def produce(s: ToolSettings, items: list[tuple[str, bytes]], rate: float | None = None) -> None:
    """(report id, bundle bytes) to the reports topic, keyed by report id as the worker does."""
    producer = make_producer(s, client_id="test-reports")
    try:
        for rid, value in items:
            producer.send(s.topic_reports, key=rid.encode(), value=value)
            if rate:
                producer.flush()
                time.sleep(1 / rate)
        producer.flush()
    finally:
        producer.close()


def reports_on_server(client: FhirClient, report_ids: list[str]) -> dict[str, list[dict]]:
    """report id → the DiagnosticReports on the server carrying it (more than one would be a duplicate)."""
    out: dict[str, list[dict]] = {rid: [] for rid in report_ids}
    for i in range(0, len(report_ids), 40):
        part = report_ids[i:i + 40]
        tokens = ",".join(f"{REPORT_SYSTEM}|{rid}" for rid in part)
        for dr in client.search_all("DiagnosticReport", {"identifier": tokens, "_count": "200"}):
            out[dr["identifier"][0]["value"]].append(dr)
    return out


def wait_until(check: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll_s)
    return check()


def wait_versions(client: FhirClient, want: dict[str, int], timeout_s: float) -> dict[str, list[dict]]:
    """Until every report carries at least the wanted version on the server; returns the server's copies."""
    got: dict[str, list[dict]] = {}

    def done() -> bool:
        nonlocal got
        got = reports_on_server(client, list(want))
        return all(copies and max(version_of(c) for c in copies) >= v for rid, v in want.items()
                   for copies in [got[rid]])

    wait_until(done, timeout_s, 1.0)
    return got


def deadletters(s: ToolSettings, timeout_s: float = 5.0) -> list[dict]:
    """The delivery dead letters: {"meta": reason headers, "value", "key"}."""
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout_s * 1000))
    try:
        parts = consumer.partitions_for_topic(s.topic_delivery_deadletter) or set()
        tps = [TopicPartition(s.topic_delivery_deadletter, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    out.append({"meta": read_headers(r.headers), "value": r.value, "key": r.key})
        return out
    finally:
        consumer.close()


def history(client: FhirClient, rtype: str, rid: str) -> list[dict]:
    """Every version of a resource, oldest first."""
    bundle = client.request("GET", f"{rtype}/{rid}/_history", params={"_count": "50"}).json()
    entries = [e["resource"] for e in bundle.get("entry") or [] if "resource" in e]
    return sorted(entries, key=lambda r: int(r["meta"]["versionId"]))


def wait_process(proc: subprocess.Popen, timeout_s: float) -> int | None:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None
