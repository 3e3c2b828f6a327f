"""The faust-streaming worker: the stateful stream from raw ECG messages to research-only DiagnosticReports.

Stage 1 (`decode`): both raw topics -> decode + validate -> re-key by hashed patient -> internal by-patient topic;
failures -> dead-letter topic with the reason. Stage 2 (`analyse`): by-patient topic -> per-patient priors table
(changelog-backed, survives restarts) -> engine -> FHIR Bundle -> reports topic.

Delivery: faust commits an offset only after the producer has flushed what the event sent (at-least-once), or inside
a Kafka transaction with processing_guarantee=exactly_once. A patient's ECGs share a partition, and an agent handles
a partition's events in order, so each patient's ECGs are analysed in order.
"""
from __future__ import annotations

import logging
import time
import traceback

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.errors import InvalidRecord
from integrations.identity import patient_key
from stream import envelope, metrics
from stream.config import Settings
from stream.deadletter import deadletter_record
from stream.pipeline import analyse_record, decode_message
from stream.topics import HEADROOM, by_patient_topic

log = logging.getLogger("twiwatch.worker")


def build_app(s: Settings) -> faust.App:
    limit = s.max_message_bytes + HEADROOM
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
        web_bind="127.0.0.1",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )
    raw = app.topic(s.topic_hl7_raw, s.topic_fhir_raw, key_serializer="raw", value_serializer="raw",
                    internal=False)
    by_patient = app.topic(by_patient_topic(s), key_serializer="raw", value_serializer="raw",
                           partitions=s.partitions, internal=True)
    reports = app.topic(s.topic_reports, key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(s.topic_deadletter, key_serializer="raw", value_serializer="raw")
    # Keys are the hashed patient (bytes, faust's default raw key serializer); values JSON.
    priors = app.Table("priors", default=None, partitions=s.partitions)
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
            msg = event.message
            metrics.MESSAGES_IN.labels(msg.topic).inc()
            raw_bytes = event.value
            try:
                if len(raw_bytes) > s.max_message_bytes:
                    raise InvalidRecord(f"message of {len(raw_bytes)} bytes over the {s.max_message_bytes}-byte limit",
                                        "too-large")
                fmt = "hl7" if msg.topic == s.topic_hl7_raw else "fhir"
                record = decode_message(raw_bytes, fmt, s)
            except Exception as exc:  # every failure becomes a dead letter; the worker keeps going
                if not isinstance(exc, InvalidRecord):
                    log.error("decoder fault: %s", "".join(traceback.format_exception_only(exc)).strip())
                await send_deadletter(raw_bytes, exc, "decode", msg)
                continue
            source = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                      "timestamp_ms": int(round(msg.timestamp * 1000)), "format": fmt}
            key = patient_key(record.patient_id, secret).encode()
            await by_patient.send(key=key, value=envelope.pack(record, source))

    @app.agent(by_patient)
    async def analyse(stream):
        async for event in stream.events():
            msg = event.message
            try:
                record, source = envelope.unpack(event.value)
                out = analyse_record(record, priors.get(msg.key), source, s)
            except Exception as exc:
                log.error("analysis fault: %s", "".join(traceback.format_exception_only(exc)).strip())
                await send_deadletter(event.value, exc, "analyse", msg)
                continue
            await reports.send(key=out.report_id.encode(), value=out.value, headers=out.headers)
            priors[msg.key] = out.priors
            metrics.REPORTS.labels(out.status, out.triage).inc()
            metrics.INPUT_TO_REPORT_SECONDS.observe(max(0.0, time.time() - source["timestamp_ms"] / 1000))
            log.info("report %s v%d %s patient=%s", out.report_id, out.version, out.triage, msg.key.decode())

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


def run_worker(s: Settings, loglevel: str = "info") -> None:
    from faust.worker import Worker

    app = build_app(s)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
