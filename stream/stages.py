"""The worker's two stages as plain functions, so they run the same inside faust and in a test.

decode_message: raw HL7/FHIR bytes -> EcgRecord (integrations codecs)
analyse_record: EcgRecord + the patient's priors -> (report bundle bytes, headers, updated priors)
    (engine + FHIR builder)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine import __version__ as ENGINE_VERSION
from engine.analyze import analyze
from engine.reasoner.crosscheck import describe as describe_claim
from engine.record import EcgRecord, iso_utc
from engine.result import Analysis, PriorSummary
from integrations.chunk import Chunk
from integrations.decode import decode_message as decode
from integrations.fhir.report import build_report_bundle, bundle_bytes
from integrations.identity import report_id, stream_key
from integrations.review import analysis_message
from stream import metrics
from stream.config import Hl7Settings, WorkerSettings
from stream.monitor import prior_summaries

SOFTWARE_VERSION = ENGINE_VERSION


def decode_message(raw: bytes, fmt: str, s: Hl7Settings) -> EcgRecord | Chunk:
    """A strip (EcgRecord) or a monitor chunk, as the sender's rule says (docs/SPEC.md §11)."""
    started = time.perf_counter()
    decoded = decode(raw, fmt, s.sender_rules(), **s.hl7_decode_options())
    metrics.DECODE_SECONDS.labels(fmt).observe(time.perf_counter() - started)
    return decoded


def chunk_parts(chunk: Chunk, source: dict[str, Any], secret: str) -> list[tuple[bytes, EcgRecord, dict[str, Any]]]:
    """One chunks-topic message per segment (a W01 gap splits a chunk), keyed by the hashed stream so a bed's chunks
    keep their order; what the assembler needs to place each segment travels beside it."""
    key = stream_key(chunk.stream_key, secret).encode()
    meta = {**source, "stream": key.decode(), "stream_source": chunk.stream_key, "chunk_source_id": chunk.source_id,
            "skipped": list(chunk.skipped),
            "bed_components": list(chunk.bed), "segments": len(chunk.segments)}
    return [(key, seg, {**meta, "segment": i}) for i, seg in enumerate(chunk.segments)]


@dataclass
class ReportOut:
    report_id: str
    version: int
    status: str
    value: bytes
    headers: list[tuple[str, bytes]]
    priors: dict[str, Any]  # the patient's updated table entry
    triage: str
    reasoning_priority: int | None = None  # set when this report waits for the reasoner (lower = sooner)
    priors_used: list[dict[str, Any]] | None = None  # what the analysis compared against (for the reasoned version)
    # The analysis message of this version (docs/SPEC.md §13.1), written after the report, keyed by the report id.
    analysis: bytes = b""
    analysis_headers: list[tuple[str, bytes]] = field(default_factory=list)


# Only new TWIs go to the reasoner; ischaemic-pattern first, secondary causes last.
_REASONING_PRIORITY = {"ischemic-pattern": 0, "indeterminate": 1}


def reasoning_priority(analysis: Analysis) -> int | None:
    if analysis.novelty != "new" or not analysis.twi:
        return None
    return _REASONING_PRIORITY.get(analysis.triage.cls, 2)


def _priors_for(record: EcgRecord, state: dict[str, Any] | None) -> list[PriorSummary]:
    """Earlier ECGs of this patient, oldest first, never the record itself (a redelivery must not see itself)."""
    if not state:
        return []
    out = [PriorSummary.from_dict(d) for d in state.get("ecgs", []) if d["source_id"] != record.source_id]
    if record.acquired_at:
        mine = iso_utc(record.acquired_at)
        out = [p for p in out if not p.acquired_at or p.acquired_at <= mine]
    return sorted(out, key=lambda p: p.acquired_at or "")


REPORTED_KEPT = 256  # source ids remembered per patient for redelivery, beyond the few ECGs kept as priors


def already_reported(state: dict[str, Any] | None, source_id: str) -> bool:
    """True when this ECG's report was already written (the table records an ECG only after that). Checks the
    patient's recent reported source ids, not only the priors: a burst of more ECGs than `priors_kept` before a
    crash, or a late ECG older than every prior, is still recognised when redelivered."""
    state = state or {}
    return source_id in state.get("reported", ()) or any(d["source_id"] == source_id for d in state.get("ecgs", []))


def _updated_state(state: dict[str, Any] | None, summary: PriorSummary, keep: int) -> dict[str, Any]:
    ecgs = [d for d in (state or {}).get("ecgs", []) if d["source_id"] != summary.source_id]
    ecgs.append(summary.to_dict())
    ecgs.sort(key=lambda d: d.get("acquired_at") or "")
    reported = [r for r in (state or {}).get("reported", []) if r != summary.source_id] + [summary.source_id]
    # Other keys (the monitor prior published last, `monitor_prior`) stay.
    return {**(state or {}), "schema_version": 1, "ecgs": ecgs[-keep:], "reported": reported[-REPORTED_KEPT:]}


def without_ecgs(state: dict[str, Any], source_ids: set[str]) -> dict[str, Any]:
    """The patient's table entry without these ECGs (ones whose report could not be built: dead letters), nor a
    monitor prior that one of them would have been (its summary was never published)."""
    out = {**state, "ecgs": [d for d in state.get("ecgs", []) if d["source_id"] not in source_ids],
           "reported": [r for r in state.get("reported", []) if r not in source_ids]}
    if (state.get("monitor_prior") or {}).get("report_id") in {report_id(sid) for sid in source_ids}:
        out.pop("monitor_prior")
    return out


def _report(
    analysis: Analysis, record: EcgRecord, priors: list[PriorSummary], source: dict[str, Any], s: WorkerSettings, *,
    version: int, status: str, issued: datetime, reasoning: dict[str, Any] | None,
    head: dict[str, Any] | None = None, model_versions: dict[str, str] | None = None,
    review: dict[str, Any] | None = None,
) -> tuple[str, bytes, list[tuple[str, bytes]], bytes, list[tuple[str, bytes]]]:
    """The report version and its analysis message. `review`: the reasoning as the reviewer sees it (with each
    claim's verdict), when it says more than `reasoning`."""
    rid = report_id(record.source_id)
    prior = priors[-1] if priors else None
    bundle = build_report_bundle(
        analysis, record, report_id=rid, version=version, status=status, fhir_version=s.fhir_version,
        identifier_system=s.fhir_identifier_system, software_version=SOFTWARE_VERSION,
        model_versions=model_versions or {}, reasoning=reasoning, issued=issued,
        prior_acquired_at=prior.acquired_at if prior else None, head=head,
        prior_report_id=report_id(prior.source_id) if prior else None,
    )
    message = analysis_message.ecg_message(analysis, record, priors, report_id=rid, version=version, status=status,
                                           issued=issued, head=head, reasoning=review or reasoning)
    headers = [
        ("twiwatch.report-id", rid.encode()),
        ("twiwatch.version", str(version).encode()),
        ("twiwatch.status", status.encode()),
        ("twiwatch.fhir-version", s.fhir_version.encode()),
        ("twiwatch.source-timestamp", str(source["timestamp_ms"]).encode()),
        ("twiwatch.research-only", b"true"),
    ]
    return (rid, bundle_bytes(bundle), headers, analysis_message.message_bytes(message),
            analysis_message.headers(message))


@dataclass
class Analysed:
    """One ECG analysed against its patient's priors; the report is built once the encoder scores (if any) exist."""

    record: EcgRecord
    source: dict[str, Any]
    analysis: Analysis
    priors: list[PriorSummary]
    new_state: dict[str, Any]
    # The monitor-baseline summary to publish (docs/SPEC.md §11.9) when this ECG is the patient's newest 12-lead.
    prior_summary: dict[str, Any] | None = None


def analyse_only(record: EcgRecord, state: dict[str, Any] | None, source: dict[str, Any],
                 s: WorkerSettings) -> Analysed:
    started = time.perf_counter()
    priors = _priors_for(record, state)
    analysis = analyze(record, priors)
    metrics.ANALYSIS_SECONDS.observe(time.perf_counter() - started)
    new_state = _updated_state(state, analysis.summary, s.priors_kept)
    summary = prior_summaries.summary_of(record, analysis.summary, report_id(record.source_id))
    if summary is None or not prior_summaries.newer(summary, (state or {}).get("monitor_prior")):
        summary = None  # an older 12-lead ECG arriving late never replaces the newer one (the topic is compacted)
    else:
        new_state["monitor_prior"] = {"time_s": summary["time_s"], "report_id": summary["report_id"]}
    return Analysed(record, source, analysis, priors, new_state, summary)


def first_report(a: Analysed, s: WorkerSettings, *, reasoning_enabled: bool = False,
                 head: dict[str, Any] | None = None, model_versions: dict[str, str] | None = None) -> ReportOut:
    """Version 1 of the report: `partial` when a reasoning request will follow, else `preliminary` (docs/SPEC.md §3)."""
    priority = reasoning_priority(a.analysis) if reasoning_enabled else None
    status = "partial" if priority is not None else "preliminary"
    # issued is the source message's broker time, not "now": a redelivered message then yields the same bytes.
    issued = datetime.fromtimestamp(a.source["timestamp_ms"] / 1000, tz=UTC)
    rid, value, headers, message, message_headers = _report(
        a.analysis, a.record, a.priors, a.source, s, version=1, status=status, issued=issued, reasoning=None,
        head=head, model_versions=model_versions)
    return ReportOut(rid, 1, status, value, headers, a.new_state, a.analysis.triage.cls, priority,
                     [p.to_dict() for p in a.priors], message, message_headers)


def analyse_record(
    record: EcgRecord, state: dict[str, Any] | None, source: dict[str, Any], s: WorkerSettings,
    reasoning_enabled: bool = False,
) -> ReportOut:
    """analyse_only + first_report, without the encoder (tests, tools)."""
    return first_report(analyse_only(record, state, source, s), s, reasoning_enabled=reasoning_enabled)


def review_reasoning(reasoning: dict[str, Any], result: Any) -> dict[str, Any]:
    """The reasoning as the report has it, plus each claim with its verdict and evidence, for reviewers
    (docs/SPEC.md §13.1). `result` is the engine's ReasoningResult."""
    claims = result.crosscheck.claims if result.crosscheck is not None else []
    return {**reasoning, "claims": [
        {"text": c.text, "summary": describe_claim(c), "kind": c.kind, "leads": list(c.leads), "hedged": c.hedged,
         "verdict": c.verdict, "evidence": list(c.evidence)} for c in claims]}


def reanalyse(record: EcgRecord, priors_used: list[dict[str, Any]]) -> tuple[Analysis, list[PriorSummary]]:
    """The same analysis version 1 reported (the engine is deterministic), for the reasoner and version 2."""
    priors = [PriorSummary.from_dict(d) for d in priors_used]
    return analyze(record, priors), priors


def reasoned_report(
    record: EcgRecord, analysis: Analysis, priors: list[PriorSummary], source: dict[str, Any],
    reasoning: dict[str, Any], s: WorkerSettings, review: dict[str, Any] | None = None,
) -> ReportOut:
    """Version 2: the same report with the reasoning added (or marked abandoned, with why), status preliminary.
    The encoder's scores and model versions of version 1 travel in `source` (the reasoning request), so version 2
    keeps them and names the same devices."""
    rid, value, headers, message, message_headers = _report(
        analysis, record, priors, source, s, version=2, status="preliminary", issued=datetime.now(UTC),
        reasoning=reasoning, head=source.get("head"), model_versions=source.get("model_versions"), review=review)
    return ReportOut(rid, 2, "preliminary", value, headers, {}, analysis.triage.cls, analysis=message,
                     analysis_headers=message_headers)
