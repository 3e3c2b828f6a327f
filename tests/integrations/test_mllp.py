"""MLLP bridge tests, driven by a third-party client (python-hl7's hl7.client.MLLPClient).

Without Kafka: framing, ACK codes, ordering, concurrency, health/metrics, a dead broker (real kafka-python
producer pointed at a closed port). With Kafka (@pytest.mark.kafka): AA only once the message is in the topic,
read back byte for byte; refused messages in the dead-letter topic.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import hl7
import pytest
from hl7.client import MLLPClient
from test_hl7_codec import PATIENT_MARK, join, message, segments, set_field

from integrations.hl7.mllp_bridge import MllpBridge
from integrations.hl7.mllp_framing import EB, SB, Frame, FrameReader, Oversize, frame, unframe
from integrations.identity import patient_key

SECRET = "test-secret"


# --- the deframer ----------------------------------------------------------------------------------------

def test_frame_reader_across_chunks_and_stray_bytes():
    a, b = b"MSH|a\rPID|1\r", b"MSH|b\r"
    stream = b"junk" + frame(a) + frame(b) + b"\r\n" + frame(a)
    for size in (1, 2, 3, 7, 64, len(stream)):
        r = FrameReader(1024)
        events = [e for i in range(0, len(stream), size) for e in r.feed(stream[i:i + size])]
        assert events == [Frame(a), Frame(b), Frame(a)]
        assert r.discarded == 4 + 2  # "junk" and the extra CR LF; the CR after each EB is expected
        assert not r.in_frame


def test_a_frame_cut_off_by_a_new_start_byte_is_dropped_not_glued_to_the_next():
    cut, whole = b"MSH|cut-off\rOBX|1|NA|", b"MSH|complete\rPID|1\r"
    stream = SB + cut + frame(whole)
    for size in (1, 5, len(stream)):
        r = FrameReader(1024)
        events = [e for i in range(0, len(stream), size) for e in r.feed(stream[i:i + size])]
        assert events == [Frame(whole)] and r.abandoned == 1 and not r.in_frame


def test_frame_reader_without_trailing_cr():
    r = FrameReader(1024)
    assert r.feed(SB + b"MSH|x" + EB + SB + b"MSH|y" + EB) == [Frame(b"MSH|x"), Frame(b"MSH|y")]


def test_frame_reader_oversize_is_streamed_in_bounded_memory():
    limit, keep = 1000, 300
    body = bytes(range(256)) * 40  # 10,240 bytes, no SB/EB inside? (0x0b and 0x1c are in range(256))
    body = body.replace(SB, b"x").replace(EB, b"y")
    r = FrameReader(limit, keep_prefix=keep)
    events = []
    peak = 0
    data = frame(body) + frame(b"MSH|small")
    for i in range(0, len(data), 97):
        events += r.feed(data[i:i + 97])
        peak = max(peak, len(r._buf))
    assert peak <= limit
    big, small = events
    assert isinstance(big, Oversize) and big.size == len(body)
    assert big.sha256 == hashlib.sha256(body).hexdigest() and big.prefix == body[:keep]
    assert small == Frame(b"MSH|small")


def test_unframe():
    assert unframe(frame(b"MSH|1")) == b"MSH|1"
    with pytest.raises(ValueError):
        unframe(b"MSH|1")


# --- a bridge in a background event loop, so blocking third-party clients can talk to it ---------------------

class Running:
    def __init__(self, bridge: MllpBridge) -> None:
        self.bridge = bridge
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.bridge.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.bridge.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def send(self, raw: bytes) -> hl7.Message:
        with MLLPClient("127.0.0.1", self.bridge.port) as client:
            return ack_of(client.send_message(raw))


def ack_of(reply: bytes) -> hl7.Message:
    return hl7.parse(unframe(reply).decode("utf-8"))


def msa(ack: hl7.Message) -> tuple[str, str, str]:
    m = ack.segment("MSA")
    return str(m[1]), str(m[2]), str(m[3]) if len(m) > 3 else ""


class Recorder:
    """In-memory produce/deadletter callbacks (the Kafka versions are tested below with a real broker)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.produced: list[tuple[bytes, bytes | None]] = []
        self.dead: list[dict] = []
        self.fail = fail
        self.lock = threading.Lock()

    def produce(self, raw: bytes, key: bytes | None) -> None:
        if self.fail:
            raise self.fail
        with self.lock:
            self.produced.append((raw, key))

    def deadletter(self, raw: bytes, reason: str, error_class: str, *, code: str, original_size: int,
                   original_sha256: str) -> None:
        if self.fail:
            raise self.fail
        with self.lock:
            self.dead.append(dict(raw=raw, reason=reason, error_class=error_class, code=code,
                                  size=original_size, sha256=original_sha256))


def key_for(record) -> bytes:
    return patient_key(record.patient_id, SECRET, record.source_id, system=record.patient_system).encode()


def make_bridge(rec: Recorder, **kw) -> MllpBridge:
    kw.setdefault("max_message_bytes", 16 * 1024 * 1024)
    return MllpBridge("127.0.0.1", 0, rec.produce, rec.deadletter, key_for, **kw)


@pytest.fixture(scope="module")
def good() -> bytes:
    return message("ludb/data/1", control_id="MLLP-1")


def test_good_message_is_acked_after_produce(good):
    rec = Recorder()
    with Running(make_bridge(rec)) as srv:
        ack = srv.send(good)
    assert msa(ack)[:2] == ("AA", "MLLP-1")
    assert rec.produced == [(good, patient_key(PATIENT_MARK, SECRET, system="").encode())]
    assert PATIENT_MARK.encode() not in rec.produced[0][1]
    assert rec.dead == []


def test_bad_content_is_AE_and_dead_lettered(good):
    segs = segments(good)
    i = next(k for k, s in enumerate(segs) if s.startswith(b"OBX|1|"))
    f = segs[i].split(b"|")
    f[5] = f[5].replace(b"^", b"^abc^", 1)
    segs[i] = b"|".join(f)
    bad = join(segs)
    rec = Recorder()
    with Running(make_bridge(rec)) as srv:
        ack = srv.send(bad)
    code, control, reason = msa(ack)
    assert (code, control) == ("AE", "MLLP-1") and "not a number" in reason
    assert str(ack.segment("ERR")[3][0][0]) == "102"
    assert rec.produced == []
    assert rec.dead[0]["raw"] == bad and rec.dead[0]["code"] == "samples"
    assert rec.dead[0]["error_class"] == "DecodeError" and rec.dead[0]["size"] == len(bad)


@pytest.mark.parametrize("raw, code", [
    (b"this is not an HL7 message\r", "not-hl7"),
    (b"MSH|^^\\&|broken\r", "msh"),
    (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01^ADT_A01|X-1|P|2.6\rPID|||1\r", "message-type"),
])
def test_refused_outright_is_AR(raw, code):
    rec = Recorder()
    with Running(make_bridge(rec)) as srv:
        ack = srv.send(raw)
    assert msa(ack)[0] == "AR"
    assert rec.dead[0]["code"] == code and rec.produced == []
    if code == "message-type":
        assert msa(ack)[1] == "X-1"  # readable MSH: control id echoed
    else:
        assert msa(ack)[1] == ""  # nothing to echo


def test_oversize_is_AR_and_connection_keeps_working(good):
    rec = Recorder()
    limit = 100 * 1024  # the real message is ~215 KiB
    with Running(make_bridge(rec, max_message_bytes=limit)) as srv:
        with MLLPClient("127.0.0.1", srv.bridge.port) as client:
            big = ack_of(client.send_message(good))
            small_msg = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|S-2|P|2.6\r"
            after = ack_of(client.send_message(small_msg))
    code, control, reason = msa(big)
    assert code == "AR" and control == "MLLP-1" and "too large" in reason
    assert msa(after)[:2] == ("AR", "S-2")  # the next frame on the same connection is read normally
    dead = rec.dead[0]
    assert dead["code"] == "too-large" and dead["size"] == len(good)
    assert dead["sha256"] == hashlib.sha256(good).hexdigest() and dead["raw"] == good[: len(dead["raw"])]


def test_produce_failure_is_AR(good):
    rec = Recorder(fail=RuntimeError("broker gone"))
    with Running(make_bridge(rec)) as srv:
        code, control, reason = msa(srv.send(good))
    assert (code, control) == ("AR", "MLLP-1") and reason.startswith("broker unavailable")


def test_dead_broker_with_real_kafka_producer_is_AR(good):
    """kafka-python producer (acks=all) pointed at a port where no broker listens."""
    from kafka import KafkaProducer

    from stream.mllp_main import kafka_callbacks

    producer = KafkaProducer(bootstrap_servers="127.0.0.1:9", acks="all", api_version=(2, 5), max_block_ms=1500,
                             request_timeout_ms=1500, retries=0)
    try:
        produce, deadletter, kf = kafka_callbacks(producer, "t", "t-dlq", patient_hash_secret=SECRET,
                                                  max_message_bytes=16 * 1024 * 1024, timeout_s=3)
        bridge = MllpBridge("127.0.0.1", 0, produce, deadletter, kf, produce_timeout_s=5)
        with Running(bridge) as srv:
            ok = msa(srv.send(good))
            bad = msa(srv.send(b"not hl7"))
    finally:
        producer.close(timeout=1)
    assert ok[0] == "AR" and ok[1] == "MLLP-1" and "broker unavailable" in ok[2]
    # a refusal that cannot be dead-lettered is AR too, so the sender retries instead of losing it
    assert bad[0] == "AR" and "could not be dead-lettered" in bad[2]


def test_many_connections_many_messages_in_order(good):
    rec = Recorder()
    n_clients, per_client = 12, 4

    def client(c: int) -> list[str]:
        seen = []
        with MLLPClient("127.0.0.1", srv.bridge.port) as cl:
            for k in range(per_client):
                msg = good.replace(b"|MLLP-1|", f"|C{c}-{k}|".encode(), 1)
                code, control, _ = msa(ack_of(cl.send_message(msg)))
                assert code == "AA"
                seen.append(control)
        return seen

    with Running(make_bridge(rec)) as srv, ThreadPoolExecutor(n_clients) as pool:
        results = list(pool.map(client, range(n_clients)))
    for c, seen in enumerate(results):
        assert seen == [f"C{c}-{k}" for k in range(per_client)]
    assert len(rec.produced) == n_clients * per_client


def test_pipelined_frames_on_one_connection_are_answered_in_order(good):
    import socket

    msgs = [good.replace(b"|MLLP-1|", f"|P-{k}|".encode(), 1) for k in range(3)]
    rec = Recorder()
    with Running(make_bridge(rec)) as srv:
        with socket.create_connection(("127.0.0.1", srv.bridge.port)) as sock:
            sock.sendall(b"".join(frame(m) for m in msgs))
            reader = FrameReader(1 << 20)
            acks = []
            while len(acks) < 3:
                acks += reader.feed(sock.recv(4096))
    assert [msa(hl7.parse(a.payload.decode()))[1] for a in acks] == ["P-0", "P-1", "P-2"]
    assert [raw for raw, _ in rec.produced] == msgs


def test_health_and_metrics(good):
    rec = Recorder()
    with Running(make_bridge(rec, web_port=0)) as srv:
        srv.send(good)
        srv.send(b"garbage")
        base = f"http://127.0.0.1:{srv.bridge.web_port}"
        health = json.loads(urllib.request.urlopen(base + "/healthz", timeout=5).read())
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert health["status"] == "ok" and health["mllp_port"] == srv.bridge.port
    assert "twiwatch_mllp_messages_received_total 2.0" in metrics
    assert 'twiwatch_mllp_acks_total{code="AA"} 1.0' in metrics
    assert 'twiwatch_mllp_acks_total{code="AR"} 1.0' in metrics
    assert "twiwatch_mllp_ack_latency_seconds_count 2.0" in metrics


def test_async_callbacks_are_awaited(good):
    produced = []

    async def produce(raw, key):
        await asyncio.sleep(0.01)
        produced.append(raw)

    async def deadletter(raw, reason, error_class, **_):
        return None

    bridge = MllpBridge("127.0.0.1", 0, produce, deadletter, key_for)
    with Running(bridge) as srv:
        assert msa(srv.send(good))[0] == "AA"
    assert produced == [good]


# --- with the real local broker ---------------------------------------------------------------------------

@pytest.fixture
def kafka_topics(kafka_bootstrap):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    run = uuid.uuid4().hex[:8]
    names = (f"t-{run}.ecg.hl7.raw", f"t-{run}.ecg.deadletter")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="twiwatch-test-mllp")
    try:
        admin.create_topics([NewTopic(n, 1, 1, topic_configs={"max.message.bytes": str(16 * 1024 * 1024 + 65536)})
                             for n in names])
        yield kafka_bootstrap, names
    finally:
        try:
            admin.delete_topics(list(names))
        except Exception:
            pass
        admin.close()


def _consume(bootstrap: str, topic: str, n: int) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=15000, group_id=None,
                             fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=32 * 1024 * 1024)
    try:
        out = []
        for record in consumer:
            out.append(record)
            if len(out) >= n:
                break
        return out
    finally:
        consumer.close()


@pytest.mark.kafka
def test_kafka_aa_only_after_message_is_in_topic(kafka_topics, good):
    from kafka import KafkaProducer

    from stream.deadletter import read_headers
    from stream.mllp_main import kafka_callbacks

    bootstrap, (raw_topic, dlq_topic) = kafka_topics
    limit = 16 * 1024 * 1024
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             max_request_size=limit + 65536)
    produce, deadletter, kf = kafka_callbacks(producer, raw_topic, dlq_topic, patient_hash_secret=SECRET,
                                              max_message_bytes=limit)
    second = good.replace(b"|MLLP-1|", b"|MLLP-2|", 1)
    bad = set_field(segments(good)[0], 8, b"ADT^A01") + b"\r" + b"\r".join(segments(good)[1:]) + b"\r"
    try:
        with Running(MllpBridge("127.0.0.1", 0, produce, deadletter, kf, max_message_bytes=limit)) as srv:
            with MLLPClient("127.0.0.1", srv.bridge.port) as client:
                first_ack = msa(ack_of(client.send_message(good)))
                assert first_ack[0] == "AA"
                # AA means durable: the message is readable from the topic now
                (stored,) = _consume(bootstrap, raw_topic, 1)
                assert stored.value == good
                assert stored.key == patient_key(PATIENT_MARK, SECRET, system="").encode()
                assert msa(ack_of(client.send_message(second)))[0] == "AA"
                assert msa(ack_of(client.send_message(bad)))[0] == "AR"
    finally:
        producer.close(timeout=5)
    values = [r.value for r in _consume(bootstrap, raw_topic, 2)]
    assert values == [good, second]  # in order, byte for byte
    (dead,) = _consume(bootstrap, dlq_topic, 1)
    meta = read_headers(dead.headers)
    assert dead.value == bad and meta["error.code"] == "message-type" and "ADT^A01" in meta["reason"]
    assert PATIENT_MARK not in meta["reason"]


@pytest.mark.kafka
def test_kafka_oversize_dead_letter_keeps_head_size_and_hash(kafka_topics, good):
    from kafka import KafkaProducer

    from stream.deadletter import read_headers
    from stream.mllp_main import kafka_callbacks

    bootstrap, (raw_topic, dlq_topic) = kafka_topics
    limit = 100 * 1024
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 * 1024 * 1024)
    produce, deadletter, kf = kafka_callbacks(producer, raw_topic, dlq_topic, patient_hash_secret=SECRET,
                                              max_message_bytes=limit)
    big = good * 6  # ~1.3 MiB: more than the 1 MiB kept
    try:
        with Running(MllpBridge("127.0.0.1", 0, produce, deadletter, kf, max_message_bytes=limit)) as srv:
            code, _, reason = msa(srv.send(big))
    finally:
        producer.close(timeout=5)
    assert code == "AR" and "too large" in reason
    (dead,) = _consume(bootstrap, dlq_topic, 1)
    meta = read_headers(dead.headers)
    assert dead.value == big[: 1024 * 1024]
    assert meta["original.size"] == str(len(big)) and meta["original.sha256"] == hashlib.sha256(big).hexdigest()
    assert meta["original.truncated"] == "True" and meta["error.code"] == "too-large"
