"""The outbox publisher against the real broker: each pending row is sent once per run, marked only after its ack,
sent again after a publisher that died between the ack and the mark, never while the broker is down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import select

from integrations.dashboard.store import (
    acknowledge,
    adjudicate,
    alert_detail,
    ingest_analysis,
    ingest_report,
    pending_count,
    publish_pending,
)
from integrations.dashboard.store.models import OutboxRow
from tests.integrations.dashboard_store.conftest import SECRET
from tests.support.records import ROOT

pytestmark = pytest.mark.kafka

# A publisher process that dies right after the broker acknowledged its sends and before it marks them sent.
DIES_BEFORE_MARK = """
import os, sys
from kafka import KafkaProducer
from integrations.dashboard.store import make_engine, publish_pending, session_factory

class DiesAfterFlush(KafkaProducer):
    def flush(self, timeout=None):
        super().flush(timeout)
        os._exit(3)

producer = DiesAfterFlush(bootstrap_servers=sys.argv[2], acks="all")
publish_pending(session_factory(make_engine(sys.argv[1])), producer, sys.argv[3])
"""


@pytest.fixture
def topic(kafka_bootstrap):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"t-{uuid.uuid4().hex[:8]}.twiwatch.adjudications"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="twiwatch-test-outbox")
    admin.create_topics([NewTopic(name, 1, 1)])
    try:
        yield name
    finally:
        try:
            admin.delete_topics([name])
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        admin.close()


def _consume(bootstrap: str, topic: str, n: int) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000, group_id=None)
    try:
        out = []
        for record in consumer:
            out.append(record)
            if len(out) >= n:
                break
        return out
    finally:
        consumer.close()


def test_publish_survives_restart_before_ack_and_sends_once_per_run(store, pairs, reviewer, kafka_bootstrap, topic):
    from kafka import KafkaProducer

    isch, sec = pairs["ischemic"], pairs["secondary"]
    with store.session() as s:
        for p in (isch, sec):
            ingest_report(s, p.report, p.headers, p.broker_ts_ms)
            ingest_analysis(s, p.analysis)
        s.commit()
        first = adjudicate(s, isch.report_id, reviewer, alert_detail(s, isch.report_id).row.row_version,
                           "agree-ischemic", None, "", "x", identity_secret=SECRET)
        s.commit()

    child = subprocess.run([sys.executable, "-c", DIES_BEFORE_MARK, store.url, kafka_bootstrap, topic],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert child.returncode == 3, child.stderr[-2000:]
    with store.session() as s:
        assert pending_count(s) == 1  # acknowledged by the broker, but the publisher died before marking it

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        assert publish_pending(store.factory, producer, topic) == 1  # the restarted publisher sends it again
        assert publish_pending(store.factory, producer, topic) == 0  # and only once
        with store.session() as s:
            second = acknowledge(s, sec.report_id, reviewer, alert_detail(s, sec.report_id).row.row_version, "x",
                                 identity_secret=SECRET)
            s.commit()
        assert publish_pending(store.factory, producer, topic) == 1  # only the new row
        assert publish_pending(store.factory, producer, topic) == 0
    finally:
        producer.close()

    records = _consume(kafka_bootstrap, topic, 3)
    values = [json.loads(r.value) for r in records]
    assert [v["action_id"] for v in values] == [first.action_id, first.action_id, second.action_id]
    assert all(v["research_only"] is True for v in values)
    assert [r.key.decode() for r in records] == [isch.report_id, isch.report_id, sec.report_id]
    assert all(("twiwatch.research-only", b"true") in r.headers for r in records)
    deduplicated = {v["action_id"]: v for v in values}  # what a consumer keeps
    assert [v["action"] for v in deduplicated.values()] == ["adjudicate", "acknowledge"]
    with store.session() as s:
        assert all(r.sent_at is not None for r in s.scalars(select(OutboxRow)))


def test_nothing_is_marked_while_the_broker_is_down(store, pairs, reviewer):
    from kafka import KafkaProducer

    p = pairs["ischemic"]
    with store.session() as s:
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
        acknowledge(s, p.report_id, reviewer, alert_detail(s, p.report_id).row.row_version, "x",
                    identity_secret=SECRET)
        s.commit()
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:9", acks="all", api_version=(2, 5), max_block_ms=1000,
                             request_timeout_ms=1000, retries=0)
    try:
        assert publish_pending(store.factory, producer, "nowhere") == 0
    finally:
        producer.close(timeout=1)
    with store.session() as s:
        assert pending_count(s) == 1
