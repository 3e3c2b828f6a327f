"""Asynchronous ECG-R1 reasoning on the real broker, with the serving shim and its stand-in generator (a stand-in:
the 8B model cannot run here). A flagged new TWI goes out first as version 1 `partial`; version 2 `preliminary`
follows with the reasoning and its cross-check, or says the reasoning was abandoned and why."""
from __future__ import annotations

import signal
import time
import urllib.request
from collections import Counter

import pytest
from conftest import ROOT, SAMPLES, standin_shim

from integrations.datasets.recordings import find_recordings
from integrations.fhir.report import report_resource
from integrations.identity import report_id
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import collect
from stream.devtools.replay import messages, send_all
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs

pytestmark = pytest.mark.kafka


def _versions(s, rid: str, want: int, timeout_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = {r["version"]: r for r in collect(s).reports if r["id"] == rid}
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def _run(isolated, timeout_s: float, *, encoder: bool = False, **standin) -> tuple[dict[str, dict], list, float]:
    """Patient 641 (PTB-XL): ECG 266 without a TWI group, then 281 with a new lateral TWI -> flagged.
    Returns the flagged report's versions, the stand-in's calls and the worker's summed reasoner latency (s)."""
    recs = {r.record_id: r for r in find_recordings(SAMPLES) if r.dataset == "ptbxl"}
    with standin_shim(**standin) as (server, generator):
        update = {"reasoner_url": server.url, "reasoner_timeout_s": timeout_s}
        if encoder:
            update["encoder_manifest"] = str(ROOT / "models" / "triage-s50" / "encoder.json")
        s = isolated.model_copy(update=update)
        ensure_topics(s, topic_specs(s))
        worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
        producer = make_producer(s)
        try:
            wait_healthy(s, worker)
            msgs = list(messages([recs["266"], recs["281"]], "hl7", s, run_id="r"))
            send_all(producer, msgs, s)
            versions = _versions(s, report_id(msgs[1].source_id), 2, 90)
            first = [r for r in collect(s).reports if r["id"] == report_id(msgs[0].source_id)]
            reasoner_s = _metric(s, "twiwatch_reasoning_seconds_sum")
        finally:
            producer.close()
            stop_worker(worker)
    assert len(first) == 1 and report_resource(first[0]["bundle"])["status"] == "preliminary"  # nothing to reason on
    return versions, generator.calls, reasoner_s


def _metric(s, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.worker_web_port}/metrics", timeout=5).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_flagged_report_is_amended_with_reasoning(isolated):
    versions, calls, reasoner_s = _run(isolated, timeout_s=30, encoder=True, output="lateral-twi", delay_s=1.0)
    v1, v2 = report_resource(versions["1"]["bundle"]), report_resource(versions["2"]["bundle"])
    assert (v1["status"], v1["meta"]["versionId"]) == ("partial", "1")
    assert (v2["status"], v2["meta"]["versionId"]) == ("preliminary", "2")
    assert v1["identifier"] == v2["identifier"]
    # The first version did not wait: it was on the topic before the reasoner's 1 s answer could exist; the
    # reasoned version followed within the reasoner's latency (as the worker measured it) plus 1 s.
    gap_ms = versions["2"]["timestamp_ms"] - versions["1"]["timestamp_ms"]
    assert reasoner_s >= 1.0 and 900 <= gap_ms <= reasoner_s * 1000 + 1000
    assert len(calls) == 1 and calls[0].ecg.shape == (12, 5000)
    text = v2["text"]["div"]
    assert "stand-in" in text.lower() or "NOT-ECG-R1" in text
    assert "supported" in text.lower() or "contradicted" in text.lower()
    assert v2["conclusion"].startswith("RESEARCH USE ONLY")
    # Version 2 keeps what version 1 said about the encoder's head, and names the same software devices.
    head_line = next(line for line in v1["text"]["div"].split("<") if "Encoder triage head" in line)
    assert head_line in text

    def devices(version: str) -> set[str]:
        return {e["fullUrl"] for e in versions[version]["bundle"]["entry"] if e["resource"]["resourceType"] == "Device"}
    assert devices("1") <= devices("2")  # version 2 adds the reasoning model's Device


def test_reasoner_timeout_is_abandoned_not_lost(isolated):
    versions, _, _ = _run(isolated, timeout_s=2, output="lateral-twi", delay_s=20)
    v2 = report_resource(versions["2"]["bundle"])
    assert v2["status"] == "preliminary"
    assert "abandoned" in (v2["conclusion"] + v2["text"]["div"]).lower()


def test_worker_scores_with_the_shipped_encoder_in_micro_batches(isolated):
    """The shipped small encoder + triage head (models/triage-s50, ONNX Runtime CPU) in the worker: every report
    carries the head's scores, and the batch-size metric shows batches of more than one ECG."""
    s = isolated.model_copy(update={"encoder_manifest": str(ROOT / "models" / "triage-s50" / "encoder.json"),
                                    "encoder_max_batch": 8, "encoder_max_wait_ms": 200})
    ensure_topics(s, topic_specs(s))
    recs = find_recordings(SAMPLES)[:12]
    worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
    producer = make_producer(s)
    try:
        wait_healthy(s, worker)
        msgs = list(messages(recs, "mixed", s, run_id="enc"))
        send_all(producer, msgs, s)
        deadline = time.monotonic() + 120
        while len(got := collect(s).reports) < len(msgs) and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{s.worker_web_port}/metrics").read().decode()
    finally:
        producer.close()
        stop_worker(worker)
    assert {r["id"] for r in got} == {report_id(m.source_id) for m in msgs}
    for r in got:
        div = report_resource(r["bundle"])["text"]["div"]
        assert "Encoder triage head" in div and "TWI present p=" in div
    count = float(next(line.split()[-1] for line in metrics_text.splitlines()
                       if line.startswith("twiwatch_encoder_batch_size_count")))
    total = float(next(line.split()[-1] for line in metrics_text.splitlines()
                       if line.startswith("twiwatch_encoder_batch_size_sum")))
    assert total == len(msgs) and count < total  # several ECGs per encoder call


def test_sigterm_while_reasoning_exits_cleanly_and_the_request_is_redelivered(isolated):
    """A worker stopped (SIGTERM) while its reasoner is answering must not ack the unanswered request: it exits 0
    without committing, and the restarted worker writes version 2 once, with no second version 1."""
    recs = {r.record_id: r for r in find_recordings(SAMPLES) if r.dataset == "ptbxl"}
    with standin_shim("lateral-twi", delay_s=30) as (server, generator):
        s = isolated.model_copy(update={"reasoner_url": server.url, "reasoner_timeout_s": 60})
        ensure_topics(s, topic_specs(s))
        log = s.cache_dir / "test" / f"{s.app_id}.log"
        worker = start_worker(s, log)
        producer = make_producer(s)
        try:
            wait_healthy(s, worker)
            msgs = list(messages([recs["266"], recs["281"]], "hl7", s, run_id="term"))
            send_all(producer, msgs, s)
            rid = report_id(msgs[1].source_id)
            assert "1" in _versions(s, rid, 1, 60)
            deadline = time.monotonic() + 30
            while not generator.calls and time.monotonic() < deadline:
                time.sleep(0.2)
            assert generator.calls, "the reasoner was never asked"
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0  # a stop, not a crash
            generator.set(delay_s=0)
            worker = start_worker(s, log)
            versions = _versions(s, rid, 2, 90)
        finally:
            producer.close()
            stop_worker(worker)
    ids = Counter((r["id"], r["version"]) for r in collect(s).reports)
    assert ids[(rid, "1")] == 1 and ids[(rid, "2")] == 1
    assert report_resource(versions["2"]["bundle"])["status"] == "preliminary"
    assert len(generator.calls) == 2  # asked again after the restart: the first request was not acknowledged
