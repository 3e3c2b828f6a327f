"""The dashboard beside the real worker: real ECGs replayed as HL7 v2 to the faust worker, whose reports (and, where
the worker publishes them, analysis messages) the dashboard consumes. The serial PTB-XL ECGs of patient 641: 266
(no TWI group, not an alert) then 281 (a new high-lateral TWI against 266)."""
from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from integrations.identity import report_id
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import wait_for
from stream.devtools.replay import messages, send_all
from stream.producer import make_producer
from tests.dashboard.conftest import login, wait_for_alert

pytestmark = pytest.mark.kafka


def _messages_on(s, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values()) - sum(consumer.beginning_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def test_replayed_ecgs_reach_the_queue_through_the_worker(dashboard, ptbxl):
    s = dashboard.s
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    worker = start_worker(s, log)
    producer = make_producer(s)
    try:
        wait_healthy(s, worker)
        sent = list(messages([ptbxl["266"], ptbxl["281"]], "hl7", s))
        send_all(producer, sent[:1], s)
        assert len(wait_for(s, 1, 0, 120).reports) == 1  # the prior is in the patient's table before 281 comes
        send_all(producer, sent[1:], s)
        started = time.monotonic()
        client = login(dashboard.url, "rev1", dashboard.passwords["rev1"])
        rid_281 = report_id(sent[1].source_id)
        item = wait_for_alert(client, rid_281, timeout_s=180)
        waited = time.monotonic() - started
    finally:
        producer.close()
        stop_worker(worker)
    assert item["mrn"] == "ptbxl-641" and item["class"].startswith("secondary")
    ids = [i["id"] for i in client.get("/api/alerts").json()["items"]]
    assert ids == [rid_281]  # 266 has no TWI group: browsable, not queued
    page = client.get(f"/alerts/{rid_281}")
    assert page.status_code == 200 and "RESEARCH USE ONLY" in page.text
    if _messages_on(s, s.topic_analysis):
        # A worker that publishes analysis messages (docs/SPEC.md §13.1): the novelty and the drawn ECGs with it.
        item = wait_for_alert(client, rid_281)
        assert item["novelty"] == "new"
        assert client.get(f"/alerts/{rid_281}").text.count('class="ecg"') == 2
    assert report_id(sent[0].source_id) != rid_281 and waited < 180
