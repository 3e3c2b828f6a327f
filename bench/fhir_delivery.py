"""FHIR delivery under load and through a server outage: the sink's goals, measured on the real broker and a real HAPI.

    .venv/bin/python bench/fhir_delivery.py [--json PATH] [--fhir-url URL] [--rate 10] [--warmup-s 30]
                                            [--measure-s 60] [--outage-s 60] [--settle-s 20]

Runs the real `twiwatch fhir-sink` process on run-isolated topics, behind a fault proxy (stream/devtools/fault_proxy.py)
in front of the FHIR server: a fresh in-memory HAPI FHIR 8.8 (R4B) unless --fhir-url names one. Report versions are
written to the reports topic at --rate per second (every third report also gets a version 2 a moment later, as when
ECG-R1 answers), as the worker would write them; the broker stamps them (LogAppendTime).
1. Warm-up (--warmup-s): the JIT-only-C1 HAPI and the sink warm up; not measured.
2. Latency (--measure-s): report's broker timestamp → the server's meta.lastUpdated of that version, p50/p99.
   Goal: p99 <= 1 s at 10 reports/s after warm-up.
3. Outage (--outage-s, 0 to skip): a steady stream at --rate; --settle-s into it the proxy drops every connection for
   --outage-s (the server is unreachable), the stream goes on, then --settle-s more. Goal: nothing lost, no
   duplicate, all delivered within 30 s of recovery.
The machine is shared (2 cores); wall-clock figures move with its load. Results go to --json (docs/results/).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from integrations.fhir.client import FhirClient  # noqa: E402
from stream.config import ToolSettings  # noqa: E402
from stream.devtools import fhir_local  # noqa: E402
from stream.devtools.e2e import free_port, isolated_settings, start_sink, stop_worker, wait_sink_ready  # noqa: E402
from stream.devtools.fault_proxy import FaultProxy  # noqa: E402
from stream.devtools.fhir_outputs import delivered_latest, delivery_summary, latest_versions  # noqa: E402
from stream.devtools.outputs import collect  # noqa: E402
from stream.producer import make_producer  # noqa: E402
from stream.topics import delivery_topic_specs, ensure_topics, topic_specs  # noqa: E402
from tests.support.reports import report_bytes  # noqa: E402

GOAL_P99_MS = 1000.0
GOAL_RECOVERY_S = 30.0


def stream_reports(s: ToolSettings, tag: str, rate: float, seconds: float) -> list[str]:
    """Produce at `rate` reports/s for `seconds`; every third report also gets v2 ~0.5 s later. Returns report ids."""
    n = max(1, int(rate * seconds))
    ids = [f"{tag}r{i:05d}" for i in range(n)]
    v1 = [report_bytes(rid, 1, mrn=f"BENCH-{rid}") for rid in ids]  # built before the clock starts
    v2 = {i: report_bytes(rid, 2, mrn=f"BENCH-{rid}") for i, rid in enumerate(ids) if i % 3 == 0}
    producer = make_producer(s, client_id=f"bench-{tag}", linger_ms=0)
    start = time.monotonic()
    pending: list[tuple[float, int]] = []
    try:
        for i, rid in enumerate(ids):
            due = start + i / rate
            while pending and pending[0][0] <= time.monotonic():
                _, j = pending.pop(0)
                producer.send(s.topic_reports, key=ids[j].encode(), value=v2[j])
            time.sleep(max(0.0, due - time.monotonic()))
            producer.send(s.topic_reports, key=rid.encode(), value=v1[i])
            if i in v2:
                pending.append((time.monotonic() + 0.5, i))
        for _, j in pending:
            time.sleep(0.1)
            producer.send(s.topic_reports, key=ids[j].encode(), value=v2[j])
        producer.flush()
    finally:
        producer.close()
    return ids


def reports_of(s: ToolSettings, ids: set[str]) -> list[dict]:
    return [r for r in collect(s).reports if r["id"] in ids]


def wait_all(client: FhirClient, s: ToolSettings, ids: set[str], timeout_s: float) -> tuple[dict, dict, float]:
    """Poll cheaply (report searches only) until every latest version is on the server; then the full summary."""
    started = time.monotonic()
    while True:
        reports = reports_of(s, ids)
        if delivered_latest(client, reports) >= len(latest_versions(reports)) or \
                time.monotonic() - started > timeout_s:
            done = time.monotonic()
            summary, details = delivery_summary(client, reports)
            return summary, details, done
        time.sleep(2.0)  # reading the topic back costs CPU the server needs: not too often


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--fhir-url")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=30.0)
    ap.add_argument("--measure-s", type=float, default=60.0)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--settle-s", type=float, default=20.0)
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    base = ToolSettings()
    s = isolated_settings(base, "bench" + run)
    local = None
    url = args.fhir_url
    if not url:
        local = fhir_local.from_settings(base, port=free_port(), database="memory", name=f"bench-{run}",
                                         fast_start=False)
        print(fhir_local.up(local), flush=True)
        url = local.base_url
    parts = urlsplit(url)
    proxy = FaultProxy(f"{parts.scheme}://{parts.hostname}:{parts.port}").start()
    s = s.model_copy(update={"fhir_sink_url": proxy.url + parts.path})
    ensure_topics(s, topic_specs(s) + delivery_topic_specs(s))
    sink = start_sink(s, s.cache_dir / "bench" / f"fhir-sink-{run}.log")
    result: dict = {"machine": platform.node(), "cpus": os.cpu_count(), "rate": args.rate,
                    "server": url if args.fhir_url else f"local HAPI {base.fhir_server_hapi_version} (memory)",
                    "sink_concurrency": s.fhir_sink_concurrency,
                    "sink_reports_per_transaction": s.fhir_sink_reports_per_transaction, "load_1min_at_start":
                    round(os.getloadavg()[0], 2)}
    client = FhirClient(url, timeout_s=60)
    try:
        wait_sink_ready(s, sink)
        print(f"warm-up: {args.warmup_s:.0f} s at {args.rate}/s", flush=True)
        warm = set(stream_reports(s, "w" + run, args.rate, args.warmup_s))
        wait_all(client, s, warm, 120)

        print(f"latency: {args.measure_s:.0f} s at {args.rate}/s", flush=True)
        measured = set(stream_reports(s, "m" + run, args.rate, args.measure_s))
        summary, details, _ = wait_all(client, s, measured, 120)
        lat = summary["delivery_latency_ms"]
        result["latency"] = {"reports": len(measured), **summary, "details": details,
                             "goal_p99_ms": GOAL_P99_MS, "met": bool(lat["p99"] is not None
                                                                     and lat["p99"] <= GOAL_P99_MS)}
        print(json.dumps(result["latency"]), flush=True)

        if args.outage_s > 0:
            print(f"outage: {args.outage_s:.0f} s without the server in a {args.rate}/s stream", flush=True)
            total = args.settle_s * 2 + args.outage_s
            out_ids: list[str] = []
            producer = threading.Thread(target=lambda: out_ids.extend(
                stream_reports(s, "o" + run, args.rate, total)))
            producer.start()
            time.sleep(args.settle_s)
            proxy.drop_for(args.outage_s)
            outage_start = time.monotonic()
            time.sleep(args.outage_s)
            recovered = time.monotonic()
            producer.join()
            summary, details, done = wait_all(client, s, set(out_ids), 300)
            reports = reports_of(s, set(out_ids))
            after = done - recovered
            result["outage"] = {
                "outage_s": round(recovered - outage_start, 1), "reports": len(latest_versions(reports)),
                "versions_on_topic": len(reports), **summary, "details": details,
                "delivered_s_after_recovery": round(after, 1),
                "connections_dropped": sum(x.answered == "dropped" for x in proxy.seen),
                "met": bool(summary["delivered"] == summary["delivered_latest"] == len(latest_versions(reports))
                            and summary["delivered_duplicates"] == 0 and after <= GOAL_RECOVERY_S),
            }
            print(json.dumps(result["outage"]), flush=True)
    finally:
        stop_worker(sink)
        proxy.stop()
        client.close()
        if local is not None:
            fhir_local.down(local)
            shutil.rmtree(local.home, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    lat_ok = result.get("latency", {}).get("met")
    print(f"p99 goal {'met' if lat_ok else 'NOT met'}; outage goal "
          f"{'met' if result.get('outage', {}).get('met') else 'NOT met or skipped'}")


if __name__ == "__main__":
    main()
