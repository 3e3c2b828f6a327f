"""The worker's composition root: the faust app, its topics, tables and agents, declared once.

decode: raw topics -> decode + validate (integrations) -> strips re-keyed by hashed patient -> by-patient topic;
        monitor chunks keyed by their hashed stream -> chunks topic; failures -> dead-letter topic with the reason.
analyse: by-patient topic -> per-patient priors table (changelog-backed) -> engine -> FHIR Bundle -> reports topic;
         a patient's newest 12-lead ECG also -> its summary on the compacted prior-summaries topic, which every
         worker reads whole (stream.monitor.prior_summaries) for monitor baselines.
reason: flagged new TWIs -> ECG-R1 -> version 2 of their reports; 12-lead monitor episodes -> ECG-R1 -> the reading
        back onto the chunks topic, where the monitor stage writes it into the episode's report.
beside every report version, its analysis message (signal, fiducials, prior, location) on the analysis topic.
monitor: chunks of each bed -> epoch windows -> trend points -> episodes -> episode reports (stream.monitor).
What each agent does lives in `stream.handlers`; when offsets may be committed lives in `stream.delivery`. A patient's
ECGs share a partition and an agent handles a partition in order, so they are analysed in order.
"""
from __future__ import annotations

import time

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import handlers
from stream.config import WorkerSettings
from stream.delivery import guarded
from stream.monitor.prior_summaries import PriorReader
from stream.monitor.stage import TICK
from stream.reasoning import make_reasoner
from stream.scoring import make_scorer
from stream.tables import DurableTable
from stream.topics import HEADROOM, by_patient_topic


def build_app(s: WorkerSettings) -> faust.App:
    limit = s.max_message_bytes + HEADROOM
    s.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.bootstrap}",
        store="memory://",  # state is rebuilt from the compacted changelog topic on start
        Table=DurableTable,  # agents await their changelog writes before acknowledging (stream.tables)
        datadir=str(s.data_dir),
        processing_guarantee="exactly_once" if s.exactly_once else "at_least_once",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication,
        topic_allow_declare=True,
        producer_max_request_size=limit,
        producer_linger=s.worker_producer_linger_ms / 1000,
        producer_max_batch_size=1024 * 1024,
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

    def raw_topic(*names: str, **options) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", **options)

    raw = raw_topic(s.topic_hl7_raw, s.topic_fhir_raw, internal=False)
    # Keys of tables: the hashed patient as str (the changelog serialises keys as JSON; bytes would not read back).
    w = handlers.Wiring(
        s=s,
        by_patient=raw_topic(by_patient_topic(s), partitions=s.partitions, internal=True),
        chunks=raw_topic(s.topic_chunks),
        trends=raw_topic(s.topic_trends),
        reports=raw_topic(s.topic_reports),
        deadletters=raw_topic(s.topic_deadletter),
        reasoning_requests=raw_topic(s.topic_reasoning, partitions=s.partitions, internal=True),
        priors=app.Table("priors", default=None, partitions=s.partitions, key_type=str),
        reasoned=app.Table("reasoned", default=None, partitions=s.partitions, key_type=str),
        reasoner=make_reasoner(s),
        scorer=make_scorer(s),
        monitor=app.Table("monitor", default=None, partitions=s.partitions, key_type=str),
        analysis=raw_topic(s.topic_analysis),
        prior_summaries=raw_topic(s.topic_prior_summaries),
        prior_reader=PriorReader(s.bootstrap, s.topic_prior_summaries, limit),
    )
    chunks = w.chunks

    @app.agent(raw)
    async def decode(stream):
        async for event in stream.events():
            await guarded(app, "decode", handlers.decode_one(w, event))

    @app.agent(w.by_patient)
    async def analyse(stream):
        # faust acks a batch's offsets only after the loop body, i.e. after every report in it is on the broker.
        async for events in stream.take_events(s.encoder_max_batch, within=s.encoder_max_wait_ms / 1000):
            await guarded(app, "analyse", handlers.analyse_batch(w, stream, events))

    @app.agent(w.reasoning_requests)
    async def reason(stream):
        async for events in stream.take_events(s.reasoner_queue, within=0.05):
            await guarded(app, "reason", handlers.reason_batch(w, stream, events))

    @app.agent(chunks)
    async def monitor(stream):
        # Acknowledged by hand (stream.monitor.stage): the committed offset never passes a chunk an open window needs.
        await w.prior_reader.ready.wait()  # a patient's baseline starts with their prior, once the priors are read
        async for event in stream.noack().events():
            await guarded(app, "monitor", handlers.monitor_one(w, stream, event))

    @app.task
    async def read_prior_summaries():
        await w.prior_reader.run()

    @app.timer(s.monitor_tick_s, on_leader=True)
    async def tick():
        # A tick on each partition of the chunks topic lets quiet streams be handled inside stream processing,
        # where table writes go to the right changelog partition.
        for partition in range(s.partitions):
            await chunks.send(value=TICK + str(time.time()).encode(), partition=partition)

    @app.page("/healthz")
    async def healthz(web, request):
        # Ready = partitions assigned, the tables restored from their changelogs and the prior summaries read up to
        # where the topic ended at start (a monitor stream starting earlier would miss its patient's prior).
        recovered = app.tables.recovery.completed.is_set()
        priors = w.prior_reader.ready.is_set()
        ok = recovered and priors and not app.rebalancing and not app.should_stop
        body = {"status": "ok" if ok else "starting", "app": s.app_id, "recovered": recovered,
                "prior_summaries": len(w.prior_reader.summaries) if priors else None,
                "rebalancing": bool(app.rebalancing)}
        return web.json(body, status=200 if ok else 503)

    @app.page("/metrics")
    async def prometheus(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
