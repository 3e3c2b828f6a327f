"""The monitor stage: chunks of each bed -> windows -> trend points -> episodes -> episode reports (docs/SPEC.md §11).

Per stream (sender + device + bed, keyed by its hash) the worker keeps:
- in memory, the assembler (raw samples of the open window; never in a changelog);
- in the `monitor` table (changelog-backed): the bound patient, the engine's episode state (baseline, bounded trend,
  open episode, last processed window) and where the stream was last seen.
Chunk events are acknowledged by hand, only once no open window needs their samples, so a restarted worker re-reads
exactly the chunks of its open windows and cuts the same windows; windows at or before the last processed one are
ignored by the engine, so nothing is counted twice. One writer per episode report: this stage.

The engine's side (window analysis, episode rules) is `engine.monitor`; this module joins it to Kafka.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from engine import __version__ as ENGINE_VERSION
from engine.monitor.episodes import MonitorRules, close_for_patient_change, new_state, silence, step
from engine.monitor.window import analyse_window
from engine.record import STANDARD_LEADS, EcgRecord
from integrations.fhir.episode import build_episode_bundle
from integrations.fhir.report import bundle_bytes
from integrations.identity import patient_key, report_id
from stream import metrics
from stream.config import WorkerSettings
from stream.monitor.assembly import Output, Piece, StreamAssembler

log = logging.getLogger("twiwatch.monitor")

TICK = b"TWTICK1"  # the worker's own timer message on the chunks topic: lets silence be handled in stream context


def rules_from(s: WorkerSettings) -> MonitorRules:
    return MonitorRules(
        window_s=s.monitor_window_s, baseline_s=s.monitor_baseline_s, persistence_s=s.monitor_persistence_s,
        pause_max_s=s.monitor_pause_max_s, depth_mv=s.monitor_depth_mv, close_within_mv=s.monitor_close_within_mv,
        close_persist_s=s.monitor_close_persist_s, silence_s=s.monitor_silence_s,
        refractory_s=s.monitor_refractory_s, material_depth_mv=s.monitor_material_depth_mv,
        min_update_interval_s=s.monitor_min_update_interval_s,
    )


def assembler_for(s: WorkerSettings) -> StreamAssembler:
    return StreamAssembler(window_s=s.monitor_window_s, lateness_s=s.monitor_lateness_s,
                           gap_tolerance_s=s.monitor_gap_tolerance_s)


@dataclass
class ReportOut:
    report_id: str
    version: int
    kind: str
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Step:
    """What one chunk (or tick) produced: the stream's new table entry, reports to write, events to acknowledge."""

    state: dict[str, Any] | None
    reports: list[ReportOut] = field(default_factory=list)
    release: list[Any] = field(default_factory=list)
    windows: int = 0
    trends: list[bytes] = field(default_factory=list)  # one JSON message per window the engine took in
    # Whether the table entry must be written: the episode state changed (a window, a patient change, a first
    # chunk). Where the stream was last seen changes with every chunk but is kept in memory between windows, so a
    # 1-s chunk does not rewrite the whole state to the changelog.
    persist: bool = False


def fresh_entry(s: WorkerSettings, patient: str | None) -> dict[str, Any]:
    return {"schema_version": 1, "patient": patient, "episodes": new_state(rules_from(s)), "seen": {}}


def on_chunk(s: WorkerSettings, entry: dict[str, Any] | None, assembler: StreamAssembler, record: EcgRecord,
             meta: dict[str, Any], token: Any, *, now: float | None = None) -> Step:
    """One chunk segment of one stream. `entry` is the stream's table entry (None: first time seen)."""
    secret = s.patient_hash_secret.get_secret_value()
    patient = (patient_key(record.patient_id, secret, record.source_id, system=record.patient_system)
               if record.patient_id else None)
    rules = rules_from(s)
    start_s = record.acquired_at.timestamp() if record.acquired_at else meta["timestamp_ms"] / 1000
    out = Step(state=entry or fresh_entry(s, patient), persist=entry is None)
    entry = out.state
    if entry["patient"] != patient:
        # A different patient on this bed: their open episode closes and a new baseline starts.
        episodes, events = close_for_patient_change(entry["episodes"], start_s)
        out.reports += _reports(s, entry, {**entry, "episodes": episodes}, events)
        out.release += assembler.reset().release
        entry = out.state = fresh_entry(s, patient)
        out.persist = True
    assembled = assembler.add(Piece(start_s, record, f"{meta['chunk_source_id']}#{meta.get('segment', 0)}", token))
    _count(assembled)
    episodes = entry["episodes"]
    for window in assembled.windows:
        episodes = _window(s, out, entry, {**entry, "seen": _seen(record, meta, now)}, episodes, window, rules)
    out.release += assembled.release
    entry = out.state = {**entry, "episodes": episodes, "seen": _seen(record, meta, now)}
    out.persist = out.persist or bool(out.windows or out.reports)
    return out


def on_tick(s: WorkerSettings, entry: dict[str, Any], assembler: StreamAssembler | None, *,
            now: float | None = None) -> Step:
    """The stream has been quiet: place what waited for late chunks, and close an open episode after
    `monitor_silence_s` without chunks ('signal lost'). Silence is judged on arrival (broker) time."""
    now = time.time() if now is None else now
    seen = entry.get("seen") or {}
    quiet_s = now - seen.get("arrival_s", now)
    out = Step(state=entry)
    episodes = entry["episodes"]
    if assembler is not None and quiet_s > s.monitor_lateness_s:
        flushed = assembler.flush()
        _count(flushed)
        out.release += flushed.release
        for window in flushed.windows:
            episodes = _window(s, out, entry, entry, episodes, window, rules_from(s))
    if quiet_s > s.monitor_silence_s:
        # The event time the stream would have reached: its last chunk's end plus the quiet time since.
        episodes, events = silence(episodes, seen.get("event_end_s", 0.0) + quiet_s, rules_from(s))
        out.reports += _reports(s, entry, {**entry, "episodes": episodes}, events)
    out.state = {**entry, "episodes": episodes}
    out.persist = bool(out.windows or out.reports or episodes is not entry["episodes"])
    return out


def _window(s: WorkerSettings, out: Step, before: dict[str, Any], context: dict[str, Any], episodes: dict[str, Any],
            window: Any, rules: MonitorRules) -> dict[str, Any]:
    """One window through the engine: its trend message (when the engine took it in) and episode reports."""
    points = analyse_window(window.record)
    after, events = step(episodes, window.start_s, points, window.record.lead_marks, rules)
    if after is episodes:  # at or before the last processed window: a restart recomputed it
        return episodes
    ok = sum(p.quality == "ok" for p in points.values())
    metrics.WINDOWS.labels(str(ok)).inc()
    out.windows += 1
    seen = context.get("seen") or {}
    out.trends.append(json.dumps({
        "stream": seen.get("stream"), "window_start_s": window.start_s, "window_s": rules.window_s,
        "patient": before.get("patient"), "bed": seen.get("bed"), "device": seen.get("device"),
        "fs": window.record.fs, "marks": dict(window.record.lead_marks),
        "points": {lead: p.to_dict() for lead, p in points.items()},
        "baseline": {lead: b.get("t") for lead, b in (after.get("baseline") or {}).items()},
        # The raw chunk that completed the window, by its broker time: chunk-to-trend latency is the trend message's
        # own broker time (LogAppendTime) minus this.
        "chunk_ts_ms": seen.get("chunk_ts_ms"),
        "episode_open": after.get("episode") is not None,
    }, separators=(",", ":"), sort_keys=True).encode())
    out.reports += _reports(s, before, {**context, "episodes": after}, events)
    return after


def _seen(record: EcgRecord, meta: dict[str, Any], now: float | None) -> dict[str, Any]:
    """Where the stream was last seen (bed and device ids, leads, partition, the subject for the reports). Arrival is
    when this worker processed the chunk, so a worker catching up after a restart does not mistake old chunks for
    a silent stream."""
    end = (record.acquired_at.timestamp() if record.acquired_at else 0.0) + record.n_samples / record.fs
    return {"arrival_s": meta["timestamp_ms"] / 1000 if now is None else now, "event_end_s": end,
            "chunk_ts_ms": meta["timestamp_ms"],
            "partition": meta["partition"], "stream": meta["stream"], "bed": record.bed, "device": record.device_id,
            "leads": list(record.leads), "marks": dict(record.lead_marks), "source": meta.get("stream_source", ""),
            "patient_id": record.patient_id, "patient_system": record.patient_system}


def _count(assembled: Output) -> None:
    for why in assembled.dropped:
        metrics.MONITOR_DROPPED.labels(why).inc()
    for why in assembled.segments_started:
        metrics.MONITOR_SEGMENTS.labels(why).inc()


def episode_report_id(stream: str, patient: str | None, episode_start_s: float) -> str:
    """Episode id = hash(stream key, patient key, start of the opening window); the report identifier is it."""
    return report_id(f"episode|{stream}|{patient or ''}|{episode_start_s:.0f}")


def reasoning_note(leads: list[str]) -> str:
    standard = [lead for lead in leads if lead in STANDARD_LEADS]
    if len(standard) < len(STANDARD_LEADS):
        return (f"No reasoning was requested: the encoder and ECG-R1 take 12 leads at 500 Hz, and this stream "
                f"carries {len(leads)} lead(s).")
    return "No reasoning was requested for this monitor episode."


def _reports(s: WorkerSettings, before: dict[str, Any], after: dict[str, Any], events: list[Any]) -> list[ReportOut]:
    seen = after.get("seen") or before.get("seen") or {}
    outs = []
    for ev in events:
        rid = episode_report_id(seen.get("stream", ""), before.get("patient"), ev.episode_start_s)
        bundle = build_episode_bundle(
            ev, report_id=rid, patient_id=seen.get("patient_id"), patient_system=seen.get("patient_system"),
            stream_source=seen.get("source", ""), monitored_leads=seen.get("leads", list(ev.leads)),
            lead_marks=seen.get("marks", {}), bed=seen.get("bed"), device_id=seen.get("device"),
            fhir_version=s.fhir_version, identifier_system=s.fhir_identifier_system,
            software_version=ENGINE_VERSION, organization=s.organization or None,
            reasoning_note=reasoning_note(seen.get("leads", [])))
        headers = [("twiwatch.report-id", rid.encode()), ("twiwatch.version", str(ev.version).encode()),
                   ("twiwatch.status", b"preliminary"), ("twiwatch.fhir-version", s.fhir_version.encode()),
                   ("twiwatch.kind", b"monitor-episode"), ("twiwatch.episode-event", ev.kind.encode()),
                   ("twiwatch.research-only", b"true")]
        outs.append(ReportOut(rid, ev.version, ev.kind, bundle_bytes(bundle), headers))
    return outs
