"""The monitor stage: chunks of each bed -> windows -> trend points -> episodes -> episode reports (docs/SPEC.md §11).

Per stream (sender + device + bed, keyed by its hash) the worker keeps:
- in memory, the assembler (raw samples of the open window; never in a changelog);
- in the `monitor` table (changelog-backed): the bound patient, the engine's episode state (baseline, bounded trend,
  open episode, last processed window), where the stream was last seen, and the reviewers' trend (`review`: the
  baseline period's points and the open episode's, at most 720 points together; trend points, never samples).
Chunk events are acknowledged by hand, only once no open window needs their samples, so a restarted worker re-reads
exactly the chunks of its open windows and cuts the same windows; windows at or before the last processed one are
ignored by the engine, so nothing is counted twice. One writer per episode report: this stage. That includes the
models (docs/SPEC.md §11.9): an episode opened on 12 leads gets the encoder's head on its opening window (scored by
the handler, then `with_head`) and, with a reasoner configured, one ECG-R1 reading, which the reason agent sends back
onto the chunks topic under the stream's key (`episode_models.REASONED`) so that `on_reasoned` writes the next version
here, in the stream's order; the per-episode record in the table (`models`) makes a redelivered reading a no-op.

The engine's side (window analysis, episode rules) is `engine.monitor`; this module joins it to Kafka.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine import __version__ as ENGINE_VERSION
from engine.monitor.episodes import (
    EpisodeEvent,
    MonitorRules,
    annotated,
    close_for_patient_change,
    new_state,
    silence,
    step,
)
from engine.monitor.window import analyse_window
from engine.record import EcgRecord, lead_order
from integrations.fhir.episode import build_episode_bundle
from integrations.fhir.report import bundle_bytes
from integrations.identity import patient_key, report_id
from integrations.review import analysis_message
from stream import metrics
from stream.config import WorkerSettings
from stream.monitor import episode_models as models
from stream.monitor import prior_summaries
from stream.monitor.assembly import Output, Piece, StreamAssembler

log = logging.getLogger("twiwatch.monitor")

TICK = b"TWTICK1"  # the worker's own timer message on the chunks topic: lets silence be handled in stream context


def rules_from(s: WorkerSettings) -> MonitorRules:
    return MonitorRules(
        window_s=s.monitor_window_s, baseline_s=s.monitor_baseline_s, persistence_s=s.monitor_persistence_s,
        pause_max_s=s.monitor_pause_max_s, depth_mv=s.monitor_depth_mv, close_within_mv=s.monitor_close_within_mv,
        close_persist_s=s.monitor_close_persist_s, silence_s=s.monitor_silence_s,
        refractory_s=s.monitor_refractory_s, material_depth_mv=s.monitor_material_depth_mv,
        min_update_interval_s=s.monitor_min_update_interval_s, prior_max_age_s=s.monitor_prior_max_age_s,
        prior_limb_leads=s.monitor_prior_limb_leads,
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
    analysis: bytes = b""  # the version's analysis message (docs/SPEC.md §13.1), written after the report
    analysis_headers: list[tuple[str, bytes]] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)  # the episode's models record after this version
    version_of: Any = None  # the EpisodeVersion it was rendered from
    # An opened 12-lead episode's window: the handler scores it with the encoder and, when reasoning was requested,
    # sends it to ECG-R1 once this version is on the broker.
    opening: EcgRecord | None = None


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


def fresh_entry(s: WorkerSettings, patient: str | None, prior: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A patient's start on a bed. `prior`: their newest prior 12-lead ECG's summary (stream.monitor.prior_summaries),
    looked up now, when their baseline starts; the engine uses it if it is young enough at the first window."""
    if patient is not None:
        metrics.MONITOR_BASELINES.labels("found" if prior else "none").inc()
    episodes = new_state(rules_from(s), **prior_summaries.new_state_kwargs(prior if patient else None))
    return {"schema_version": 1, "patient": patient, "episodes": episodes, "seen": {}, "review": fresh_review()}


def fresh_review() -> dict[str, Any]:
    """The reviewers' trend of one patient on one bed: the baseline period's windows, and the open episode's from
    the engine's recent trend at opening on. Columnar, as the engine's trend ({"t_s", "leads"})."""
    return {"baseline": {"t_s": [], "leads": {}}, "episode": None}


def on_chunk(s: WorkerSettings, entry: dict[str, Any] | None, assembler: StreamAssembler, record: EcgRecord,
             meta: dict[str, Any], token: Any, *, now: float | None = None, priors: Any = None) -> Step:
    """One chunk segment of one stream. `entry` is the stream's table entry (None: first time seen); `priors` looks
    a hashed patient up in the prior 12-lead summaries (`.get(patient)`; None: none are known)."""
    secret = s.patient_hash_secret.get_secret_value()
    patient = (patient_key(record.patient_id, secret, record.source_id, system=record.patient_system)
               if record.patient_id else None)
    rules = rules_from(s)
    start_s = record.acquired_at.timestamp() if record.acquired_at else meta["timestamp_ms"] / 1000
    def start(patient: str | None) -> dict[str, Any]:
        return fresh_entry(s, patient, priors.get(patient) if priors is not None and patient else None)

    out = Step(state=entry or start(patient), persist=entry is None)
    entry = out.state
    if entry["patient"] != patient:
        # A different patient on this bed: their open episode closes and a new baseline starts.
        episodes, events = close_for_patient_change(entry["episodes"], start_s)
        out.reports += _reports(s, entry, {**entry, "episodes": episodes}, events, _review_of(entry))
        out.release += assembler.reset().release
        entry = out.state = start(patient)
        out.persist = True
    assembled = assembler.add(Piece(start_s, record, f"{meta['chunk_source_id']}#{meta.get('segment', 0)}", token))
    _count(assembled)
    episodes, review = entry["episodes"], _review_of(entry)
    for window in assembled.windows:
        episodes, review = _window(s, out, entry, {**entry, "seen": _seen(record, meta, now)}, episodes, review,
                                   window, rules)
    out.release += assembled.release
    entry = out.state = {**entry, "episodes": episodes, "seen": _seen(record, meta, now), "review": review}
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
    episodes, review = entry["episodes"], _review_of(entry)
    if assembler is not None and quiet_s > s.monitor_lateness_s:
        flushed = assembler.flush()
        _count(flushed)
        out.release += flushed.release
        for window in flushed.windows:
            episodes, review = _window(s, out, entry, entry, episodes, review, window, rules_from(s))
    if quiet_s > s.monitor_silence_s:
        # The event time the stream would have reached: its last chunk's end plus the quiet time since.
        episodes, events = silence(episodes, seen.get("event_end_s", 0.0) + quiet_s, rules_from(s))
        out.reports += _reports(s, _known(entry, out), {**entry, "episodes": episodes}, events, review)
        if events:
            review = {**review, "episode": None}
    out.state = {**entry, "episodes": episodes, "review": review}
    out.persist = bool(out.windows or out.reports or episodes is not entry["episodes"])
    return out


def _window(s: WorkerSettings, out: Step, before: dict[str, Any], context: dict[str, Any], episodes: dict[str, Any],
            review: dict[str, Any], window: Any, rules: MonitorRules) -> tuple[dict[str, Any], dict[str, Any]]:
    """One window through the engine: its trend message (when the engine took it in) and episode reports, each
    with its analysis message; the window's samples go into those messages only, never into the table."""
    points = analyse_window(window.record)
    after, events = step(episodes, window.start_s, points, window.record.lead_marks, rules)
    if after is episodes:  # at or before the last processed window: a restart recomputed it
        return episodes, review
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
    review = review_step(review, after, events, rules)
    out.reports += _reports(s, _known(before, out), {**context, "episodes": after}, events, review, window.record,
                            window.start_s)
    if any(ev.kind == "resolved" for ev in events):
        review = {**review, "episode": None}
    return after, review


def _review_of(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("review") or fresh_review()  # entries written before the review trend existed


def review_step(review: dict[str, Any], after: dict[str, Any], events: list[Any], rules: MonitorRules,
                limit: int = analysis_message.MAX_TREND_POINTS) -> dict[str, Any]:
    """The reviewers' trend after one window the engine took in (`after` is its state, whose trend ends with this
    window): the first baseline period's windows are kept; an episode's windows from its opening (seeded with the
    engine's recent trend, so the run-up shows) until it resolves; together at most `limit` points, the episode's
    halved (every other point, the newest kept) each time it outgrows its share, so a long episode keeps its whole
    span, its older part sparser."""
    trend = after["trend"]
    column = {lead: _rounded(col[-1]) for lead, col in trend["leads"].items()}
    t_s = trend["t_s"][-1]
    base = review["baseline"]
    if len(base["t_s"]) < rules.baseline_windows:
        base = _append(base, t_s, column)
    episode = review.get("episode")
    if episode is not None:
        episode = _append(episode, t_s, column)
    elif after.get("episode") is not None or any(ev.kind == "opened" for ev in events):
        since = base["t_s"][-1] if base["t_s"] else float("-inf")
        keep = [i for i, t in enumerate(trend["t_s"]) if t > since]
        episode = {"t_s": [trend["t_s"][i] for i in keep],
                   "leads": {lead: [_rounded(col[i]) for i in keep] for lead, col in trend["leads"].items()}}
    if episode is not None and len(episode["t_s"]) > max(2, limit - len(base["t_s"])):
        episode = _thin(episode)
    return {"baseline": base, "episode": episode}


def _rounded(point: list[Any] | None) -> list[Any] | None:
    """[t_mv, st_mv, ok] to 0.1 µV: the table entry stays small (12 leads, 720 points: about 225 kB)."""
    if point is None:
        return None
    t_mv, st_mv, ok = point
    return [None if t_mv is None else round(float(t_mv), 4), None if st_mv is None else round(float(st_mv), 4),
            bool(ok)]


def _append(columns: dict[str, Any], t_s: float, column: dict[str, Any]) -> dict[str, Any]:
    n = len(columns["t_s"])
    leads = {lead: [*col, column.get(lead)] for lead, col in columns["leads"].items()}
    for lead, value in column.items():
        if lead not in leads:
            leads[lead] = [None] * n + [value]
    return {"t_s": [*columns["t_s"], t_s], "leads": leads}


def _thin(columns: dict[str, Any]) -> dict[str, Any]:
    """Every other point, the newest always kept: a long episode keeps its whole span at half the resolution."""
    n = len(columns["t_s"])
    keep = list(range(n - 1, -1, -2))[::-1]
    return {"t_s": [columns["t_s"][i] for i in keep],
            "leads": {lead: [col[i] for i in keep] for lead, col in columns["leads"].items()}}


def review_trend(review: dict[str, Any]) -> dict[str, Any]:
    """The baseline period and the episode as one columnar trend, oldest first, each time once."""
    parts = [review["baseline"]] + ([review["episode"]] if review.get("episode") else [])
    rows: dict[float, dict[str, Any]] = {}
    for part in parts:
        for i, t in enumerate(part["t_s"]):
            rows.setdefault(t, {lead: col[i] for lead, col in part["leads"].items() if col[i] is not None})
    times = sorted(rows)
    leads = sorted({lead for row in rows.values() for lead in row}, key=lead_order)
    return {"t_s": times, "leads": {lead: [rows[t].get(lead) for t in times] for lead in leads}}


def _seen(record: EcgRecord, meta: dict[str, Any], now: float | None) -> dict[str, Any]:
    """Where the stream was last seen (bed and device ids, leads, partition, the subject for the reports). Arrival is
    when this worker processed the chunk, so a worker catching up after a restart does not mistake old chunks for
    a silent stream."""
    end = (record.acquired_at.timestamp() if record.acquired_at else 0.0) + record.n_samples / record.fs
    return {"arrival_s": meta["timestamp_ms"] / 1000 if now is None else now, "event_end_s": end,
            "chunk_ts_ms": meta["timestamp_ms"],
            "partition": meta["partition"], "stream": meta["stream"], "bed": record.bed, "device": record.device_id,
            "unit": record.unit,
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


@dataclass
class EpisodeVersion:
    """What one version of an episode's report is rendered from (kept on its ReportOut, so the handler can render it
    again once the encoder has scored the opening window)."""

    event: Any  # the engine's EpisodeEvent
    report_id: str
    where: dict[str, Any]  # the stream's `seen`: bed, device, patient, leads
    baseline: dict[str, Any]
    trend: dict[str, Any]
    opened: EcgRecord | None = None
    closed: EcgRecord | None = None
    label: str = ""  # the twiwatch.episode-event header; the event's kind unless the version says otherwise


def _reports(s: WorkerSettings, before: dict[str, Any], after: dict[str, Any], events: list[Any],
             review: dict[str, Any], window: EcgRecord | None = None,
             window_start_s: float | None = None) -> list[ReportOut]:
    """Each event's report version and analysis message. `window`: the window that produced the events (it opened
    the episode, or closed it), absent when silence or a patient change closed it."""
    seen = after.get("seen") or before.get("seen") or {}
    # A patient change resets the engine's state: the closing episode's baseline is the one before it.
    baseline = (after.get("episodes") or {}).get("baseline") or (before.get("episodes") or {}).get("baseline") or {}
    trend = review_trend(review)
    records = before.get("models") or {}
    outs = []
    for ev in events:
        rid = episode_report_id(seen.get("stream", ""), before.get("patient"), ev.episode_start_s)
        opened = window if ev.kind == "opened" else None
        record = records.get(rid)
        if record is None:
            # The opening window decides (a change of lead set starts a new segment, so it is the stream's set).
            leads, marks = ((list(opened.leads), dict(opened.lead_marks)) if opened is not None
                            else (seen.get("leads", list(ev.leads)), seen.get("marks", {})))
            record = (models.opening_record(leads, marks, reasoner=bool(s.reasoner_url)) if opened is not None
                      else models.legacy_record(leads))
            record["where"] = _where(seen)
        version = EpisodeVersion(
            ev, rid, record.get("where") or _where(seen), baseline, trend, opened,
            # a window closes an episode at its own start; a silence found at this window closed it earlier
            window if ev.kind == "resolved" and window_start_s == ev.at_s else None)
        out = render(s, version, record)
        if opened is not None and record["reasoning"] in ("requested", "off"):
            out.opening = opened  # the handler scores it, and sends it to ECG-R1 when requested
        outs.append(out)
    return outs


def _known(entry: dict[str, Any], out: Step) -> dict[str, Any]:
    """The entry with the episode records of the versions this step already rendered (an episode may open and move
    on within one step: a flush of several windows, a restart catching up), so its later versions continue them."""
    if not out.reports:
        return entry
    return {**entry, "models": {**(entry.get("models") or {}), **{o.report_id: o.models for o in out.reports}}}


def _where(seen: dict[str, Any]) -> dict[str, Any]:
    """What the episode's later versions need of the stream as it was when it opened (a patient change replaces
    the stream's `seen` before the resolved version of the earlier patient's episode is written)."""
    keys = ("stream", "source", "patient_id", "patient_system", "unit", "bed", "device", "leads", "marks")
    return {k: seen.get(k) for k in keys}


def render(s: WorkerSettings, v: EpisodeVersion, record: dict[str, Any]) -> ReportOut:
    """One version's report and analysis message; `record` is the episode's models record (episode_models)."""
    ev, rid, where = v.event, v.report_id, v.where
    head, reasoning = record.get("head"), record.get("result")
    bundle = build_episode_bundle(
        ev, report_id=rid, patient_id=where.get("patient_id"), patient_system=where.get("patient_system"),
        stream_source=where.get("source") or "", monitored_leads=where.get("leads") or list(ev.leads),
        lead_marks=where.get("marks") or {}, bed=where.get("bed"), device_id=where.get("device"),
        fhir_version=s.fhir_version, identifier_system=s.fhir_identifier_system,
        software_version=ENGINE_VERSION, organization=s.organization or None,
        reasoning_note=models.reasoning_note(record), head=head, reasoning=reasoning,
        model_versions=record.get("model_versions"))
    label = v.label or ev.kind
    headers = [("twiwatch.report-id", rid.encode()), ("twiwatch.version", str(ev.version).encode()),
               ("twiwatch.status", b"preliminary"), ("twiwatch.fhir-version", s.fhir_version.encode()),
               ("twiwatch.kind", b"monitor-episode"), ("twiwatch.episode-event", label.encode()),
               ("twiwatch.research-only", b"true")]
    message = analysis_message.episode_message(
        ev, report_id=rid, stream=where.get("stream") or "", stream_source=where.get("source") or "",
        patient_id=where.get("patient_id"), patient_system=where.get("patient_system"), unit=where.get("unit"),
        bed=where.get("bed"), device=where.get("device"),
        baseline={lead: b for lead, b in v.baseline.items() if lead in ev.leads},
        trend=v.trend, opened=v.opened, closed=v.closed, head=head, reasoning=record.get("review"))
    return ReportOut(rid, ev.version, label, bundle_bytes(bundle), headers,
                     analysis_message.message_bytes(message), analysis_message.headers(message),
                     models={**record, "event": ev.to_dict()}, version_of=v)


def with_head(s: WorkerSettings, out: ReportOut, head: dict[str, Any] | None,
              model_versions: dict[str, str]) -> ReportOut:
    """The opening version rendered again with the encoder's head on its window (None: the model could not score
    it, said in the log); the head stays in the episode's record, so every later version carries it."""
    record = {**out.models, "head": head, "model_versions": dict(model_versions)}
    again = render(s, out.version_of, record)
    again.opening = out.opening
    return again


def with_models(step: Step) -> Step:
    """The episode records of the step's report versions into the stream's entry (the table keeps them)."""
    if not step.reports or step.state is None:
        return step
    records = dict(step.state.get("models") or {})
    for out in step.reports:
        records.pop(out.report_id, None)  # re-inserted: the newest last
        records[out.report_id] = out.models
    step.state = {**step.state, "models": models.kept(records)}
    return step


def on_reasoned(s: WorkerSettings, entry: dict[str, Any] | None, window: EcgRecord,
                answer: dict[str, Any]) -> Step:
    """An ECG-R1 reading of an episode's opening window (`answer` from the reason agent, `window` the window it
    read): the next version of that episode's report, once. A reading of an episode this stream has no record of
    waiting for one (a redelivery, or one already merged) changes nothing."""
    rid = answer["report_id"]
    record = ((entry or {}).get("models") or {}).get(rid)
    if entry is None or record is None or record.get("reasoning") != "requested":
        metrics.REDELIVERIES_SKIPPED.inc()
        return Step(state=entry)
    last = EpisodeEvent.from_dict(record["event"])
    episodes = entry["episodes"]
    # Dated by the stream's own time (its last window), never the wall clock: a re-read reading rewrites the same
    # bytes; never before the version it follows.
    at_s = max(last.at_s, float(episodes.get("last_window_s") or last.at_s))
    after, ev = annotated(episodes, last.episode_start_s, at_s, models.REASON)
    if ev is None:  # resolved before the reading came: the resolved version again, with the reading, one version on
        ev = replace(last, version=last.version + 1, reason=f"{last.reason}; {models.REASON}")
    record = {**record, "reasoning": "answered", "result": answer["reasoning"], "review": answer.get("review")}
    open_now = after.get("episode") is not None and ev.kind != "resolved"
    # The baseline beside the reading: the engine's while the episode is open (a patient change replaces it).
    version = EpisodeVersion(ev, rid, record.get("where") or {}, (after.get("baseline") or {}) if open_now else {},
                             review_trend(_review_of(entry)), opened=window, label="reasoned")
    out = render(s, version, record)
    return Step(state={**entry, "episodes": after}, reports=[out], persist=True)
