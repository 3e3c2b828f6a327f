"""`twiwatch reports watch`: a terminal view of reports arriving (the alert dashboard comes later)."""
from __future__ import annotations

import json
import time

from kafka import KafkaConsumer
from rich.console import Console

from stream.config import Settings
from stream.topics import HEADROOM


def _row(bundle: dict) -> tuple[str, str, str]:
    res = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    report = res["DiagnosticReport"]
    conclusion = report.get("conclusion", "")
    # The disclaimer opens every conclusion; show what follows it.
    finding = conclusion.split("\n", 1)[-1] if "\n" in conclusion else conclusion
    return report["identifier"][0]["value"][:12], report["status"], finding.strip()


def watch_reports(s: Settings, *, until_idle: float | None, from_beginning: bool, console: Console) -> int:
    consumer = KafkaConsumer(
        s.topic_reports, bootstrap_servers=s.bootstrap, group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest", enable_auto_commit=False,
        fetch_max_bytes=s.max_message_bytes + HEADROOM, max_partition_fetch_bytes=s.max_message_bytes + HEADROOM,
    )
    seen, last = 0, time.monotonic()
    console.print("[bold]research-only reports[/bold] (not for clinical use); Ctrl-C to stop")
    try:
        while until_idle is None or time.monotonic() - last < until_idle:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    ident, status, finding = _row(json.loads(r.value))
                    console.print(f"[cyan]{ident}[/cyan] {status:<11} {finding}")
                    seen += 1
                    last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    console.print(f"{seen} report(s) shown")
    return seen
