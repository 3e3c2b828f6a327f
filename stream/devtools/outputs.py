"""Read back what the pipeline wrote (reports and dead letters) and judge it: the e2e summary and the tests use this.

A duplicate (docs/SPEC.md §10) is a second copy of the same (report identifier, meta.versionId) on the reports topic.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from integrations.fhir.report import is_research_flagged, report_resource
from integrations.fhir.validation import validate_bundle
from stream.config import ToolSettings
from stream.deadletter import read_headers
from stream.topics import HEADROOM


@dataclass
class Collected:
    reports: list[dict] = field(default_factory=list)  # {"id","version","value","timestamp_ms","headers"}
    deadletters: list[dict] = field(default_factory=list)  # {"meta", "value", "key"}


def _consumer(s: ToolSettings) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=s.bootstrap, enable_auto_commit=False, group_id=None,
        fetch_max_bytes=s.max_message_bytes + HEADROOM, max_partition_fetch_bytes=s.max_message_bytes + HEADROOM,
        consumer_timeout_ms=500, isolation_level="read_committed",
    )


def _read_all(consumer: KafkaConsumer, topic: str) -> list:
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    if not tps:
        return []
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        batch = consumer.poll(timeout_ms=500)
        for records in batch.values():
            out.extend(records)
    return out


def read_chunks(s: ToolSettings) -> list[dict]:
    """Everything on the chunks topic so far: {"key", "record" (EcgRecord), "meta", "partition", "offset"}."""
    from stream import envelope

    consumer = _consumer(s)
    try:
        out = []
        for r in _read_all(consumer, s.topic_chunks):
            if not r.value.startswith(envelope.MAGIC):  # the worker's ticks and ECG-R1 readings of episodes
                continue
            record, meta = envelope.unpack(r.value)
            out.append({"key": r.key, "record": record, "meta": meta, "partition": r.partition, "offset": r.offset})
        return out
    finally:
        consumer.close()


def report_identity(bundle: dict) -> tuple[str, str]:
    report = report_resource(bundle)
    ident = report["identifier"][0]["value"]
    return ident, report["meta"]["versionId"]


def collect(s: ToolSettings) -> Collected:
    consumer = _consumer(s)
    try:
        out = Collected()
        for r in _read_all(consumer, s.topic_reports):
            bundle = json.loads(r.value)
            ident, version = report_identity(bundle)
            out.reports.append({"id": ident, "version": version, "value": r.value, "bundle": bundle,
                                "timestamp_ms": r.timestamp, "headers": dict(r.headers or [])})
        for r in _read_all(consumer, s.topic_deadletter):
            out.deadletters.append({"meta": read_headers(r.headers), "value": r.value, "key": r.key})
        return out
    finally:
        consumer.close()


def wait_for(s: ToolSettings, reports: int, deadletters: int, timeout_s: float) -> Collected:
    deadline = time.monotonic() + timeout_s
    while True:
        got = collect(s)
        distinct = len({r["id"] for r in got.reports})
        if (distinct >= reports and len(got.deadletters) >= deadletters) or time.monotonic() > deadline:
            return got
        time.sleep(1.0)


def summarise(got: Collected, s: ToolSettings, sent_valid: int, sent_invalid: int) -> tuple[dict, dict]:
    """The e2e summary (exactly the keys issue 2 names) and, apart, the details a reader needs to trust it."""
    counts = Counter((r["id"], r["version"]) for r in got.reports)
    byte_copies = Counter((r["id"], r["version"], r["value"]) for r in got.reports)
    latest: dict[str, dict] = {}
    for r in got.reports:
        latest[r["id"]] = r
    fhir_valid = research = 0
    for r in latest.values():
        try:
            validate_bundle(r["bundle"], s.fhir_version)
            fhir_valid += 1
        except Exception:
            pass
        research += bool(is_research_flagged(r["bundle"]))
    lat = []
    for r in latest.values():
        src = r["headers"].get("twiwatch.source-timestamp")
        if src is not None:
            lat.append(r["timestamp_ms"] - int(src))
    summary = {
        "sent_valid": sent_valid,
        "sent_invalid": sent_invalid,
        "reports": len(latest),
        "research_flagged": research,
        "fhir_valid": fhir_valid,
        "deadletter": len(got.deadletters),
        "duplicates": sum(n - 1 for n in counts.values()),
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)) if lat else None,
            "p99": float(np.percentile(lat, 99)) if lat else None,
        },
    }
    details = {
        "byte_identical_copies": sum(n - 1 for n in byte_copies.values()),
        "deadletter_codes": dict(Counter(d["meta"].get("error.code", "?") for d in got.deadletters)),
    }
    return summary, details
