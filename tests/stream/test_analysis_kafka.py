"""The analysis topic on the real broker (docs/SPEC.md §13.1): replayed real ECGs through a real worker give one
analysis message per report version, whose signal decodes back to the ECG sent and whose prior is the patient's
earlier ECG; a redelivered input yields no second message; a monitor episode's versions each carry the trend and
the version 1 the window that opened it."""
from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import SAMPLES, standin_shim

from integrations.datasets.recordings import find_recordings
from integrations.fhir.report import report_resource
from integrations.identity import report_id
from integrations.review.analysis_message import MAX_TREND_POINTS, decode_signal
from stream.devtools import monitors as mon
from stream.devtools.e2e import read_analysis, start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import collect
from stream.devtools.replay import messages, send_all
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs
from tests.support.polling import wait_until

pytestmark = pytest.mark.kafka
BEATS = ("qrs_onset", "r_peak", "qrs_offset", "t_onset", "t_peak", "t_offset")


def _skipped(s) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.worker_web_port}/metrics", timeout=5).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("twiwatch_redeliveries_skipped_total ")))


def test_every_report_version_has_its_analysis_message_and_a_redelivery_adds_none(isolated):
    """PTB-XL serial ECGs of patients 641 and 340: earlier ECGs (266, 273), then later ones (281 over HL7, 298 over
    FHIR). 281 has a new lateral TWI: version 1 partial, version 2 with the stand-in reasoner's claims. Then the
    worker restarts and the same four messages are sent again."""
    recs = {r.record_id: r for r in find_recordings(SAMPLES) if r.dataset == "ptbxl"}
    with standin_shim("lateral-twi") as (server, _):
        s = isolated.model_copy(update={"reasoner_url": server.url, "reasoner_timeout_s": 30})
        ensure_topics(s, topic_specs(s))
        log = s.cache_dir / "test" / f"{s.app_id}.log"
        producer = make_producer(s)
        worker = start_worker(s, log)
        try:
            wait_healthy(s, worker)
            first = list(messages([recs["266"], recs["273"]], "hl7", s, run_id="a"))
            send_all(producer, first, s)
            wait_until(lambda: collect(s).reports, lambda r: len(r) >= 2, 120)
            later = list(messages([recs["281"], recs["298"]], "mixed", s, run_id="b"))
            send_all(producer, later, s)
            # five versions: 266, 273, 298 once; 281 twice (reasoned)
            wait_until(lambda: read_analysis(s), lambda a: len({(m["report_id"], m["version"]) for m in a}) >= 5,
                       120)
            reports = collect(s).reports
            before = read_analysis(s)
            stop_worker(worker)
            worker = start_worker(s, log)
            wait_healthy(s, worker)
            send_all(producer, first + later, s)
            wait_until(lambda: _skipped(s), lambda n: n >= 4, 120)  # each redelivered ECG was recognised
            time.sleep(1.0)
            after = read_analysis(s)
        finally:
            producer.close()
            stop_worker(worker)

    sent = {m.source_id: m for m in first + later}
    records = {m.source_id: recs[r].load() for m, r in zip(first + later, ["266", "273", "281", "298"], strict=True)}
    versions = {(r["id"], int(r["version"])) for r in reports}
    assert len(versions) == 5 and {(m["report_id"], m["version"]) for m in before} == versions
    # The redelivery: nothing new on the analysis topic, no second distinct message for any version.
    distinct = defaultdict(set)
    for m in after:
        distinct[(m["report_id"], m["version"])].add(m["value"])
    assert set(distinct) == versions and all(len(v) == 1 for v in distinct.values())
    assert all(m["key"] == m["report_id"].encode() for m in after)

    rid = {source: report_id(source) for source in sent}
    by_rid = {v: k for k, v in rid.items()}
    for m in before:
        msg = m["message"]
        record = records[by_rid[msg["report_id"]]]
        assert msg["schema"] == "twiwatch.analysis/1" and msg["kind"] == "ecg" and msg["research_only"] is True
        assert report_id(msg["source_id"]) == msg["report_id"] and msg["patient"]["mrn"]
        sig = msg["signal"]
        assert sig["fs"] == record.fs and sig["n_samples"] == record.n_samples
        for lead, values in decode_signal(sig).items():
            mv = record.lead(lead).astype(np.float64)
            inside = np.abs(mv) < 32.0
            assert np.max(np.abs(values[inside] - mv[inside] * 1000.0)) <= 1.0 + 1e-6, lead
        fid = [b[k] for lead in msg["analysis"]["leads"].values() for b in lead["beats"] for k in BEATS
               if b[k] is not None]
        assert fid and min(fid) >= 0 and max(fid) < sig["n_samples"]

    def message(source_index: int, version: int) -> dict:
        return next(m["message"] for m in before
                    if m["report_id"] == rid[(first + later)[source_index].source_id] and m["version"] == version)

    # The prior compared with is the same patient's earlier ECG, named by its report id; the report names it too.
    for later_i, earlier_i in ((2, 0), (3, 1)):
        earlier = (first + later)[earlier_i].source_id
        prior = message(later_i, 1)["prior"]
        assert prior["source_id"] == earlier and prior["report_id"] == report_id(earlier)
        bundle = next(r["bundle"] for r in reports
                      if r["id"] == rid[(first + later)[later_i].source_id] and r["version"] == "1")
        provenance = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
        assert {"system": s.fhir_identifier_system, "value": report_id(earlier)} in [
            e["what"].get("identifier") for e in provenance["entity"]]
    assert message(0, 1)["prior"] is None and message(1, 1)["prior"] is None
    v1, v2 = message(2, 1), message(2, 2)
    assert (v1["status"], v2["status"]) == ("partial", "preliminary")
    assert v1["reasoning"] is None and v2["signal"] == v1["signal"]
    claims = v2["reasoning"]["claims"]
    assert claims and {c["verdict"] for c in claims} <= {"supported", "contradicted", "unverifiable"}
    v2_report = next(r for r in reports if r["id"] == v2["report_id"] and r["version"] == "2")
    assert report_resource(v2_report["bundle"])["issued"].startswith(v2["issued"][:19])


def test_each_episode_version_has_its_trend_and_the_opening_window(isolated):
    """STITCHED (serial PTB-XL ECGs of patient 641, each strip repeated, PCD-01 chunks of 1 s): the episode report's
    versions each have an analysis message with the bounded trend from the baseline period on; version 1 carries the
    window that completed the persistence and the resolved version the window that closed it, as the monitor sent
    them."""
    from tests.stream.test_monitor_kafka import FAST_RULES

    s = isolated.model_copy(update={"senders": mon.rules_json(), **FAST_RULES})
    ensure_topics(s, topic_specs(s))
    pairs = [p for p in mon.stitched_pairs(find_recordings(SAMPLES)) if p[0] == "ptbxl-641"]
    (bed,) = mon.stitched_beds(pairs, fmt="pcd01")
    # earlier ECG 180 s, later ECG 180 s, the earlier again 120 s: the episode opens in the second part and a window
    # of the third closes it (T back at its baseline for 30 s)
    signal = np.concatenate([bed.record.signal, bed.record.signal[:, :int(120 * bed.record.fs)]], axis=1)
    beds = [dataclasses.replace(bed, record=bed.record.replace(signal=signal))]
    t0 = float(int(time.time()) // 10 * 10 - 30_000)
    sent = list(mon.chunk_messages(mon.Plan(beds, t0=t0, seconds=480), s, run_id="analysis"))
    producer = make_producer(s)
    worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
    try:
        wait_healthy(s, worker)
        for m in sent:
            producer.send(m.topic, value=m.value, key=m.key)
        producer.flush()
        reports = wait_until(
            lambda: [r for r in collect(s).reports if r["headers"].get("twiwatch.kind") == b"monitor-episode"],
            lambda r: any(x["headers"].get("twiwatch.episode-event") == b"resolved" for x in r), 180)
        analysis = wait_until(lambda: [a for a in read_analysis(s) if a["message"]["kind"] == "episode"],
                              lambda a: len({(x["report_id"], x["version"]) for x in a}) >= len(reports), 30)
    finally:
        producer.close()
        stop_worker(worker)
    versions = {(r["id"], int(r["version"])) for r in reports}
    assert len({rid for rid, _ in versions}) == 1
    assert {(a["report_id"], a["version"]) for a in analysis} == versions
    by_version = {a["version"]: a["message"] for a in analysis}
    bed = beds[0]
    for version, msg in by_version.items():
        ep = msg["episode"]
        assert msg["research_only"] is True and msg["status"] == "preliminary"
        assert msg["location"] == {"unit": "REPLAY", "bed": bed.name, "device": bed.device_id}
        assert 0 < len(ep["trend"]) <= MAX_TREND_POINTS
        # The baseline period is in it: the stream's first window, then the windows up to this version's time.
        assert ep["trend"][0]["t"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0)))
        assert set(ep["baseline"]) == set(ep["leads"]) and ep["baseline_source"]
        assert all(ep["trend"][i]["t"] < ep["trend"][i + 1]["t"] for i in range(len(ep["trend"]) - 1))
        assert ep["trend"][-1]["t"] <= msg["issued"]
        assert (ep["windows"]["opened"] is not None) == (version == 1)
        assert ep["state"] == ("resolved" if version == max(by_version) else "open")
    last = max(by_version)
    assert (by_version[last]["episode"]["windows"]["closed"] is not None) and all(
        by_version[v]["episode"]["windows"]["closed"] is None for v in by_version if v != last)
    assert by_version[last]["episode"]["end"] is not None
    assert "back within" in by_version[last]["episode"]["reason"]
    for version, which in ((1, "opened"), (last, "closed")):
        window = by_version[version]["episode"]["windows"][which]
        # the window starts at the event's time: the window that opened (closed) the episode
        start = time.mktime(time.strptime(by_version[version]["issued"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        i0 = int(round((start - t0) * bed.record.fs))
        assert window["fs"] == bed.record.fs and window["n_samples"] == int(10 * bed.record.fs)
        decoded = decode_signal(window)
        for lead in bed.record.leads:
            # as the gateway sent it: integer counts of 0.02 mV (encode_pcd01_chunk's resolution)
            sent_uv = np.rint(bed.record.lead(lead)[i0:i0 + window["n_samples"]].astype(np.float64) / 0.02) * 20.0
            assert np.max(np.abs(decoded[lead] - sent_uv)) <= 1.0 + 1e-6, (which, lead)


def test_an_analysis_message_over_the_size_limit_is_a_dead_letter_and_the_report_stays(isolated):
    """With the one size limit at 70 kB: a real 10-s strip sent as leads I and II at 500 Hz (PTB-XL 00298; 40 kB of
    HL7, a 28 kB report) has a 96 kB analysis message (the four derived limb leads are drawn too). Both strips get
    their report; each analysis message becomes a dead letter with the reason; the worker goes on."""
    from engine.record import make_record
    from integrations.hl7.encode import encode_oru
    from tests.support.records import load_wfdb, ptbxl_path

    s = isolated.model_copy(update={"max_message_bytes": 70_000})
    ensure_topics(s, topic_specs(s))
    full = load_wfdb(ptbxl_path(298, "hr"), "ptbxl/00298")
    two = make_record(full.signal[:2].copy(), ["I", "II"], full.fs, "two-leads", patient_id="P-298",
                      patient_system="urn:test:mrn", acquired_at=datetime(2024, 5, 1, 10, tzinfo=UTC))
    values = [encode_oru(two, control_id=f"{s.app_id}-{i}", sending_app="SIZE") for i in range(2)]
    producer = make_producer(s)
    worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
    try:
        wait_healthy(s, worker)
        for value in values:
            assert len(value) < s.max_message_bytes
            producer.send(s.topic_hl7_raw, key=b"p298", value=value).get(30)
        got = wait_until(lambda: collect(s), lambda c: len(c.reports) >= 2 and len(c.deadletters) >= 2, 120)
        analysis = read_analysis(s)
    finally:
        producer.close()
        stop_worker(worker)
    assert len({r["id"] for r in got.reports}) == 2 and not analysis
    for d in got.deadletters:
        meta = d["meta"]
        assert meta["error.code"] == "analysis-too-large" and "its report was written" in meta["reason"]
        assert int(meta["original.size"]) > s.max_message_bytes
        message = json.loads(d["value"])  # under 1 MiB: kept whole
        assert message["schema"] == "twiwatch.analysis/1" and message["report_id"] in {r["id"] for r in got.reports}
