"""The faust-streaming worker: the stateful stream from raw ECG messages to research-only DiagnosticReports.

Stage 1 (`decode`): both raw topics -> decode + validate -> re-key by hashed patient -> internal by-patient topic;
failures -> dead-letter topic with the reason. Stage 2 (`analyse`): by-patient topic -> per-patient priors table
(changelog-backed, survives restarts) -> engine -> FHIR Bundle -> reports topic.

Delivery: at-least-once. faust commits an offset only after the producer has flushed what the event sent; the analyse
stage writes a report, waits for the broker's ack, and only then records the ECG in the patient's table (its recent
reported source ids, beyond the priors), so a redelivered message that is already in the table is skipped. A stage
that cannot write a report or the dead letter replacing it exits without committing (`die`): faust would otherwise
ack the whole batch. What remains is a narrow window (killed after the report's ack, before the table's changelog
write) in which a redelivery writes a byte-identical copy of the report; consumers are idempotent on (identifier,
versionId). faust's `exactly_once` (TWIWATCH_EXACTLY_ONCE) is available but
off by default: under SIGKILL in tests/test_pipeline_kafka.py it still exposed second copies to read_committed
consumers. A patient's ECGs share a partition and an agent handles a partition in order, so they are analysed in order.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from collections.abc import Awaitable
from contextlib import contextmanager
from typing import NoReturn

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.errors import InvalidRecord
from integrations.identity import patient_key
from stream import envelope, metrics
from stream.config import Settings
from stream.deadletter import deadletter_record
from engine.reasoner.orchestrate import areason_and_check, to_report_dict
from stream.pipeline import (
    REPORTED_KEPT, already_reported, analyse_only, decode_message, first_report, reanalyse, reasoned_report,
    without_ecgs,
)
from stream.reasoning import make_reasoner, observe_reasoning, run_by_priority
from stream.scoring import make_scorer
from stream.topics import HEADROOM, by_patient_topic

log = logging.getLogger("twiwatch.worker")


def build_app(s: Settings) -> faust.App:
    limit = s.max_message_bytes + HEADROOM
    s.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.bootstrap}",
        store="memory://",  # state is rebuilt from the compacted changelog topic on start
        datadir=str(s.data_dir),
        processing_guarantee="exactly_once" if s.exactly_once else "at_least_once",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication,
        topic_allow_declare=True,
        producer_max_request_size=limit,
        producer_acks=-1,
        consumer_max_fetch_size=limit,
        consumer_auto_offset_reset="earliest",
        web_port=s.worker_web_port,
        web_host="127.0.0.1",
        web_bind=s.worker_web_bind,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        # A killed worker's partitions move to its replacement after this, not after the 60 s default.
        broker_session_timeout=s.worker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.worker_session_timeout_s / 3),
        stream_wait_empty=False,
    )
    raw = app.topic(s.topic_hl7_raw, s.topic_fhir_raw, key_serializer="raw", value_serializer="raw",
                    internal=False)
    by_patient = app.topic(by_patient_topic(s), key_serializer="raw", value_serializer="raw",
                           partitions=s.partitions, internal=True)
    reports = app.topic(s.topic_reports, key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(s.topic_deadletter, key_serializer="raw", value_serializer="raw")
    # Keys: the hashed patient as str (the changelog serialises keys as JSON, so bytes would not read back).
    priors = app.Table("priors", default=None, partitions=s.partitions, key_type=str)
    # Per patient (the request's key), the latest report ids whose reasoned version is written: bounded like the
    # priors, where one entry per report id would grow for ever.
    reasoned = app.Table("reasoned", default=None, partitions=s.partitions, key_type=str)
    reasoning_requests = app.topic(s.topic_reasoning, key_serializer="raw", value_serializer="raw",
                                   partitions=s.partitions, internal=True)
    reasoner = make_reasoner(s)
    secret = s.patient_hash_secret.get_secret_value()

    async def send_deadletter(raw_bytes: bytes, exc: BaseException, stage: str, msg) -> None:
        code = getattr(exc, "code", type(exc).__name__)
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        value, headers = deadletter_record(
            raw_bytes, reason=reason, error_class=type(exc).__name__, code=code, source_topic=msg.topic,
            partition=msg.partition, offset=msg.offset, timestamp_ms=int(msg.timestamp * 1000),
            max_message_bytes=s.max_message_bytes,
        )
        await deadletters.send(key=msg.key, value=value, headers=headers)
        metrics.DEADLETTERS.labels(stage, code).inc()
        log.warning("dead letter stage=%s topic=%s partition=%s offset=%s code=%s: %s",
                    stage, msg.topic, msg.partition, msg.offset, code, reason)

    @app.agent(raw)
    async def decode(stream):
        async for event in stream.events():
            await guarded("decode", decode_one(event))

    async def decode_one(event) -> None:
        msg = event.message
        metrics.MESSAGES_IN.labels(msg.topic).inc()
        raw_bytes = event.value
        try:
            if len(raw_bytes) > s.max_message_bytes:
                raise InvalidRecord(f"message of {len(raw_bytes)} bytes over the {s.max_message_bytes}-byte limit",
                                    "too-large")
            fmt = "hl7" if msg.topic == s.topic_hl7_raw else "fhir"
            record = decode_message(raw_bytes, fmt, s)
            source = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                      "timestamp_ms": int(round(msg.timestamp * 1000)), "format": fmt}
            value = envelope.pack(record, source)
            if len(value) > s.max_message_bytes:
                # float32 samples can outgrow the text they came from (about 13 minutes of 12 leads at 500 Hz)
                raise InvalidRecord(f"decoded record is {len(value)} bytes as float32 samples, over the "
                                    f"{s.max_message_bytes}-byte limit of the internal hop; send strips of at most "
                                    f"a few minutes (only the last 60 s are analysed)", "too-large-decoded")
        except Exception as exc:  # every failure becomes a dead letter; the worker keeps going
            if not isinstance(exc, InvalidRecord):
                log.error("decoder fault: %s", "".join(traceback.format_exception_only(exc)).strip())
            await send_deadletter(raw_bytes, exc, "decode", msg)
            return
        key = patient_key(record.patient_id, secret, record.source_id, system=record.patient_system)
        await by_patient.send(key=key.encode(), value=value)

    async def guarded(stage: str, work: Awaitable[None]) -> None:
        """One event's or batch's processing, from which nothing may escape into faust (it would ack the batch)."""
        try:
            await work
        except asyncio.CancelledError:
            await stopped_mid_batch(stage)
        except BaseException as exc:  # noqa: BLE001 - see die()
            die(stage, exc)

    async def stopped_mid_batch(stage: str) -> None:
        """The worker is stopping (SIGTERM) inside a batch. faust would ack the whole batch on the way out; instead
        what was sent (reports, table changelog writes) is flushed and the process ends without committing, so the
        rest of the batch is redelivered and the ECGs already reported are recognised as such."""
        if not app.should_stop or app.crashed:  # a crash is not a stop: exit non-zero, uncommitted
            die(stage, asyncio.CancelledError())
        try:
            await asyncio.wait_for(app.producer.flush(), timeout=10)
        except BaseException as exc:  # noqa: BLE001 - exiting either way; say whether the flush completed
            log.warning("%s stage: flush on stop did not complete (%s)", stage, type(exc).__name__)
        log.info("%s stage stopped mid-batch: sent output flushed, offsets not committed, the rest is redelivered",
                 stage)
        logging.shutdown()
        os._exit(0)

    scorer = make_scorer(s)

    @app.agent(by_patient)
    async def analyse(stream):
        """Micro-batches (encoder_max_batch / encoder_max_wait_ms) across partitions. Within a batch a patient's ECGs
        stay in order and each sees the ones before it as priors; faust acks the batch's offsets only after the
        loop body, i.e. after every report in it is on the broker."""
        async for events in stream.take_events(s.encoder_max_batch, within=s.encoder_max_wait_ms / 1000):
            await guarded("analyse", analyse_batch(stream, events))

    async def analyse_batch(stream, events) -> None:
        batch, pending_state = [], {}
        for event in events:
            msg = event.message
            try:
                record, source = envelope.unpack(event.value)
                patient = msg.key.decode()
                state = pending_state[patient] if patient in pending_state else priors.get(patient)
                if already_reported(state, record.source_id):
                    metrics.REDELIVERIES_SKIPPED.inc()
                    continue
                analysed = analyse_only(record, state, source, s)
            except Exception as exc:
                log.error("analysis fault: %s", "".join(traceback.format_exception_only(exc)).strip())
                await send_deadletter(event.value, exc, "analyse", msg)
                continue
            pending_state[patient] = analysed.new_state
            batch.append((event, patient, analysed))
        heads = [None] * len(batch)
        if scorer and batch:
            try:
                heads = await scorer.score_async([a for _, _, a in batch])
            except Exception as exc:  # the head is an addition: the measured criteria still go out
                metrics.ENCODER_FAULTS.inc()
                log.error("encoder fault, %d report(s) go out without head scores: %s", len(batch),
                          "".join(traceback.format_exception_only(exc)).strip())
        failed: set[str] = set()
        for (event, patient, analysed), head in zip(batch, heads):
            await emit_first_report(stream, event, patient, analysed, head, failed)

    async def emit_first_report(stream, event, patient, analysed, head, failed: set[str]) -> None:
        try:
            out = first_report(analysed, s, reasoning_enabled=reasoner is not None, head=head,
                               model_versions=scorer.versions if scorer else None)
        except Exception as exc:
            log.error("report fault: %s", "".join(traceback.format_exception_only(exc)).strip())
            await send_deadletter(event.value, exc, "report", event.message)
            failed.add(analysed.record.source_id)  # not reported: never a prior, never "already reported"
            return
        delivery = await reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers)
        # The table records an ECG only once its report is on the broker (acks=all), so a redelivered
        # message that finds itself in the table is skipped without risk of losing its report.
        await delivery
        if out.reasoning_priority is not None:
            request = {**analysed.source, "report_id": out.report_id, "priority": out.reasoning_priority,
                       "priors_used": out.priors_used, "head": head,
                       "model_versions": scorer.versions if scorer else None}
            await (await reasoning_requests.send(key=event.message.key, value=envelope.pack(analysed.record, request)))
        with event_context(stream, event):
            priors[patient] = without_ecgs(out.priors, failed) if failed else out.priors
        metrics.REPORTS.labels(out.status, out.triage).inc()
        metrics.INPUT_TO_REPORT_SECONDS.observe(max(0.0, time.time() - analysed.source["timestamp_ms"] / 1000))
        log.info("report %s v%d %s patient=%s", out.report_id, out.version, out.triage, patient)

    @app.agent(reasoning_requests)
    async def reason(stream):
        """Version 2 of flagged reports. Up to reasoner_queue requests are taken at once and served highest triage
        priority first, reasoner_concurrency at a time, each written as soon as it is answered; a timeout or outage
        yields an 'abandoned' version, never a lost or blocked report."""
        async for events in stream.take_events(s.reasoner_queue, within=0.05):
            await guarded("reason", reason_batch(stream, events))

    async def reason_batch(stream, events) -> None:
        jobs, seen = [], set()
        for event in events:
            try:
                record, request = envelope.unpack(event.value)
            except Exception as exc:
                await send_deadletter(event.value, exc, "reason", event.message)
                continue
            rid = request["report_id"]
            if rid in (reasoned.get(event.message.key.decode()) or ()) or rid in seen:
                metrics.REDELIVERIES_SKIPPED.inc()  # a redelivered request, maybe in the same batch
                continue
            seen.add(rid)
            jobs.append((request["priority"], (record, request, event)))
        await run_by_priority(jobs, s.reasoner_concurrency, lambda job: reason_and_write(stream, *job))

    async def reason_and_write(stream, record, request, event) -> None:
        try:
            out = await reason_one(record, request)
        except Exception as exc:  # a record the engine or the report builder cannot handle: its dead letter
            log.error("reasoned-report fault: %s", "".join(traceback.format_exception_only(exc)).strip())
            await send_deadletter(event.value, exc, "reason", event.message)
            return
        delivery = await reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers)
        await delivery
        patient = event.message.key.decode()
        with event_context(stream, event):  # no await between read and write: one task at a time updates it
            reasoned[patient] = [*(reasoned.get(patient) or ()), out.report_id][-REPORTED_KEPT:]
        metrics.REPORTS.labels(out.status, out.triage).inc()

    async def reason_one(record, request):
        analysis, used = reanalyse(record, request["priors_used"])
        result = await areason_and_check(record, analysis, reasoner, s.reasoner_timeout_s)
        observe_reasoning(result)
        log.info("reasoning %s for report %s (%s)", result.status, request["report_id"], result.code or "ok")
        return reasoned_report(record, analysis, used, request, to_report_dict(result), s)

    @app.page("/healthz")
    async def healthz(web, request):
        # Ready = partitions assigned and the priors table restored from its changelog.
        recovered = app.tables.recovery.completed.is_set()
        ok = recovered and not app.rebalancing and not app.should_stop
        body = {"status": "ok" if ok else "starting", "app": s.app_id, "recovered": recovered,
                "rebalancing": bool(app.rebalancing)}
        return web.json(body, status=200 if ok else 503)

    @app.page("/metrics")
    async def prometheus(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def die(stage: str, exc: BaseException) -> NoReturn:
    """A stage that cannot write its output (a report, or the dead letter that replaces it) ends the process.
    faust acks a batch's events in a `finally` (also when the loop body raises or is cancelled), so carrying on
    would commit offsets past messages that produced nothing; exiting now leaves them uncommitted, and they are
    redelivered to whichever worker takes the partitions. Redelivered ECGs already reported are skipped."""
    log.critical("%s stage stopped before its output was written (%s); exiting without committing, the messages "
                 "will be redelivered", stage, "".join(traceback.format_exception_only(exc)).strip())
    logging.shutdown()
    os._exit(70)


@contextmanager
def event_context(stream, event):
    """faust logs a table write to the changelog partition of the stream's *current* event. In a take_events batch
    that must be the written ECG's event (else its state is restored to another partition's owner), and afterwards
    the stream's own current event (the next one, already buffered in the background) must be put back."""
    saved = stream.current_event
    stream._set_current_event(event)
    try:
        yield
    finally:
        stream._set_current_event(saved)


def run_worker(s: Settings, loglevel: str = "info") -> None:
    from faust.worker import Worker

    app = build_app(s)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
