"""The monitor baseline from a patient's prior 12-lead ECG, on the real broker through a real worker (docs/SPEC.md
§11.9, issue 11). Real PTB-XL ECGs of one patient (patient 361, samples/): ECG 1809 (T upright or flat in V4-V6) is
sent as the prior 12-lead strip; ECG 1844 (T newly inverted in V4 and V5) is played as a 12-lead bedside monitor
(STITCHED: the one strip repeated, labelled so; it tests the baseline path, not the T-wave detector). With the
default settings the prior serves the chest leads, so only a bed whose patient has it can see the change.

Three beds play the same later strip for three patients: A has the earlier ECG as a prior an hour old (and, sent
after it, an older 12-lead ECG that must not replace it), B has one older than the age limit, C has none while
another patient (D) has one. The worker is SIGKILLed after the strips and restarted before the chunks come, so the
priors it uses are the ones it rebuilt from the topic.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from integrations.identity import patient_key
from stream.devtools import monitors as mon
from stream.devtools.e2e import start_worker, stop_worker, wait_healthy
from stream.devtools.outputs import _consumer, _read_all, collect
from stream.devtools.replay import encode_for
from stream.producer import make_producer
from tests.stream.test_monitor_kafka import _episode_reports, read_trends, settings_for
from tests.support.polling import wait_until
from tests.support.records import load_wfdb, ptbxl_path

pytestmark = pytest.mark.kafka
DAY = 86400.0


def worker_health(s) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.worker_web_port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def diagnostic_report(report: dict) -> dict:
    return next(e["resource"] for e in json.loads(report["value"])["entry"]
                if e["resource"]["resourceType"] == "DiagnosticReport")


def test_a_patients_prior_12_lead_ecg_is_their_monitor_baseline_across_a_restart(isolated):
    s = settings_for(isolated.model_copy(update={"monitor_prior_max_age_s": 2 * DAY}))
    assert not s.monitor_prior_limb_leads  # the default: limb leads keep the monitoring baseline
    secret = s.patient_hash_secret.get_secret_value()
    earlier, later = (load_wfdb(ptbxl_path(eid), f"ptbxl-{eid}") for eid in (1809, 1844))
    # pcd01 beds: their PID-3 carries no authority, as the strips below (the patient key includes it, §10.4).
    beds = mon.stitched_beds([(f"ptbxl-361-{x}", later, later) for x in "abc"], repeat_s=150.0, fmt="pcd01")
    a, b, c = (bed.patient_id for bed in beds)
    d = "stitched-ptbxl-361-d"
    t0 = float(int(time.time()) // 10 * 10 - 20_000)

    def strip(record, patient, acquired_s, n):
        moved = record.replace(patient_id=patient, patient_system="",
                               acquired_at=datetime.fromtimestamp(acquired_s, UTC))
        topic, value, source_id = encode_for(moved, "hl7" if n % 2 else "fhir", f"prior-{n}", s)
        return topic, patient_key(patient, secret, source_id, system=""), value

    strips = [strip(earlier, a, t0 - 3600, 0),
              strip(later, a, t0 - DAY, 1),  # older than A's prior, analysed after it: must not replace it
              strip(earlier, b, t0 - 3 * DAY, 2),  # beyond the 2-day limit
              strip(earlier, d, t0 - 3600, 3)]  # another patient's
    keys = {p: patient_key(p, secret, None, system="") for p in (a, b, c, d)}
    producer = make_producer(s)
    log = s.cache_dir / "test" / f"{s.app_id}.log"
    worker = start_worker(s, log)
    try:
        wait_healthy(s, worker)
        for topic, key, value in strips:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush()
        wait_until(lambda: collect(s).reports, lambda r: len({x["id"] for x in r}) >= 4, 120)
        assert wait_until(lambda: worker_health(s), lambda h: h.get("prior_summaries") == 3, 30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        worker = start_worker(s, log)
        wait_healthy(s, worker)
        assert worker_health(s)["prior_summaries"] == 3  # rebuilt from the topic before it reported ready
        for m in mon.chunk_messages(mon.Plan(beds, t0=t0, seconds=150), s, run_id="prior"):
            producer.send(m.topic, value=m.value, key=m.key)
        producer.flush()
        episodes = wait_until(lambda: _episode_reports(s), lambda r: len(r) >= 1, 180)
        trends = wait_until(lambda: read_trends(s), lambda t: len(t) >= 3 * 14, 120)
        time.sleep(3)  # any episode report of beds B and C would be out by now (their windows are)
        episodes = _episode_reports(s)
        consumer = _consumer(s)
        try:
            summaries = {(r.key, r.value) for r in _read_all(consumer, s.topic_prior_summaries)}
        finally:
            consumer.close()
    finally:
        producer.close()
        stop_worker(worker)

    # One summary per patient with a young-enough-or-not 12-lead ECG; A's older ECG was never published.
    assert {k.decode() for k, _ in summaries} == {keys[a], keys[b], keys[d]} and len(summaries) == 3
    assert not any(p.encode() in v for _, v in summaries for p in (a, b, d))  # no patient id in the values
    label = datetime.fromtimestamp(t0 - 3600, UTC).strftime("%Y-%m-%d %H:%M UTC")
    first = {}
    for t in sorted(trends, key=lambda t: t["window_start_s"]):
        first.setdefault(t["patient"], t)
    assert set(first) == {keys[a], keys[b], keys[c]}
    prior_t = json.loads(next(v for k, v in summaries if k.decode() == keys[a]))["t"]
    # A's very first window is judged against the prior in the chest leads; the limb leads, and B's and C's leads,
    # learn a monitoring baseline (none yet).
    baseline_a = {lead: v for lead, v in first[keys[a]]["baseline"].items() if v is not None}
    assert set(baseline_a) >= {"V4", "V5"} and set(baseline_a) <= {"V1", "V2", "V3", "V4", "V5", "V6"}
    assert all(abs(v - prior_t[lead]) < 1e-6 for lead, v in baseline_a.items())
    assert not any(first[keys[b]]["baseline"].values()) and not any(first[keys[c]]["baseline"].values())
    # Only A has an episode, and its report says its baseline was the prior 12-lead ECG.
    assert {r["id"] for r in episodes} and len({r["id"] for r in episodes}) == 1
    opened = min(episodes, key=lambda r: int(r["version"]))
    report = diagnostic_report(opened)
    assert a in json.dumps(report["subject"])
    text = report["conclusion"]
    assert f"against the patient's own baseline (prior 12-lead ECG of {label})" in text, text
    assert text.startswith("RESEARCH USE ONLY") and "not a diagnosis" in text
