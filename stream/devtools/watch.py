"""`twiwatch reports watch`: a terminal view of reports arriving (the alert dashboard comes later)."""
from __future__ import annotations

import json
import time

from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from integrations.fhir.codes import DISCLAIMER
from integrations.fhir.report import report_resource
from stream.config import ToolSettings
from stream.topics import HEADROOM


def _row(bundle: dict) -> tuple[str, str, str, str]:
    report = report_resource(bundle)
    conclusion = report.get("conclusion", "")
    # The disclaimer opens every conclusion (the header line says it once); show what follows it.
    finding = conclusion[len(DISCLAIMER):] if conclusion.startswith(DISCLAIMER) else conclusion
    return report["identifier"][0]["value"][:12], report["meta"]["versionId"], report["status"], finding.strip()


def _consumer_from(s: ToolSettings, since_ms: int | None) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=s.bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_bytes=s.max_message_bytes + HEADROOM, max_partition_fetch_bytes=s.max_message_bytes + HEADROOM,
    )
    tps = [TopicPartition(s.topic_reports, p) for p in sorted(consumer.partitions_for_topic(s.topic_reports) or [])]
    consumer.assign(tps)
    if since_ms is None:
        consumer.seek_to_end(*tps)
        return consumer
    found = consumer.offsets_for_times({tp: since_ms for tp in tps})
    for tp in tps:
        if found.get(tp) is None:
            consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found[tp].offset)
    return consumer


def watch_reports(s: ToolSettings, *, until_idle: float | None, since_ms: int | None, console: Console) -> int:
    """Print reports from `since_ms` (broker time; default: from now) until idle for `until_idle` seconds."""
    consumer = _consumer_from(s, since_ms)
    seen, last = 0, time.monotonic()
    console.print("[bold]research-only reports[/bold] (not for clinical use); Ctrl-C to stop")
    try:
        while until_idle is None or time.monotonic() - last < until_idle:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    ident, version, status, finding = _row(json.loads(r.value))
                    console.print(f"[cyan]{ident}[/cyan] v{version} {status:<11} {finding}")
                    seen += 1
                    last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    console.print(f"{seen} report version(s) shown")
    return seen
