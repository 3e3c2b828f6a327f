"""Delivery rules the worker keeps when inputs are unusual: ECGs without a patient id never share history, a
redelivery is recognised beyond the few ECGs kept as priors, and a record that outgrows the internal hop becomes a
dead letter with its reason instead of vanishing. Real recordings; the Kafka tests use the real broker and worker."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest

from engine.record import STANDARD_LEADS, make_record
from integrations.fhir.report import report_resource
from integrations.identity import patient_key, report_id
from stream.config import ToolSettings
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import collect
from stream.devtools.replay import Outgoing, encode_for, send_all
from stream.producer import make_producer
from stream.stages import already_reported, analyse_record
from stream.topics import ensure_topics, topic_specs

SECRET = "test-secret"


def test_ecgs_without_a_patient_id_are_keyed_by_their_own_source():
    assert patient_key(None, SECRET, "hl7:A|B|1") != patient_key(None, SECRET, "hl7:A|B|2")
    assert patient_key("123", SECRET, "hl7:A|B|1") == patient_key("123", SECRET, "hl7:A|B|2")
    assert patient_key(None, SECRET, "hl7:A|B|1") != patient_key("hl7:A|B|1", SECRET)  # not a patient id either
    with pytest.raises(ValueError):
        patient_key(None, SECRET)


def test_redelivery_is_recognised_beyond_the_priors_kept(recordings):
    s = ToolSettings(priors_kept=5)
    base = next(r for r in recordings if r.dataset == "ptbxl").load()
    state, sent = None, []
    start = datetime(2020, 1, 1, 8, 0)
    for i in range(8):  # a burst longer than priors_kept, all of one patient
        rec = base.replace(source_id=f"hl7:MON|WARD|burst-{i}", patient_id="p-burst",
                           acquired_at=start + timedelta(minutes=i))
        state = analyse_record(rec, state, {"timestamp_ms": 1_700_000_000_000 + i}, s).priors
        sent.append(rec.source_id)
    assert len(state["ecgs"]) == 5
    assert all(already_reported(state, sid) for sid in sent)
    assert not already_reported(state, "hl7:MON|WARD|never-sent")


def _zero_record(source_id: str, patient_id: str | None) -> object:
    # 10 s of 12 leads at 500 Hz, all zero: "0^" per sample in HL7 (2 bytes) becomes 4 bytes as float32.
    return make_record(np.zeros((12, 5000), np.float32), STANDARD_LEADS, 500.0, source_id, patient_id=patient_id,
                       acquired_at=datetime(2024, 1, 1, 12, 0))


@pytest.mark.kafka
def test_a_record_that_outgrows_the_internal_hop_is_a_dead_letter(isolated):
    s = isolated.model_copy(update={"max_message_bytes": 200_000})
    ensure_topics(s, topic_specs(s))
    control = "big-" + uuid.uuid4().hex[:8]
    topic, value, source_id = encode_for(_zero_record("x", "p-big"), "hl7", control, s)
    assert len(value) < s.max_message_bytes  # accepted at the edge: the limit is only passed after decoding
    item = Outgoing(topic, patient_key("p-big", s.patient_hash_secret.get_secret_value()).encode(), value, "hl7",
                    source_id, "synthetic-zero")
    worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
    producer = make_producer(s)
    try:
        wait_healthy(s, worker)
        send_all(producer, [item], s)
        deadline = time.monotonic() + 60
        while not (got := collect(s)).deadletters and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.poll() is None, "the worker must keep running"
    finally:
        producer.close()
        stop_worker(worker)
    (dead,) = got.deadletters
    assert dead["meta"]["error.code"] == "too-large-decoded" and "internal hop" in dead["meta"]["reason"]
    assert not [r for r in got.reports if r["id"] == report_id(source_id)]


@pytest.mark.kafka
def test_ecgs_without_a_patient_id_are_nobodys_prior(isolated, recordings):
    """Two different people's ECGs, neither with a patient id: the second must not be compared with the first."""
    ptb = {r.record_id: r for r in recordings if r.dataset == "ptbxl"}
    first, second = ptb["266"].load(), ptb["281"].load()  # one patient's ECGs: 281 has a TWI that 266 lacks
    ensure_topics(isolated, topic_specs(isolated))
    items = []
    for i, rec in enumerate((first, second)):
        topic, value, source_id = encode_for(rec.replace(patient_id=None), "hl7", f"anon-{uuid.uuid4().hex[:6]}-{i}",
                                             isolated)
        key = patient_key(None, isolated.patient_hash_secret.get_secret_value(), source_id).encode()
        items.append(Outgoing(topic, key, value, "hl7", source_id, rec.source_id))
    worker = start_worker(isolated, isolated.cache_dir / "test" / f"{isolated.app_id}.log")
    producer = make_producer(isolated)
    try:
        wait_healthy(isolated, worker)
        send_all(producer, items, isolated)
        deadline = time.monotonic() + 60
        while len((got := collect(isolated)).reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        producer.close()
        stop_worker(worker)
    by_id = {r["id"]: report_resource(r["bundle"]) for r in got.reports}
    second_report = by_id[report_id(items[1].source_id)]
    text = second_report["text"]["div"]
    assert "new vs prior" not in text and "also present on prior" not in text
    assert "novelty unknown: no prior ECG to compare" in text  # 281's lateral TWI, judged without a stranger's ECG


def test_an_ecg_whose_report_failed_is_neither_a_prior_nor_reported(recordings):
    from stream.stages import without_ecgs

    s = ToolSettings()
    base = next(r for r in recordings if r.dataset == "ptbxl").load()
    state = None
    for i in range(3):
        rec = base.replace(source_id=f"hl7:MON|WARD|f-{i}", patient_id="p-f",
                           acquired_at=datetime(2020, 1, 1, 8, i))
        state = analyse_record(rec, state, {"timestamp_ms": 1_700_000_000_000 + i}, s).priors
    kept = without_ecgs(state, {"hl7:MON|WARD|f-1"})
    assert [d["source_id"] for d in kept["ecgs"]] == ["hl7:MON|WARD|f-0", "hl7:MON|WARD|f-2"]
    assert not already_reported(kept, "hl7:MON|WARD|f-1") and already_reported(kept, "hl7:MON|WARD|f-2")


def test_one_patient_key_whether_replayed_as_hl7_or_fhir(recordings):
    """A dataset patient's ECGs keep one key through HL7 (PID-3) and FHIR (with or without a contained Patient)."""
    from stream.stages import decode_message

    s = ToolSettings()
    secret = s.patient_hash_secret.get_secret_value()
    rec = next(r for r in recordings if r.dataset == "ptbxl").load()
    keys = set()
    for variant in (rec, rec.replace(sex=None, birth_date=None)):
        for fmt in ("hl7", "fhir"):
            _, value, _ = encode_for(variant, fmt, f"k-{fmt}-{variant.sex}", s)
            got = decode_message(value, fmt, s)
            keys.add(patient_key(got.patient_id, secret, got.source_id, system=got.patient_system))
    assert len(keys) == 1
