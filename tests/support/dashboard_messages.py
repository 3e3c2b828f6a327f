"""Real report bundles and analysis messages for the dashboard store's tests and bench (docs/SPEC.md §13.1).

Real ECGs from samples/ go through the worker's own functions (stream/stages.py: analyse_only + first_report) for
the report bundle; the analysis message is a minimal §13.1 message built here from the engine's Analysis and the
record (the worker's own builder lands separately; the store must not depend on it). `replicate` copies one real
pair under another report id, patient, location and time, for seeding many alerts.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from integrations.fhir.datetimes import to_fhir_datetime
from integrations.fhir.report import bundle_bytes
from stream.config import WorkerSettings
from stream.stages import analyse_only, first_report

BROKER_TS_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


@dataclass
class Pair:
    """One report version as on the reports topic and its analysis message as on the analysis topic."""

    report_id: str
    version: int
    cls: str
    report: bytes
    headers: dict[str, bytes]
    analysis: bytes
    broker_ts_ms: int


def signal_of(record: Any) -> dict[str, Any]:
    """§13.1 `signal`: the analysed span as received, little-endian int16 µV per lead, at the record's own rate."""
    uv = np.clip(np.rint(np.asarray(record.signal, dtype=np.float64) * 1000.0), -32767, 32767).astype("<i2")
    return {"fs": float(record.fs), "units": "uV", "dtype": "int16",
            "leads": {lead: base64.b64encode(uv[i].tobytes()).decode() for i, lead in enumerate(record.leads)}}


def analysis_message(*, report_id: str, version: int, status: str, issued: str, record: Any, analysis: Any,
                     unit: str | None, bed: str | None, prior: dict[str, Any] | None = None,
                     head: dict[str, Any] | None = None, reasoning: dict[str, Any] | None = None) -> dict[str, Any]:
    patient = ({"mrn": record.patient_id, "system": record.patient_system or None} if record.patient_id else None)
    return {
        "schema": "twiwatch.analysis/1", "kind": "ecg", "research_only": True,
        "report_id": report_id, "version": version, "status": status, "issued": issued,
        "source_id": record.source_id,
        "acquired_at": to_fhir_datetime(record.acquired_at) if record.acquired_at else None,
        "patient": patient, "location": {"unit": unit, "bed": bed, "device": record.device_id},
        "signal": signal_of(record), "analysis": analysis.to_dict(), "prior": prior, "head": head,
        "reasoning": reasoning,
    }


def real_pair(recording: Any, *, unit: str = "CCU", bed: str = "3", broker_ts_ms: int = BROKER_TS_MS,
              state: dict[str, Any] | None = None, prior: dict[str, Any] | None = None) -> tuple[Pair, dict]:
    """Analyse one real recording (integrations.datasets.recordings.Recording) as the worker does; returns the pair
    and the patient's updated priors table entry (for a follow-up ECG of the same patient)."""
    record = recording.load()
    s = WorkerSettings()
    a = analyse_only(record, state, {"timestamp_ms": broker_ts_ms}, s)
    out = first_report(a, s)
    issued = datetime.fromtimestamp(broker_ts_ms / 1000, UTC).isoformat()
    msg = analysis_message(report_id=out.report_id, version=out.version, status=out.status, issued=issued,
                           record=record, analysis=a.analysis, unit=unit, bed=bed, prior=prior)
    pair = Pair(out.report_id, out.version, out.triage, out.value, dict(out.headers),
                json.dumps(msg, separators=(",", ":")).encode(), broker_ts_ms)
    return pair, out.priors


def _swap(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _swap(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_swap(v, old, new) for v in node]
    if isinstance(node, str) and old in node:
        return node.replace(old, new)
    return node


def replicate(pair: Pair, *, report_id: str, mrn: str, unit: str, bed: str, shift: timedelta,
              version: int | None = None, own_source: bool = True) -> Pair:
    """The same real analysis under another report id and patient, at another time (and optionally as another
    version of the report, status preliminary). own_source=False keeps the original source id, so a store keeps
    the (same) signal once for all copies."""
    bundle = _swap(json.loads(pair.report), pair.report_id, report_id)
    msg = _swap(json.loads(pair.analysis), pair.report_id, report_id)
    dr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    for entry in bundle["entry"]:
        res = entry["resource"]
        if isinstance(res.get("subject"), dict) and "identifier" in res["subject"]:
            res["subject"]["identifier"]["value"] = mrn
    when = datetime.fromisoformat(dr.get("effectiveDateTime") or dr["issued"]) + shift
    dr["effectiveDateTime"] = when.isoformat()
    headers = dict(pair.headers)
    headers["twiwatch.report-id"] = report_id.encode()
    if version is not None:
        dr["meta"]["versionId"] = str(version)
        dr["status"] = "preliminary"
        headers["twiwatch.version"] = str(version).encode()
        headers["twiwatch.status"] = b"preliminary"
        msg["version"], msg["status"] = version, "preliminary"
    msg["acquired_at"] = when.isoformat()
    if own_source:
        msg["source_id"] = f"{msg['source_id']}#{report_id}"
    if msg.get("patient"):
        msg["patient"] = {**msg["patient"], "mrn": mrn}
    msg["location"] = {**msg["location"], "unit": unit, "bed": bed}
    ts = pair.broker_ts_ms + int(shift.total_seconds() * 1000)
    return Pair(report_id, version or pair.version, pair.cls, bundle_bytes(bundle), headers,
                json.dumps(msg, separators=(",", ":")).encode(), ts)
