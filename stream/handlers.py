"""What the worker's agents do with each event or batch: the stages (`stream.stages`) joined to the topics and tables
the composition root (`stream.app`) declared. Every function takes the `Wiring` it writes through, so the agents stay
one line each and no closure hides state.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from engine.errors import InvalidRecord
from engine.reasoner.base import Reasoner
from engine.reasoner.orchestrate import areason_and_check, to_report_dict
from integrations.chunk import Chunk
from integrations.identity import patient_key
from stream import envelope, metrics
from stream.config import WorkerSettings
from stream.deadletter import deadletter_record
from stream.delivery import event_context, one_line
from stream.monitor import episode_models, prior_summaries
from stream.monitor import stage as monitor
from stream.reasoning import observe_reasoning, run_by_priority
from stream.scoring import Scorer
from stream.stages import (
    REPORTED_KEPT,
    Analysed,
    already_reported,
    analyse_only,
    chunk_parts,
    decode_message,
    first_report,
    reanalyse,
    reasoned_report,
    review_reasoning,
    without_ecgs,
)

log = logging.getLogger("twiwatch.worker")


@dataclass
class Wiring:
    """The worker's outputs and state, as declared by `stream.app.build_app`."""

    s: WorkerSettings
    by_patient: Any  # faust topics
    chunks: Any
    trends: Any
    reports: Any
    deadletters: Any
    reasoning_requests: Any
    priors: Any  # faust tables: per hashed patient, the prior-ECG summaries and reported ids
    reasoned: Any  # per hashed patient, the latest report ids whose reasoned version is written
    reasoner: Reasoner | None
    scorer: Scorer | None
    monitor: Any = None  # faust table: per hashed stream, the monitor state (stream.monitor.stage)
    analysis: Any = None  # faust topic: one analysis message per report version (docs/SPEC.md §13.1)
    prior_summaries: Any = None  # faust topic (compacted): per hashed patient, the newest 12-lead's summary
    prior_reader: Any = None  # stream.monitor.prior_summaries.PriorReader: that topic, read whole
    assemblers: dict[str, Any] = field(default_factory=dict)  # per hashed stream, in memory only
    latest: dict[str, Any] = field(default_factory=dict)  # per hashed stream, the entry as of its last chunk

    @property
    def secret(self) -> str:
        return self.s.patient_hash_secret.get_secret_value()


async def send_deadletter(w: Wiring, raw_bytes: bytes, exc: BaseException, stage: str, msg: Any) -> None:
    code = getattr(exc, "code", type(exc).__name__)
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    value, headers = deadletter_record(
        raw_bytes, reason=reason, error_class=type(exc).__name__, code=code, source_topic=msg.topic,
        partition=msg.partition, offset=msg.offset, timestamp_ms=int(msg.timestamp * 1000),
        max_message_bytes=w.s.max_message_bytes,
    )
    await w.deadletters.send(key=msg.key, value=value, headers=headers)
    metrics.DEADLETTERS.labels(stage, code).inc()
    log.warning("dead letter stage=%s topic=%s partition=%s offset=%s code=%s: %s",
                stage, msg.topic, msg.partition, msg.offset, code, reason)


# What the broker (or the client, before sending) refuses for size: the analysis message's dead letter, not a fault.
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


async def send_analysis(w: Wiring, report_id: str, value: bytes, headers: list[tuple[str, bytes]],
                        msg: Any) -> Any:
    """Queue the analysis message of a report version whose report is already on the broker (docs/SPEC.md §13.1);
    returns the future to await before the table moves on, or None. A message over the size limit is refused here
    (or by the broker) and becomes a dead letter with the reason; the report stays, and the worker goes on."""
    if w.analysis is None or not value:
        return None
    if len(value) > w.s.max_message_bytes:
        await _analysis_deadletter(w, value, f"analysis message of {len(value)} bytes over the "
                                   f"{w.s.max_message_bytes}-byte limit (its report was written)", msg)
        return None
    try:
        return await w.analysis.send(key=report_id.encode(), value=value, headers=headers)
    except _TOO_LARGE as exc:
        await _analysis_deadletter(w, value, f"the producer or broker refused the analysis message "
                                   f"({len(value)} bytes): {type(exc).__name__}", msg)
        return None


async def await_analysis(w: Wiring, future: Any, value: bytes, msg: Any) -> None:
    if future is None:
        return
    try:
        await future
    except _TOO_LARGE as exc:
        await _analysis_deadletter(w, value, f"the broker refused the analysis message ({len(value)} bytes): "
                                   f"{type(exc).__name__}", msg)


async def _analysis_deadletter(w: Wiring, value: bytes, reason: str, msg: Any) -> None:
    await send_deadletter(w, value, InvalidRecord(reason, "analysis-too-large"), "analysis", msg)


async def decode_one(w: Wiring, event: Any) -> None:
    """Raw HL7/FHIR bytes -> a strip on the by-patient topic or a monitor chunk on the chunks topic, or a dead letter
    with the reason."""
    s, msg, raw_bytes = w.s, event.message, event.value
    metrics.MESSAGES_IN.labels(msg.topic).inc()
    try:
        if len(raw_bytes) > s.max_message_bytes:
            raise InvalidRecord(f"message of {len(raw_bytes)} bytes over the {s.max_message_bytes}-byte limit",
                                "too-large")
        fmt = "hl7" if msg.topic == s.topic_hl7_raw else "fhir"
        decoded = decode_message(raw_bytes, fmt, s)
        source = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                  "timestamp_ms": int(round(msg.timestamp * 1000)), "format": fmt}
        if isinstance(decoded, Chunk):
            out = [(topic_key, _checked_size(envelope.pack(seg, meta), s.max_message_bytes))
                   for topic_key, seg, meta in chunk_parts(decoded, source, w.secret)]
            target = w.chunks
        else:
            key = patient_key(decoded.patient_id, w.secret, decoded.source_id, system=decoded.patient_system)
            out = [(key.encode(), _checked_size(envelope.pack(decoded, source), s.max_message_bytes))]
            target = w.by_patient
    except Exception as exc:  # every failure becomes a dead letter; the worker keeps going
        if not isinstance(exc, InvalidRecord):
            log.error("decoder fault: %s", one_line(exc))
        await send_deadletter(w, raw_bytes, exc, "decode", msg)
        return
    if isinstance(decoded, Chunk):
        metrics.CHUNKS.labels("ecg" if decoded.segments else "no-ecg").inc()
    for key, value in out:
        await target.send(key=key, value=value)


def _checked_size(value: bytes, limit: int) -> bytes:
    if len(value) > limit:
        # float32 samples can outgrow the text they came from (about 13 minutes of 12 leads at 500 Hz)
        raise InvalidRecord(f"decoded record is {len(value)} bytes as float32 samples, over the {limit}-byte limit "
                            "of the internal hop; send strips of at most a few minutes (only the last 60 s are "
                            "analysed)", "too-large-decoded")
    return value


async def analyse_batch(w: Wiring, stream: Any, events: list[Any]) -> None:
    """A micro-batch across partitions. A patient's ECGs stay in order and each sees the ones before it as priors."""
    batch: list[tuple[Any, str, Analysed]] = []
    pending_state: dict[str, Any] = {}
    for event in events:
        msg = event.message
        try:
            record, source = envelope.unpack(event.value)
            patient = msg.key.decode()
            state = pending_state[patient] if patient in pending_state else w.priors.get(patient)
            if already_reported(state, record.source_id):
                metrics.REDELIVERIES_SKIPPED.inc()
                continue
            analysed = analyse_only(record, state, source, w.s)
        except Exception as exc:
            log.error("analysis fault: %s", one_line(exc))
            await send_deadletter(w, event.value, exc, "analyse", msg)
            continue
        pending_state[patient] = analysed.new_state
        batch.append((event, patient, analysed))
    heads: list[Any] = [None] * len(batch)
    if w.scorer and batch:
        try:
            heads = await w.scorer.score_async([a for _, _, a in batch])
        except Exception as exc:  # the head is an addition: the measured criteria still go out
            metrics.ENCODER_FAULTS.inc()
            log.error("encoder fault, %d report(s) go out without head scores: %s", len(batch), one_line(exc))
    failed: set[str] = set()
    for (event, patient, analysed), head in zip(batch, heads, strict=True):
        await emit_first_report(w, stream, event, patient, analysed, head, failed)
    await w.priors.confirmed()  # faust acks the batch after this returns


async def emit_first_report(w: Wiring, stream: Any, event: Any, patient: str, analysed: Analysed,
                            head: dict[str, Any] | None, failed: set[str]) -> None:
    versions = w.scorer.versions if w.scorer else None
    try:
        out = first_report(analysed, w.s, reasoning_enabled=w.reasoner is not None, head=head,
                           model_versions=versions)
    except Exception as exc:
        log.error("report fault: %s", one_line(exc))
        await send_deadletter(w, event.value, exc, "report", event.message)
        failed.add(analysed.record.source_id)  # not reported: never a prior, never "already reported"
        return
    delivery = await w.reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers)
    # The table records an ECG only once its report and its analysis message are on the broker (acks=all), so a
    # redelivered message that finds itself in the table is skipped without risk of losing either; one that does
    # not rewrites both with the same bytes. The analysis message follows its report, never precedes it.
    await delivery
    analysis = await send_analysis(w, out.report_id, out.analysis, out.analysis_headers, event.message)
    sent = None
    if out.reasoning_priority is not None:
        request = {**analysed.source, "report_id": out.report_id, "priority": out.reasoning_priority,
                   "priors_used": out.priors_used, "head": head, "model_versions": versions}
        sent = await w.reasoning_requests.send(key=event.message.key, value=envelope.pack(analysed.record, request))
    await await_analysis(w, analysis, out.analysis, event.message)
    if sent is not None:
        await sent
    if analysed.prior_summary is not None and w.prior_summaries is not None:
        # Keyed by the hashed patient, canonical bytes: a redelivery rewrites the same record; on the broker before
        # the table records this ECG, so nothing is acknowledged before it is written.
        await (await w.prior_summaries.send(key=patient.encode(), value=prior_summaries.encode(analysed.prior_summary)))
    with event_context(stream, event):
        w.priors[patient] = without_ecgs(out.priors, failed) if failed else out.priors
    metrics.REPORTS.labels(out.status, out.triage).inc()
    metrics.INPUT_TO_REPORT_SECONDS.observe(max(0.0, time.time() - analysed.source["timestamp_ms"] / 1000))
    log.info("report %s v%d %s patient=%s", out.report_id, out.version, out.triage, patient)


async def reason_batch(w: Wiring, stream: Any, events: list[Any]) -> None:
    """Version 2 of flagged reports, served highest triage priority first, `reasoner_concurrency` at a time, each
    written as soon as it is answered; a timeout or outage yields an 'abandoned' version, never a lost report."""
    jobs, seen = [], set()
    for event in events:
        try:
            record, request = envelope.unpack(event.value)
        except Exception as exc:
            await send_deadletter(w, event.value, exc, "reason", event.message)
            continue
        rid = request["report_id"]
        if rid in (w.reasoned.get(event.message.key.decode()) or ()) or rid in seen:
            metrics.REDELIVERIES_SKIPPED.inc()  # a redelivered request, maybe in the same batch
            continue
        seen.add(rid)
        jobs.append((request["priority"], (record, request, event)))
    await run_by_priority(jobs, w.s.reasoner_concurrency, lambda job: reason_and_write(w, stream, *job))
    await w.reasoned.confirmed()


async def reason_and_write(w: Wiring, stream: Any, record: Any, request: dict[str, Any], event: Any) -> None:
    if request.get("kind") == "episode":
        await reason_episode(w, stream, record, request, event)
        return
    try:
        analysis, used = reanalyse(record, request["priors_used"])
        result = await areason_and_check(record, analysis, w.reasoner, w.s.reasoner_timeout_s)
        observe_reasoning(result)
        log.info("reasoning %s for report %s (%s)", result.status, request["report_id"], result.code or "ok")
        reasoning = to_report_dict(result)
        out = reasoned_report(record, analysis, used, request, reasoning, w.s,
                              review=review_reasoning(reasoning, result))
    except Exception as exc:  # a record the engine or the report builder cannot handle: its dead letter
        log.error("reasoned-report fault: %s", one_line(exc))
        await send_deadletter(w, event.value, exc, "reason", event.message)
        return
    delivery = await w.reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers)
    await delivery
    analysis_sent = await send_analysis(w, out.report_id, out.analysis, out.analysis_headers, event.message)
    await await_analysis(w, analysis_sent, out.analysis, event.message)
    patient = event.message.key.decode()
    with event_context(stream, event):  # no await between read and write: one task at a time updates it
        w.reasoned[patient] = [*(w.reasoned.get(patient) or ()), out.report_id][-REPORTED_KEPT:]
    metrics.REPORTS.labels(out.status, out.triage).inc()


async def reason_episode(w: Wiring, stream: Any, record: Any, request: dict[str, Any], event: Any) -> None:
    """ECG-R1 on a monitor episode's opening window. The reading goes back to the chunks topic under the stream's
    key, where the monitor stage (the one writer of episode reports) merges it; a timeout or outage goes back as an
    'abandoned' reading, as for strips."""
    key = request["stream"]
    try:
        analysis = episode_models.opening_analysis(record)
        result = await areason_and_check(record, analysis, w.reasoner, w.s.reasoner_timeout_s)
        observe_reasoning(result)
        log.info("reasoning %s for episode %s (%s)", result.status, request["report_id"], result.code or "ok")
        reasoning = to_report_dict(result)
        answer = {"report_id": request["report_id"], "stream": key, "reasoning": reasoning,
                  "review": review_reasoning(reasoning, result)}
        value = episode_models.REASONED + envelope.pack(record, answer)
    except Exception as exc:  # a window the engine cannot analyse: its dead letter
        log.error("episode reasoning fault: %s", one_line(exc))
        await send_deadletter(w, event.value, exc, "reason", event.message)
        return
    await (await w.chunks.send(key=key.encode(), value=value))
    with event_context(stream, event):
        w.reasoned[key] = [*(w.reasoned.get(key) or ()), request["report_id"]][-REPORTED_KEPT:]


async def monitor_one(w: Wiring, stream: Any, event: Any) -> None:
    """One event of the chunks topic (a chunk segment, the worker's own tick, or an ECG-R1 reading of an episode).
    Its reports are written and its table entry recorded before any chunk is acknowledged; chunks are acknowledged
    once no open window needs them."""
    if event.value.startswith(monitor.TICK):
        await monitor_tick(w, stream, event)
        event.ack()
        return
    if event.value.startswith(episode_models.REASONED):
        await monitor_reasoned(w, stream, event)
        event.ack()
        return
    try:
        record, meta = envelope.unpack(event.value)
        key = meta["stream"]
        assembler = w.assemblers.get(key)
        if assembler is None:
            assembler = w.assemblers[key] = monitor.assembler_for(w.s)
            metrics.STREAMS.set(len(w.assemblers))
        entry = w.latest.get(key) or w.monitor.get(key)
        result = monitor.on_chunk(w.s, entry, assembler, record, meta, event, now=time.time(), priors=w.prior_reader)
    except Exception as exc:  # a chunk the monitor cannot use: its dead letter; the stream goes on
        log.error("monitor fault: %s", one_line(exc))
        await send_deadletter(w, event.value, exc, "monitor", event.message)
        event.ack()
        return
    await _write_monitor(w, stream, event, key, result)
    if result.windows:
        metrics.CHUNK_TO_TREND_SECONDS.observe(max(0.0, time.time() - event.message.timestamp))


async def monitor_tick(w: Wiring, stream: Any, event: Any) -> None:
    """On each partition's tick: the streams of that partition that went quiet."""
    partition = event.message.partition
    keys = set(w.latest) | {key for key, entry in w.monitor.items() if entry}
    for key in keys:
        entry = w.latest.get(key) or w.monitor.get(key)
        if not entry or (entry.get("seen") or {}).get("partition") != partition:
            continue
        result = monitor.on_tick(w.s, entry, w.assemblers.get(key))
        if result.reports or result.release or result.windows or result.persist:
            await _write_monitor(w, stream, event, key, result)


async def monitor_reasoned(w: Wiring, stream: Any, event: Any) -> None:
    """An ECG-R1 reading of an episode's opening window: the episode report's next version, written once."""
    try:
        window, answer = envelope.unpack(event.value[len(episode_models.REASONED):])
        key = answer["stream"]
        entry = w.latest.get(key) or w.monitor.get(key)
        result = monitor.on_reasoned(w.s, entry, window, answer)
    except Exception as exc:
        log.error("episode reading fault: %s", one_line(exc))
        await send_deadletter(w, event.value, exc, "monitor", event.message)
        return
    if result.reports:
        await _write_monitor(w, stream, event, key, result)


async def _score_openings(w: Wiring, reports: list[Any]) -> list[Any]:
    """The step's versions with the encoder's head on their episode's opening window (the strip path's scorer, in
    its own thread): the opening version and any later one of the same episode in the same step."""
    if w.scorer is None:
        return reports
    heads: dict[str, Any] = {}
    for out in reports:
        if out.opening is None:
            continue
        try:
            analysis = episode_models.opening_analysis(out.opening)
            (heads[out.report_id],) = await w.scorer.score_async([Analysed(out.opening, {}, analysis, [], {})])
        except Exception as exc:  # the head is an addition: the episode report still goes out
            metrics.ENCODER_FAULTS.inc()
            log.error("encoder fault, episode %s goes out without head scores: %s", out.report_id, one_line(exc))
    return [monitor.with_head(w.s, out, heads[out.report_id], w.scorer.versions) if out.report_id in heads else out
            for out in reports]


async def _write_monitor(w: Wiring, stream: Any, event: Any, key: str, result: Any) -> None:
    # Trends are sent together and their acks awaited once, before the table and the chunks' acks move on.
    sent = [await w.trends.send(key=key.encode(), value=value) for value in result.trends]
    for future in sent:
        await future
    result.reports = await _score_openings(w, result.reports)
    for out in result.reports:
        await (await w.reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers))
        # Its analysis message after it, both on the broker before the table and the chunks' acks move on.
        analysis = await send_analysis(w, out.report_id, out.analysis, out.analysis_headers, event.message)
        await await_analysis(w, analysis, out.analysis, event.message)
        if out.opening is not None and out.models.get("reasoning") == "requested" and w.reasoner is not None:
            # After its report, before the table and the acks: a crash in between re-sends it, and the stage
            # merges one reading only.
            # Priority 1: after ischaemic-pattern strips, with the indeterminate ones (the reason agent's order).
            request = {"kind": "episode", "report_id": out.report_id, "stream": key, "priority": 1}
            await (await w.reasoning_requests.send(key=key.encode(), value=envelope.pack(out.opening, request)))
        metrics.EPISODE_EVENTS.labels(out.kind).inc()
        metrics.REPORTS.labels("preliminary", "monitor-episode").inc()
        log.info("episode report %s v%d %s", out.report_id, out.version, out.kind)
    result = monitor.with_models(result)
    w.latest[key] = result.state
    if result.persist:
        with event_context(stream, event):
            w.monitor[key] = result.state
        await w.monitor.confirmed()
    for token in result.release:
        token.ack()
