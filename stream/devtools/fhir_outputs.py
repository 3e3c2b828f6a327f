"""Read back what the FHIR sink wrote and judge it against the reports topic: the e2e summary's delivery keys, the
tests and the outage bench use this.

A duplicate on a FHIR server (docs/SPEC.md §10.3) is an identifier carried by more than one resource of the same
type: DiagnosticReport, Observation, Device; a Provenance has no identifier, so two Provenances for the same
(report, our version) count as a duplicate.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

import numpy as np

from integrations.fhir.client import FhirClient
from integrations.fhir.delivery import parse_report, token, version_of

CHUNK = 40  # identifiers per search (comma = OR); keeps URLs short


def _chunks(items: list[str], n: int = CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _by_identifier(client: FhirClient, rtype: str, tokens: Iterable[str]) -> list[dict]:
    out: list[dict] = []
    for part in _chunks(sorted(set(tokens))):
        out.extend(client.search_all(rtype, {"identifier": ",".join(part), "_count": "200"}))
    return out


def _idents(resource: dict) -> list[str]:
    return [token(i) for i in resource.get("identifier") or [] if i.get("value")]


def _ms(instant: str | None) -> float | None:
    if not instant:
        return None
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp() * 1000


def latest_versions(reports: list[dict]) -> dict[str, dict]:
    """Report identifier → its latest version on the topic ({"version": int, "timestamp_ms", "bundle"})."""
    latest: dict[str, dict] = {}
    for r in reports:
        v = int(r["version"])
        if r["id"] not in latest or v > latest[r["id"]]["version"]:
            latest[r["id"]] = {"version": v, "timestamp_ms": r["timestamp_ms"], "bundle": r["bundle"]}
    return latest


def delivered_latest(client: FhirClient, reports: list[dict]) -> int:
    """How many reports' latest versions are on the server: one cheap search per 40 reports (for polling)."""
    latest = latest_versions(reports)
    tokens = {rid: parse_report(r["bundle"]).token for rid, r in latest.items()}
    have: dict[str, int] = {}
    for d in _by_identifier(client, "DiagnosticReport", tokens.values()):
        for t in _idents(d):
            have[t] = max(have.get(t, 0), version_of(d))
    return sum(have.get(tokens[rid], 0) >= want["version"] for rid, want in latest.items())


def delivery_summary(client: FhirClient, reports: list[dict]) -> tuple[dict, dict]:
    """The delivery keys of the e2e summary, and details. `reports` as stream.devtools.outputs.Collected.reports."""
    latest = latest_versions(reports)
    report_tokens, obs_tokens, device_tokens = [], set(), set()
    system_of: dict[str, str] = {}
    for r in reports:
        rv = parse_report(r["bundle"])
        report_tokens.append(rv.token)
        system_of[r["id"]] = rv.token
        obs_tokens.update(token(o["identifier"][0]) for _, o in rv.observations)
        device_tokens.update(token(d["identifier"][0]) for _, d in rv.devices)
    drs = _by_identifier(client, "DiagnosticReport", report_tokens)
    observations = _by_identifier(client, "Observation", obs_tokens)
    devices = _by_identifier(client, "Device", device_tokens)
    provenances: list[dict] = []
    for part in _chunks([f"DiagnosticReport/{d['id']}" for d in drs]):
        provenances.extend(client.search_all("Provenance", {"target": ",".join(part), "_count": "200"}))

    dup: dict[str, int] = {}
    for rtype, resources, wanted in (("DiagnosticReport", drs, set(report_tokens)),
                                     ("Observation", observations, obs_tokens),
                                     ("Device", devices, device_tokens)):
        counts = Counter(t for res in resources for t in _idents(res) if t in wanted)
        dup[rtype] = sum(1 for n in counts.values() if n > 1)
    dr_ids = {f"DiagnosticReport/{d['id']}" for d in drs}
    prov_keys = Counter()
    for p in provenances:
        target = next((t["reference"].split("/_history")[0] for t in p.get("target") or []
                       if t.get("reference", "").split("/_history")[0] in dr_ids), None)
        prov_keys[(target, version_of(p))] += 1
    dup["Provenance"] = sum(1 for n in prov_keys.values() if n > 1)

    server_by_token: dict[str, list[dict]] = defaultdict(list)
    for d in drs:
        for t in _idents(d):
            server_by_token[t].append(d)
    delivered = latest_ok = 0
    latencies = []
    for rid, want in latest.items():
        copies = server_by_token.get(system_of[rid], [])
        if not copies:
            continue
        delivered += 1
        best = max(copies, key=version_of)
        if version_of(best) == want["version"]:
            latest_ok += 1
            updated = _ms((best.get("meta") or {}).get("lastUpdated"))
            if updated is not None and want["timestamp_ms"]:
                latencies.append(updated - want["timestamp_ms"])
    summary = {
        "delivered": delivered,
        "delivered_duplicates": sum(dup.values()),
        "delivered_latest": latest_ok,
        "delivery_latency_ms": {
            "p50": float(np.percentile(latencies, 50)) if latencies else None,
            "p99": float(np.percentile(latencies, 99)) if latencies else None,
        },
    }
    details = {"delivered_duplicates_by_type": dup, "server_resources": {
        "DiagnosticReport": len(drs), "Observation": len(observations), "Provenance": len(provenances),
        "Device": len(devices)}, "entered_in_error": sum(o.get("status") == "entered-in-error" for o in observations)}
    return summary, details


def wait_delivered(client: FhirClient, get_reports: Callable[[], list[dict]], timeout_s: float,
                   poll_s: float = 1.0) -> tuple[dict, dict]:
    """Poll until every report's latest version is on the server (or the timeout): the final summary."""
    deadline = time.monotonic() + timeout_s
    while True:
        reports = get_reports()
        if delivered_latest(client, reports) >= len(latest_versions(reports)) or time.monotonic() > deadline:
            return delivery_summary(client, reports)
        time.sleep(poll_s)
