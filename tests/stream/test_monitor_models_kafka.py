"""The encoder and ECG-R1 on monitor episodes, on the real broker (docs/SPEC.md §11.9 "Models"): the shipped encoder
(models/triage-s50, ONNX Runtime) and the serving shim with its STAND-IN generator (NOT ECG-R1: the 8B model cannot
run here). Two beds replay STITCHED PTB-XL patients (serial ECGs, each repeated 3 min; tests the streaming
path): one patient's 12 leads (FHIR PoCD), another's as 4-lead monitoring (PCD-01: I, II, III and the V5 signal as a
chest lead of unknown position). The 12-lead episode carries the encoder's head from version 1 and gets exactly one
reasoned version, also when the worker is killed while the reading is being made, when the reading and its request
are delivered again, and when a restarted worker re-reads one; the 4-lead episode says that no reasoning was
requested and why.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import standin_shim

from integrations.datasets.recordings import find_recordings
from integrations.fhir.report import report_resource
from stream.devtools import monitors as mon
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import _consumer, _read_all, collect
from stream.monitor.episode_models import REASONED
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs
from tests.support.polling import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
# Shortened episode rules, as in test_monitor_kafka.py (baseline 60 s, persistence 30 s, silence 6 s of wall time).
FAST_RULES = {"monitor_baseline_s": 60.0, "monitor_persistence_s": 30.0, "monitor_silence_s": 6.0,
              "monitor_tick_s": 1.0, "monitor_close_persist_s": 30.0, "monitor_refractory_s": 60.0,
              "monitor_min_update_interval_s": 60.0}


def _beds() -> list[mon.Bed]:
    """Patient 641 with 12 leads (its new TWI: I and aVL); patient 555 as 4-lead monitoring with the V5 signal as the
    chest lead (its new TWI there: with I, II, III and V2, the earlier ECG has no dominant beat, so no baseline)."""
    pairs = {p[0]: p for p in mon.stitched_pairs(find_recordings(ROOT / "samples"))}
    twelve, other = mon.stitched_beds([pairs["ptbxl-641"], pairs["ptbxl-555"]], fmt="pocd")
    rec = other.record
    rows = [rec.leads.index(lead) for lead in ("I", "II", "III", "V5")]
    four = rec.replace(signal=rec.signal[rows], leads=("I", "II", "III", "V"), lead_marks={"V": "unknown-position"})
    return [twelve, mon.Bed(1, four, "pcd01", "stitched-ptbxl-555-4", "stitched ptbxl-555, 4 leads")]


def _episodes(s) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in collect(s).reports:
        if dict(r["headers"]).get("twiwatch.kind") == b"monitor-episode":
            out.setdefault(r["id"], []).append(r)
    return out


def _event(r: dict) -> str:
    return dict(r["headers"]).get("twiwatch.episode-event", b"").decode()


def _raw(s, topic: str, prefix: bytes) -> list:
    consumer = _consumer(s)
    try:
        return [r for r in _read_all(consumer, topic) if r.value.startswith(prefix)]
    finally:
        consumer.close()


def _analysis(s, rid: str) -> dict[int, dict]:
    consumer = _consumer(s)
    try:
        msgs = [json.loads(r.value) for r in _read_all(consumer, s.topic_analysis)]
    finally:
        consumer.close()
    return {m["version"]: m for m in msgs if m["report_id"] == rid}


def _metric(s, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.worker_web_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def _done(episodes: dict[str, list[dict]]) -> bool:
    events = [{_event(r) for r in rs} for rs in episodes.values()]
    return len(events) == 2 and all("resolved" in e for e in events) and any("reasoned" in e for e in events)


def test_twelve_lead_episode_gets_head_and_one_reading_four_lead_says_why_not(isolated):
    # The stand-in takes 4 s per reading, so the worker can be killed while one is in flight.
    with standin_shim("lateral-twi", delay_s=4.0) as (server, generator):
        s = isolated.model_copy(update={
            "senders": mon.rules_json(), **FAST_RULES, "reasoner_url": server.url, "reasoner_timeout_s": 30,
            "encoder_manifest": str(ROOT / "models" / "triage-s50" / "encoder.json")})
        ensure_topics(s, topic_specs(s))
        t0 = float(int(time.time()) // 10 * 10 - 30_000)
        sent = list(mon.chunk_messages(mon.Plan(_beds(), t0=t0, seconds=360), s, run_id="models"))
        producer = make_producer(s)
        log = s.cache_dir / "test" / f"{s.app_id}.log"
        worker = start_worker(s, log)
        try:
            wait_healthy(s, worker)
            for m in sent:
                producer.send(m.topic, value=m.value, key=m.key)
            producer.flush()
            # Killed once version 1 of the 12-lead episode is out and its reading is being made; restarted.
            wait_until(lambda: _episodes(s), lambda e: any(
                "reasoning review pending" in report_resource(r["bundle"])["conclusion"]
                for rs in e.values() for r in rs), 120)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = start_worker(s, log)
            wait_healthy(s, worker)
            episodes = wait_until(lambda: _episodes(s), _done, 150)
            # Redelivery: every reading and request once more, then a worker killed and restarted.
            readings = _raw(s, s.topic_chunks, REASONED)
            requests = _raw(s, s.topic_reasoning, b"")
            assert readings and requests
            for r in readings + requests:
                producer.send(r.topic, value=r.value, key=r.key)
            producer.flush()
            time.sleep(5)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            producer.send(readings[0].topic, value=readings[0].value, key=readings[0].key)
            producer.flush()
            worker = start_worker(s, log)
            wait_healthy(s, worker)
            # The restarted worker reads the reading sent meanwhile, and skips it.
            skipped = wait_until(lambda: _metric(s, "twiwatch_redeliveries_skipped_total"), lambda n: n >= 1, 60)
            episodes = _episodes(s)
        finally:
            producer.close()
            stop_worker(worker)
    assert not collect(s).deadletters and skipped >= 1
    assert len(episodes) == 2
    by_leads = {}
    for rid, reports in episodes.items():
        first = report_resource(min(reports, key=lambda r: int(r["version"]))["bundle"])
        by_leads[12 if "V6" in first["conclusion"].split("Monitored leads:")[1] else 4] = rid

    twelve = episodes[by_leads[12]]
    versions = Counter(r["version"] for r in twelve)
    assert len({(r["version"], r["value"]) for r in twelve}) == len(versions), "a version written twice, differently"
    assert sorted(int(v) for v in versions) == list(range(1, len(versions) + 1))
    reasoned = {r["version"] for r in twelve if _event(r) == "reasoned"}
    assert len(reasoned) == 1, f"expected exactly one reasoned version, got {sorted(reasoned)}"
    bundles = {int(r["version"]): r["bundle"] for r in twelve}
    v1, vr = report_resource(bundles[1]), report_resource(bundles[int(next(iter(reasoned)))])
    assert all(report_resource(b)["status"] == "preliminary" for b in bundles.values())
    # Version 1: the encoder's head on the opening window, as a strip report carries it, and the reading pending.
    assert "triage head: TWI present p=" in v1["text"]["div"] and "reasoning review pending" in v1["conclusion"]
    head_line = next(line for line in v1["text"]["div"].split("<") if "triage head: TWI present" in line)
    # The reasoned version: the stand-in's words quoted as unverified model output, cross-checked, beside the head.
    assert vr["conclusion"].startswith("RESEARCH USE ONLY") and "Model reasoning attached (unverified)" in vr[
        "conclusion"]
    assert "NOT-ECG-R1" in vr["text"]["div"] or "stand-in" in vr["text"]["div"].lower()
    assert "Cross-check vs measurements" in vr["text"]["div"] and head_line in vr["text"]["div"]
    devices = [e["resource"] for e in bundles[int(next(iter(reasoned)))]["entry"]
               if e["resource"]["resourceType"] == "Device"]
    assert len(devices) == 2  # twiwatch (with the encoder's version) and the reasoning model
    # Every later version keeps the reading; the last one is the resolution.
    last = max(bundles)
    assert "Model reasoning attached" in report_resource(bundles[last])["conclusion"]
    assert "end" in report_resource(bundles[last])["effectivePeriod"]
    messages = _analysis(s, by_leads[12])
    reading = messages[int(next(iter(reasoned)))]
    assert messages[1]["head"]["twi_present"] is not None and messages[1]["reasoning"] is None
    assert reading["reasoning"]["claims"] and {c["verdict"] for c in reading["reasoning"]["claims"]} <= {
        "supported", "contradicted", "unverifiable"}
    assert reading["episode"]["windows"]["opened"] is not None  # the window the model read, beside its words
    assert generator.calls and all(c.ecg.shape == (12, 5000) for c in generator.calls)
    stamps = {int(r["version"]): r["timestamp_ms"] for r in twelve}
    print(f"reasoned version {stamps[int(next(iter(reasoned)))] - stamps[1]} ms after version 1 (broker time; the "
          "stand-in takes 4 s, and the worker was killed and restarted meanwhile)")

    four = episodes[by_leads[4]]
    assert not any(_event(r) == "reasoned" for r in four)
    for r in four:
        report = report_resource(r["bundle"])
        assert "No reasoning was requested: the encoder and ECG-R1 take 12 leads at 500 Hz, and this stream " \
               "carries 4 lead(s)" in report["conclusion"]
        assert report["status"] == "preliminary" and "triage head" not in report["text"]["div"]
