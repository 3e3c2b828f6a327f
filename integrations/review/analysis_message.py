"""The analysis message (docs/SPEC.md §13.1, schema `twiwatch.analysis/1`): what a reviewer needs to see beside one
report version (the signal as int16 µV, the beat fiducials, the measures, the prior compared with, the location),
as pure functions from the engine's results to canonical JSON bytes.

Determinism: nothing here reads the clock; keys are sorted and numbers come from the analysis, so the same report
version always gives the same bytes (a redelivered source message rewrites the same message).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.record import EcgRecord, derive_limb_leads, is_ecg_lead, last_window, lead_order
from engine.result import Analysis, PriorSummary
from integrations.identity import report_id as report_id_of

SCHEMA = "twiwatch.analysis/1"
INT16_MAX = 32767
MAX_TREND_POINTS = 720
_BEAT_FIELDS = ("qrs_onset", "r_peak", "qrs_offset", "t_onset", "t_peak", "t_offset")


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with its offset; a naive time (a sender without a zone) is written as UTC, as the reports do."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


def iso_epoch(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def signal_block(record: EcgRecord, *, derive: bool = False) -> dict[str, Any]:
    """A record's ECG leads as base64 little-endian int16 µV at its own rate, clipped to ±32767 µV.

    derive: add the limb leads the engine derived from I and II (listed under `derived`), so a strip that sent
    only I and II still draws the leads its analysis measured. Samples the sender flagged (E/U/L, lead-off) are
    listed per lead as [start, end) runs; a non-finite sample there is written as 0."""
    if derive:
        record = derive_limb_leads(record)
    names = sorted((n for n in record.leads if is_ecg_lead(n)), key=lead_order)
    rows = record.signal[[record.leads.index(n) for n in names]].astype(np.float64)
    uv = np.clip(np.rint(np.nan_to_num(rows * 1000.0, nan=0.0, posinf=INT16_MAX, neginf=-INT16_MAX)),
                 -INT16_MAX, INT16_MAX).astype("<i2")
    block: dict[str, Any] = {
        "fs": float(record.fs), "units": "uV", "dtype": "int16", "n_samples": int(record.n_samples),
        "leads": {n: base64.b64encode(uv[i].tobytes()).decode("ascii") for i, n in enumerate(names)},
        "derived": sorted((n for n in record.derived_leads if n in names), key=lead_order),
    }
    if record.flagged is not None and record.flagged.any():
        flags = record.flagged[[record.leads.index(n) for n in names]]
        block["flagged"] = {n: _runs(flags[i]) for i, n in enumerate(names) if flags[i].any()}
    return block


def decode_signal(block: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A signal block back to int16 µV arrays per lead (the dashboard's side, and the tests')."""
    return {n: np.frombuffer(base64.b64decode(text), dtype="<i2") for n, text in block["leads"].items()}


def _runs(mask: np.ndarray) -> list[list[int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return edges.reshape(-1, 2).tolist()


def analysis_dict(analysis: Analysis) -> dict[str, Any]:
    """Analysis.to_dict() with every beat fiducial made relative to the start of the analysed span (the signal)."""
    out = analysis.to_dict()
    start = int(analysis.analysed_from_sample)
    if start:
        for lead in out["leads"].values():
            for beat in lead["beats"]:
                for key in _BEAT_FIELDS:
                    if beat[key] is not None:
                        beat[key] -= start
    return out


def prior_block(priors: Sequence[PriorSummary]) -> dict[str, Any] | None:
    """The prior the analysis compared with: the most recent one (priors come oldest first)."""
    if not priors:
        return None
    prior = priors[-1]
    return {"source_id": prior.source_id, "acquired_at": prior.acquired_at, "report_id": report_id_of(prior.source_id)}


def patient_block(patient_id: str | None, system: str | None) -> dict[str, Any] | None:
    return {"mrn": patient_id, "system": system} if patient_id else None


def location_block(unit: str | None, bed: str | None, device: str | None) -> dict[str, Any]:
    return {"unit": unit, "bed": bed, "device": device}


def ecg_message(
    analysis: Analysis, record: EcgRecord, priors: Sequence[PriorSummary], *, report_id: str, version: int,
    status: str, issued: datetime, head: dict[str, Any] | None = None, reasoning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The message of one strip's report version: the analysed span (the last 60 s of a longer strip)."""
    span, _ = last_window(record)
    return {
        "schema": SCHEMA, "kind": "ecg", "research_only": True,
        "report_id": report_id, "version": int(version), "status": status, "issued": iso(issued),
        "source_id": record.source_id, "acquired_at": iso(record.acquired_at),
        "patient": patient_block(record.patient_id, record.patient_system),
        "location": location_block(record.unit, record.bed, record.device_id),
        "signal": signal_block(span, derive=True),
        "analysis": analysis_dict(analysis),
        "prior": prior_block(priors),
        "head": head, "reasoning": reasoning,
    }


def trend_points(columns: Mapping[str, Any], limit: int = MAX_TREND_POINTS) -> list[dict[str, Any]]:
    """Columnar trend ({"t_s": [...], "leads": {lead: [[t_mv, st_mv, ok] | None, ...]}}) as the message's list of
    points, oldest first, evenly thinned to at most `limit` points (the first and last are always kept)."""
    times = list(columns.get("t_s") or [])
    keep = range(len(times))
    if len(times) > limit:
        keep = sorted(set(np.linspace(0, len(times) - 1, limit).round().astype(int).tolist()))
    out = []
    for i in keep:
        leads = {}
        for lead, col in (columns.get("leads") or {}).items():
            value = col[i] if i < len(col) else None
            if value is not None:
                t_mv, st_mv, ok = value
                leads[lead] = {"t_mv": t_mv, "st_j60_mv": st_mv, "quality": "ok" if ok else "not-analysable"}
        out.append({"t": iso_epoch(times[i]), "lead": leads})
    return out


def episode_message(
    event: Any, *, report_id: str, stream: str, stream_source: str, patient_id: str | None,
    patient_system: str | None, unit: str | None, bed: str | None, device: str | None,
    baseline: Mapping[str, Any], trend: Mapping[str, Any], opened: EcgRecord | None, closed: EcgRecord | None,
    head: dict[str, Any] | None = None, reasoning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The message of one monitor episode report version. `event` is the engine's EpisodeEvent; `baseline` the
    engine's per-lead baseline ({lead: {"t", "st", "source"}}); `trend` columnar (trend_points); `opened` the window
    that completed the persistence (version 1, and the version that adds the reasoning model's reading of it),
    `closed` the window that closed it (the resolved version, when a window closed it; silence and a patient change
    close without one). `head` and `reasoning` as in a strip's message: the encoder's head on the opening window and
    the reasoning with each claim's verdict (12-lead monitoring only)."""
    resolved = event.kind == "resolved"
    leads = sorted(event.leads, key=lead_order)
    return {
        "schema": SCHEMA, "kind": "episode", "research_only": True,
        "report_id": report_id, "version": int(event.version), "status": "preliminary",
        "issued": iso_epoch(event.at_s),
        "source_id": stream_source, "acquired_at": iso_epoch(event.episode_start_s),
        "patient": patient_block(patient_id, patient_system),
        "location": location_block(unit, bed, device),
        "signal": None, "analysis": None, "prior": None, "head": head, "reasoning": reasoning,
        "episode": {
            "episode_id": report_id, "stream": stream, "event": event.kind, "reason": event.reason,
            "state": "resolved" if resolved else "open",
            "start": iso_epoch(event.episode_start_s), "end": iso_epoch(event.at_s) if resolved else None,
            "leads": leads, "depth_mv": dict(event.depth_mv), "baseline_mv": dict(event.baseline_mv),
            "baseline_source": event.baseline_source,
            "baseline": {lead: dict(b) for lead, b in sorted(baseline.items(), key=lambda kv: lead_order(kv[0]))},
            "trend": trend_points(trend),
            "windows": {"opened": signal_block(opened) if opened is not None else None,
                        "closed": signal_block(closed) if closed is not None else None},
        },
    }


def message_bytes(message: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no whitespace, UTF-8): equal messages give equal bytes. A non-finite measure
    becomes null (JSON has no NaN)."""
    return json.dumps(_finite(message), sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False, default=_plain).encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return _finite(value.item())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def headers(message: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    return [("twiwatch.schema", SCHEMA.encode()), ("twiwatch.kind", str(message["kind"]).encode()),
            ("twiwatch.report-id", str(message["report_id"]).encode()),
            ("twiwatch.version", str(message["version"]).encode()), ("twiwatch.research-only", b"true")]
