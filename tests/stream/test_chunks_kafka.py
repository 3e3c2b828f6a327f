"""Monitor feeds on the real broker: a worker configured with sender rules puts each decoded chunk on the chunks
topic (one message per segment, keyed by the hashed stream, amplitudes within one count of the recording) and
dead-letters what it cannot scale with the reason; strips keep going to reports (docs/SPEC.md §11)."""
from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest

from integrations.fhir.sample_array import encode_sample_array
from integrations.hl7.encode import encode_oru
from integrations.hl7.encode_chunks import encode_pcd01_chunk, encode_w01
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import collect, read_chunks
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs
from tests.support.chunks import ROOT, monitoring_piece
from tests.support.polling import wait_until

pytestmark = pytest.mark.kafka

RULES = [
    {"name": "gateway", "match": {"hl7_app": "EGATEWAY", "hl7_facility": "ICU"}, "kind": "chunk", "bed_component": 2},
    {"name": "old-monitors", "match": {"hl7_app": "OLDCART"}, "kind": "chunk"},
    {"name": "bedside-counts", "match": {"hl7_app": "BEDSIDE", "hl7_facility": "CCU"}, "kind": "chunk",
     "mv_per_count": 0.001},
]
RESOLUTION_MV = 0.02


def test_monitor_chunks_reach_the_chunks_topic_and_unscaled_ones_are_dead_letters(isolated):
    s = isolated.model_copy(update={"senders": json.dumps(RULES)})
    ensure_topics(s, topic_specs(s))
    seconds = [monitoring_piece(1.0, offset_s=float(i)) for i in range(3)]
    ten_s = monitoring_piece(10.0)
    first = monitoring_piece(2.0, leads=("I", "II"), names=("I", "II"))
    later = monitoring_piece(2.0, leads=("I", "II"), names=("I", "II"), offset_s=3.0)
    gap = [first, later.replace(acquired_at=first.acquired_at + timedelta(seconds=3))]  # 1 s missing between
    hl7 = [encode_pcd01_chunk(r, control_id=f"C{i}", message_time=r.acquired_at) for i, r in enumerate(seconds)]
    hl7.append(encode_pcd01_chunk(ten_s, control_id="C10S"))
    hl7.append(encode_w01(gap, control_id="W1"))
    # The sender's rule gives the scale (1 µV per count, as this sender writes) where the message states none.
    hl7.append(encode_pcd01_chunk(seconds[0], control_id="RULE1", resolution_mv=None, sending_app="BEDSIDE",
                                  sending_facility="CCU"))
    # No scale in the message and no rule for this sender: refused, never guessed.
    refused = [encode_pcd01_chunk(seconds[0], control_id="NOSCALE", resolution_mv=None, sending_app="UNKNOWNGW",
                                  sending_facility="ICU")]
    pocd_xml = (ROOT / "tests" / "integrations" / "data" / "Observation-ECGSampleArrayObservation.xml").read_bytes()
    pocd_json = encode_sample_array(monitoring_piece(1.0, leads=("I", "II", "III"), names=("I", "II", "III")))
    strip = encode_oru(monitoring_piece(10.0, leads=("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
                                        names=("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"), kind="strip"),
                       control_id="STRIP1")
    producer = make_producer(s)
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    worker = start_worker(s, log)
    try:
        wait_healthy(s, worker)
        for value in hl7 + refused + [strip]:
            producer.send(s.topic_hl7_raw, value=value, key=b"bed-7").get(30)
        for value in (pocd_xml, pocd_json):
            producer.send(s.topic_fhir_raw, value=value).get(30)
        producer.flush()
        expected_chunks = 3 + 1 + 2 + 1 + 2  # three 1-s, one 10-s, two W01 segments, the rule's, two PoCD
        chunks = wait_until(lambda: read_chunks(s), lambda c: len(c) >= expected_chunks)
        got = wait_until(lambda: collect(s), lambda g: g.reports and len(g.deadletters) >= len(refused))
    finally:
        producer.close()
        stop_worker(worker)
    assert len(chunks) == expected_chunks
    by_source = Counter(c["meta"]["chunk_source_id"] for c in chunks)
    assert by_source["hl7:OLDCART|WARD3|W1"] == 2  # the TIM gap splits the W01 message into two segments
    for c in chunks:
        rec, meta = c["record"], c["meta"]
        assert rec.kind == "chunk" and meta["format"] in ("hl7", "fhir")
    # One bed's chunks share a key (its hashed stream), hence a partition, in the order they were sent.
    gateway = [c for c in chunks if c["meta"]["chunk_source_id"].startswith("hl7:EGATEWAY|ICU|C")]
    assert len({c["key"] for c in gateway}) == 1 and len({c["partition"] for c in gateway}) == 1
    in_order = sorted(gateway, key=lambda c: c["offset"])
    assert [c["meta"]["chunk_source_id"].rsplit("|", 1)[1] for c in in_order] == ["C0", "C1", "C2", "C10S"]
    # Amplitudes within one count of the recording (0.02 mV per count in the message).
    for c, want in zip(in_order[:3], seconds, strict=True):
        rec = c["record"]
        assert rec.leads == ("I", "II", "III", "V") and rec.lead_marks.get("V") == "unknown-position"
        assert rec.acquired_at == want.acquired_at
        np.testing.assert_allclose(rec.signal, want.signal, atol=RESOLUTION_MV / 2 + 1e-6)
    assert in_order[3]["record"].n_samples == ten_s.n_samples
    w01 = sorted((c for c in chunks if c["meta"]["chunk_source_id"].endswith("|W1")),
                 key=lambda c: c["meta"]["segment"])
    assert [c["record"].acquired_at for c in w01] == [gap[0].acquired_at, gap[0].acquired_at + timedelta(seconds=3)]
    rule = next(c for c in chunks if c["meta"]["chunk_source_id"].endswith("|RULE1"))
    np.testing.assert_allclose(rule["record"].signal, seconds[0].signal, atol=0.001 / 2 + 1e-6)
    ig = next(c["record"] for c in chunks if c["meta"]["format"] == "fhir" and c["record"].fs == 125.0)
    assert ig.leads == ("I", "II", "III") and ig.n_samples == 125
    # The strip went the strip way; the unscaled chunk is a dead letter with its reason.
    assert len({r["id"] for r in got.reports}) == 1
    codes = Counter(d["meta"]["error.code"] for d in got.deadletters)
    assert codes == {"no-scale": 1}
    reason = got.deadletters[0]["meta"]["reason"]
    assert "no unit" in reason and "sender rule" in reason
