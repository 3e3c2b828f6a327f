"""The worker's two stages as plain functions, so they run the same inside faust and in a test.

decode_message: raw HL7/FHIR bytes -> EcgRecord (integrations codecs)
analyse_record: EcgRecord + the patient's priors -> (report bundle bytes, headers, updated priors) (engine + FHIR builder)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from engine import __version__ as ENGINE_VERSION
from engine.analyze import analyze
from engine.record import EcgRecord
from engine.result import PriorSummary
from integrations.fhir.observation import decode_observation
from integrations.fhir.report import build_report_bundle, bundle_bytes
from integrations.hl7.decode import decode_oru
from integrations.identity import report_id
from stream import metrics
from stream.config import Settings

SOFTWARE_VERSION = ENGINE_VERSION


def decode_message(raw: bytes, fmt: str, s: Settings) -> EcgRecord:
    started = time.perf_counter()
    if fmt == "hl7":
        codes = tuple(c.strip() for c in s.hl7_samp_rate_codes.split(",") if c.strip())
        record = decode_oru(raw, samp_rate_codes=codes, counts_scale_mv=s.hl7_counts_scale_mv)
    else:
        record = decode_observation(raw)
    metrics.DECODE_SECONDS.labels(fmt).observe(time.perf_counter() - started)
    return record


@dataclass
class ReportOut:
    report_id: str
    version: int
    status: str
    value: bytes
    headers: list[tuple[str, bytes]]
    priors: dict[str, Any]
    triage: str


def _priors_for(record: EcgRecord, state: dict[str, Any] | None) -> list[PriorSummary]:
    """Earlier ECGs of this patient, oldest first, never the record itself (a redelivery must not see itself)."""
    if not state:
        return []
    out = [PriorSummary.from_dict(d) for d in state.get("ecgs", []) if d["source_id"] != record.source_id]
    if record.acquired_at:
        mine = record.acquired_at.isoformat()
        out = [p for p in out if not p.acquired_at or p.acquired_at <= mine]
    return sorted(out, key=lambda p: p.acquired_at or "")


def already_reported(state: dict[str, Any] | None, source_id: str) -> bool:
    """True when this ECG's report was already written (the table records an ECG only after that)."""
    return any(d["source_id"] == source_id for d in (state or {}).get("ecgs", []))


def _updated_state(state: dict[str, Any] | None, summary: PriorSummary, keep: int) -> dict[str, Any]:
    ecgs = [d for d in (state or {}).get("ecgs", []) if d["source_id"] != summary.source_id]
    ecgs.append(summary.to_dict())
    ecgs.sort(key=lambda d: d.get("acquired_at") or "")
    return {"schema_version": 1, "ecgs": ecgs[-keep:]}


def analyse_record(
    record: EcgRecord, state: dict[str, Any] | None, source: dict[str, Any], s: Settings,
) -> ReportOut:
    started = time.perf_counter()
    priors = _priors_for(record, state)
    analysis = analyze(record, priors)
    metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
    rid = report_id(record.source_id)
    version, status = 1, "preliminary"
    # issued is the source message's broker time, not "now": a redelivered message then yields the same bytes.
    issued = datetime.fromtimestamp(source["timestamp_ms"] / 1000, tz=timezone.utc)
    bundle = build_report_bundle(
        analysis, record, report_id=rid, version=version, status=status, fhir_version=s.fhir_version,
        identifier_system=s.fhir_identifier_system, software_version=SOFTWARE_VERSION, model_versions={},
        reasoning=None, issued=issued, prior_acquired_at=priors[-1].acquired_at if priors else None,
    )
    value = bundle_bytes(bundle)
    headers = [
        ("twiwatch.report-id", rid.encode()),
        ("twiwatch.version", str(version).encode()),
        ("twiwatch.status", status.encode()),
        ("twiwatch.fhir-version", s.fhir_version.encode()),
        ("twiwatch.source-timestamp", str(source["timestamp_ms"]).encode()),
        ("twiwatch.research-only", b"true"),
    ]
    return ReportOut(rid, version, status, value, headers, _updated_state(state, analysis.summary, s.priors_kept),
                     analysis.triage.cls)
