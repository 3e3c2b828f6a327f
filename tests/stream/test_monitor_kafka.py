"""Monitor streams on the real broker (docs/SPEC.md §11): real long recordings replayed as bedside monitors in 1-s
chunks, with faults, through a real worker; windows, trend points and episode reports read back from the topics.

The episode rules are shortened for the tests (baseline 60 s, persistence 30 s, silence 6 s of wall time) so that
minutes of event time, sent flat out, exercise them; the defaults are the ones documented in the README.
"""
from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from engine.monitor.window import analyse_window
from integrations.datasets.recordings import find_recordings
from stream.devtools import monitors as mon
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import _consumer, _read_all, collect
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs
from tests.support.polling import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
FAST_RULES = {"monitor_baseline_s": 60.0, "monitor_persistence_s": 30.0, "monitor_silence_s": 6.0,
              "monitor_tick_s": 1.0, "monitor_close_persist_s": 30.0, "monitor_refractory_s": 60.0,
              "monitor_min_update_interval_s": 60.0}


def settings_for(isolated):
    s = isolated.model_copy(update={"senders": mon.rules_json(), **FAST_RULES})
    ensure_topics(s, topic_specs(s))
    return s


def read_trends(s) -> list[dict]:
    consumer = _consumer(s)
    try:
        return [json.loads(r.value) | {"_ts": r.timestamp} for r in _read_all(consumer, s.topic_trends)]
    finally:
        consumer.close()


def by_window(trends: list[dict]) -> dict[tuple[str, float], list[dict]]:
    out = defaultdict(list)
    for t in trends:
        out[(t["stream"], t["window_start_s"])].append(t)
    return out


def test_faulty_monitor_streams_are_windowed_correctly(isolated):
    """Two beds (PCD-01 and W01) with jittered stamps, reordering, duplicates, a dropout, lead-off and a patient
    change: every window lies on the 10-s epochs, once per stream, and its trend points are those of the same
    samples analysed directly (within the placement jitter); lead-off windows say so; the new patient starts a new
    baseline."""
    s = settings_for(isolated)
    recordings = mon.load_long_recordings(ROOT / "samples" / "long")
    beds = mon.monitor_beds(recordings, 2, "mixed")[:2]  # pcd01 (CPSC 2021, I + II) and w01 (MIT-BIH 100)
    t0 = float(int(time.time()) // 10 * 10 - 10_000 + 3)  # event time in the past, 3 s off the epoch
    faults = mon.Faults(jitter_s=0.05, reorder=0.1, duplicate=0.1, dropout=0.0, lead_off=0.04,
                        patient_change_s=100.0, seed=3)
    plan = mon.Plan(beds, t0=t0, seconds=150, faults=faults)
    sent = list(mon.chunk_messages(plan, s, run_id="faults"))
    dropped_k = 57  # one chunk lost in bed 0: the window holding it is never made
    sent = [m for m in sent if not (m.bed == 0 and m.second == dropped_k)]
    producer = make_producer(s)
    worker = start_worker(s, s.cache_dir / "test" / f"{s.app_id}.log")
    try:
        wait_healthy(s, worker)
        for m in sent:
            producer.send(m.topic, value=m.value, key=m.key)
        producer.flush()
        # 150 s from 3 s past an epoch: 14 full windows per bed, less those lost to the gap and the patient change.
        trends = wait_until(lambda: read_trends(s), lambda t: len(t) >= 20, 180)
        time.sleep(8)  # the silence tick flushes what waited for late chunks
        trends = read_trends(s)
        got = collect(s)
    finally:
        producer.close()
        stop_worker(worker)
    assert not got.deadletters, [d["meta"] for d in got.deadletters]
    windows = by_window(trends)
    assert all(len(v) == 1 for v in windows.values()), "a window was published twice"
    streams = sorted({t["stream"] for t in trends})
    assert len(streams) == 2
    per_stream = {st: sorted(t["window_start_s"] for t in trends if t["stream"] == st) for st in streams}
    for starts in per_stream.values():
        assert all(w % 10 == 0 for w in starts) and starts == sorted(set(starts))
    lead_off_at = {(m.bed, m.second) for m in sent if m.fault == "lead-off"}
    key_of = {b.index: mon.stream_key(b.stream(), s.patient_hash_secret.get_secret_value()) for b in beds}
    stream_bed = {key_of[i]: i for i in key_of}
    # The gap: bed 0 has no window holding second 57 (t0 + 57 lies in the window starting t0 + 57 - 60 % 10).
    gap_window = (t0 + dropped_k) // 10 * 10
    assert gap_window not in per_stream[key_of[0]] and gap_window in per_stream[key_of[1]]
    checked = lead_off = compared = agreed = 0
    for (stream, start), (trend,) in windows.items():
        bed = beds[stream_bed[stream]]
        seconds = range(int(start - t0), int(start - t0) + 10)
        points = trend["points"]
        fs, n = bed.record.fs, int(10 * bed.record.fs)
        i0 = int(round((start - t0) * fs))
        flags = np.zeros((len(bed.record.leads), n), dtype=bool)
        for k in seconds:  # the lead-off (INOP) seconds, as the sender marked them
            if (bed.index, k) in lead_off_at:
                j = int(round((k - (start - t0)) * fs))
                flags[1, max(0, j):j + int(fs)] = True
        lead_off += bool(flags.any())
        direct = analyse_window(bed.record.replace(signal=bed.record.signal[:, i0:i0 + n], kind="chunk",
                                                   flagged=flags if flags.any() else None))
        for lead, p in points.items():
            d = direct[lead]
            compared += 1
            # The worker's samples went through the codecs (0.02 mV resolution) and were placed by jittered stamps:
            # a window whose noise verdict sits on the threshold may tip; everything else must agree.
            agreed += p["quality"] == d.quality
            if p["quality"] == d.quality == "ok":
                assert abs(p["t_amplitude_mv"] - d.t_amplitude_mv) <= 0.03, (lead, start)
                checked += 1
    assert checked >= 20 and lead_off >= 1 and agreed >= 0.9 * compared
    # The patient change at 100 s: bed 0's trend points before and after name two patient keys.
    patients = [t["patient"] for t in sorted(trends, key=lambda t: t["window_start_s"]) if t["stream"] == key_of[0]]
    assert len(set(patients)) == 2 and patients.index(patients[-1]) > 0


def _episode_reports(s) -> list[dict]:
    return [r for r in collect(s).reports if b"monitor-episode" in dict(r["headers"]).get("twiwatch.kind", b"")]


def test_a_stitched_serial_stream_yields_one_episode_report_and_survives_sigkill(isolated):
    """STITCHED (serial PTB-XL ECGs of one patient, each strip repeated 3 min; tests the streaming path): one
    episode report, version 1 when the inversion has persisted, the last version when the stream falls silent. The
    worker is SIGKILLed mid-stream and restarted: no episode lost, none duplicated, no window published twice with
    different content."""
    s = settings_for(isolated)
    pairs = [p for p in mon.stitched_pairs(find_recordings(ROOT / "samples")) if p[0] == "ptbxl-641"]
    beds = mon.stitched_beds(pairs, fmt="pocd")
    t0 = float(int(time.time()) // 10 * 10 - 20_000)
    sent = list(mon.chunk_messages(mon.Plan(beds, t0=t0, seconds=360), s, run_id="stitched"))
    producer = make_producer(s)
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    worker = start_worker(s, log)
    try:
        wait_healthy(s, worker)
        for m in sent[:200]:  # into the later strip (from 180 s): the inversion is persisting
            producer.send(m.topic, value=m.value, key=m.key)
        producer.flush()
        wait_until(lambda: read_trends(s), lambda t: len(t) >= 15, 120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        for m in sent[200:]:
            producer.send(m.topic, value=m.value, key=m.key)
        producer.flush()
        worker = start_worker(s, log)
        wait_healthy(s, worker)
        reports = wait_until(lambda: _episode_reports(s),
                       lambda r: any(dict(x["headers"]).get("twiwatch.episode-event") == b"resolved" for x in r), 120)
        trends = wait_until(lambda: read_trends(s), lambda t: len({x["window_start_s"] for x in t}) >= 36, 60)
    finally:
        producer.close()
        stop_worker(worker)
    ids = {r["id"] for r in reports}
    assert len(ids) == 1, f"expected one episode, got {len(ids)}"
    versions = Counter(r["version"] for r in reports)
    copies = Counter((r["version"], r["value"]) for r in reports)
    assert len(copies) == len(versions), "a version was written twice with different content"
    assert sorted(int(v) for v in versions) == list(range(1, len(versions) + 1))
    first = min(reports, key=lambda r: int(r["version"]))
    last = max(reports, key=lambda r: int(r["version"]))
    report = next(e["resource"] for e in json.loads(first["value"])["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["status"] == "preliminary" and report["conclusion"].startswith("RESEARCH USE ONLY")
    # 12 leads, but no reasoner configured here (docs/SPEC.md §11.9 "Models")
    assert "No reasoning was requested: reasoning is off" in report["conclusion"]
    start = report["effectivePeriod"]["start"]
    opened_s = time.mktime(time.strptime(start[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    # Opens after the later strip began (180 s) plus the 30-s persistence, within 20 s more (the goal).
    assert 180.0 <= opened_s - t0 <= 180.0 + 30.0 + 20.0
    final = next(e["resource"] for e in json.loads(last["value"])["entry"]
                 if e["resource"]["resourceType"] == "DiagnosticReport")
    assert "end" in final["effectivePeriod"] and "Resolved" in final["conclusion"]
    windows = by_window(trends)
    for copies_of_window in windows.values():
        points = {json.dumps(t["points"], sort_keys=True) for t in copies_of_window}
        assert len(points) == 1, "a recomputed window differs from the first computation"
    starts = sorted(w for _, w in windows)
    assert starts == sorted(set(starts))
    assert [w - t0 for w in starts] == [10.0 * k for k in range(36)]  # 360 s of stream from an epoch: 36 windows
    assert np.all(np.diff(starts) == 10.0)
