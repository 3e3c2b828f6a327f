"""The whole spine on the real broker: replayed real ECGs (HL7 and FHIR) -> faust worker -> research-only reports,
the bad-input corpus -> dead letters, and a SIGKILLed worker -> nothing lost, no duplicates."""
from __future__ import annotations

import signal
import time
import uuid
from collections import Counter

import pytest
from conftest import SAMPLES

from integrations.datasets.recordings import find_recordings
from integrations.fhir.report import report_resource
from integrations.identity import report_id
from stream.config import ToolSettings
from stream.devtools.e2e import isolated_settings, run_e2e, start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import wait_for
from stream.devtools.replay import messages, send_all
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs

pytestmark = pytest.mark.kafka


def test_e2e_real_ecgs_hl7_and_fhir_with_bad_input(kafka_bootstrap):
    result = run_e2e(ToolSettings(), 40, SAMPLES, timeout_s=240)
    s = result.summary
    assert set(s) == {"sent_valid", "sent_invalid", "reports", "research_flagged", "fhir_valid", "deadletter",
                      "duplicates", "latency_ms", "analysis_messages"}
    assert Counter(m.fmt for m in result.sent) == {"hl7": 20, "fhir": 20}
    assert s["reports"] == s["sent_valid"] == 40
    assert s["research_flagged"] == s["fhir_valid"] == 40
    assert s["duplicates"] == 0
    # One analysis message beside every report version (docs/SPEC.md §13.1), none for the bad input.
    assert s["analysis_messages"] == len({(r["id"], r["version"]) for r in result.collected.reports})
    assert s["deadletter"] == s["sent_invalid"] == len(result.bad)
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"]

    # Exactly one report per valid message, under the identifier its source id predicts.
    expected = {report_id(m.source_id) for m in result.sent}
    got = Counter(r["id"] for r in result.collected.reports)
    assert set(got) == expected and set(got.values()) == {1}

    # Every dead letter names its fault and keeps the original bytes (or its first 1 MiB with size and hash).
    by_size = {}
    for d in result.collected.deadletters:
        meta = d["meta"]
        assert meta["reason"] and meta["error.class"] and meta["error.code"]
        assert int(meta["original.size"]) >= len(d["value"])
        by_size[int(meta["original.size"])] = meta
    for case in result.bad:
        assert len(case.value) in by_size, case.name
        if case.at_edge:
            assert by_size[len(case.value)]["original.truncated"] == "True"
        else:
            assert by_size[len(case.value)]["source.topic"].endswith(("ecg.hl7.raw", "ecg.fhir.raw"))


def _conclusion(report: dict) -> str:
    return report_resource(report["bundle"])["conclusion"]


def test_priors_survive_a_killed_worker(kafka_bootstrap):
    """PTB-XL serial ECGs: the first ECG of two patients, SIGKILL, restart, then their later ECGs. The later reports
    can only compare with the earlier ones if the per-patient table came back from its changelog."""
    s = isolated_settings(ToolSettings(), "prior" + uuid.uuid4().hex[:6])
    ensure_topics(s, topic_specs(s))
    recs = {r.record_id: r for r in find_recordings(SAMPLES) if r.dataset == "ptbxl"}
    first = [recs["266"], recs["273"]]  # patients 641 and 340, earlier ECGs
    later = [recs["281"], recs["298"]]  # their ECGs four and five days later
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    producer = make_producer(s)
    worker = start_worker(s, log)
    try:
        wait_healthy(s, worker)
        send_all(producer, list(messages(first, "hl7", s, run_id="a")), s)
        assert len(wait_for(s, 2, 0, 120).reports) == 2
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        worker = start_worker(s, log)
        wait_healthy(s, worker)
        later_msgs = list(messages(later, "fhir", s, run_id="b"))
        send_all(producer, later_msgs, s)
        got = wait_for(s, 4, 0, 120)
    finally:
        producer.close()
        stop_worker(worker)
    by_id = {r["id"]: r for r in got.reports}
    c281 = _conclusion(by_id[report_id(later_msgs[0].source_id)])
    c298 = _conclusion(by_id[report_id(later_msgs[1].source_id)])
    assert c281.startswith("RESEARCH USE ONLY") and c298.startswith("RESEARCH USE ONLY")
    # 266 had no TWI group, 281 has one in aVL/I: new against the prior of 1986-09-06.
    assert "new vs prior ECG of 1986-09-06" in c281
    # 273 already had the lateral groups that 298 shows: present on the prior.
    assert "also present on prior ECG of 1986-09-07" in c298
    assert "novelty unknown" not in c281 + c298


def test_sigkill_mid_stream_loses_nothing(kafka_bootstrap):
    base = ToolSettings()
    s = isolated_settings(base, "kill" + str(int(time.time()))[-6:])
    ensure_topics(s, topic_specs(s))
    recs = find_recordings(SAMPLES)
    items = list(messages(recs, "mixed", s, count=60))
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    worker = start_worker(s, log)
    try:
        wait_healthy(s, worker)
        producer = make_producer(s)
        send_all(producer, items[:30], s)
        # Kill hard as soon as the first reports are out, while the rest is in flight.
        wait_for(s, 5, 0, 120)
        send_all(producer, items[30:], s)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        producer.close()
        worker = start_worker(s, log)
        got = wait_for(s, len(items), 0, 240)
    finally:
        stop_worker(worker)
    expected = {report_id(m.source_id) for m in items}
    ids = Counter((r["id"], r["version"]) for r in got.reports)
    assert {i for i, _ in ids} == expected, "a message was lost"
    copies = Counter((r["id"], r["version"], r["value"]) for r in got.reports)
    # Without transactions a redelivered message may be written twice; every extra copy must be byte-identical,
    # so an idempotent consumer keyed by (identifier, versionId) keeps exactly one report per identifier.
    assert sum(ids.values()) - len(ids) == sum(copies.values()) - len(copies)
    if s.exactly_once:
        assert sum(ids.values()) == len(ids), "transactions on: no second copy may become visible"
    assert len(got.deadletters) == 0
