"""The encoder and ECG-R1 on monitor episodes in the monitor stage itself (stream/monitor/stage.py, episode_models.py),
without the broker: a STITCHED PTB-XL patient (serial ECGs, each repeated 3 min; tests the streaming path) in 1-s
chunks through the stage, the shipped encoder on the opening window, and a reading from the serving shim's STAND-IN
generator (NOT ECG-R1) merged as the next version, once."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import standin_shim

from engine.reasoner.orchestrate import reason_and_check, to_report_dict
from engine.record import make_record
from integrations.datasets.recordings import find_recordings
from integrations.fhir.report import report_resource
from integrations.reasoner.http_client import HttpReasoner
from stream.config import ToolSettings
from stream.devtools import monitors as mon
from stream.monitor import episode_models as models
from stream.monitor import stage
from stream.scoring import make_scorer
from stream.stages import Analysed, review_reasoning

ROOT = Path(__file__).resolve().parents[2]
RULES = {"monitor_baseline_s": 60.0, "monitor_persistence_s": 30.0, "monitor_silence_s": 6.0,
         "monitor_close_persist_s": 30.0, "monitor_refractory_s": 60.0, "monitor_min_update_interval_s": 60.0}


def test_which_lead_sets_are_twelve_lead():
    standard = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert models.twelve_lead(standard, {})
    assert models.twelve_lead(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], {})  # limb leads derive from I, II
    assert not models.twelve_lead(["I", "II", "III", "V"], {"V": "unknown-position"})
    assert not models.twelve_lead(standard, {"V1": "approximation"})  # MCL1 standing in for V1 is not V1
    assert not models.twelve_lead(["I", "III", "V1", "V2", "V3", "V4", "V5", "V6"], {})


def test_notes_say_why_no_reasoning():
    four = models.opening_record(["I", "II", "III", "V"], {"V": "unknown-position"}, reasoner=True)
    assert models.reasoning_note(four) == ("No reasoning was requested: the encoder and ECG-R1 take 12 leads at "
                                           "500 Hz, and this stream carries 4 lead(s) (I, II, III, V).")
    off = models.opening_record(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], {}, reasoner=False)
    assert "reasoning is off" in models.reasoning_note(off)


def _run(s: ToolSettings, record, t0: float, seconds: int) -> tuple[dict, list]:
    """The record in 1-s chunks through the stage, as the worker's handler drives it (without the encoder)."""
    entry, assembler, reports = None, stage.assembler_for(s), []
    n = int(record.fs)
    for k in range(seconds):
        piece = make_record(record.signal[:, k * n:(k + 1) * n], list(record.leads), record.fs, f"u#{k}",
                            kind="chunk", patient_id="unit-patient", patient_system="urn:test",
                            acquired_at=datetime.fromtimestamp(t0 + k, UTC), bed="001", device_id="DEV")
        meta = {"timestamp_ms": int((t0 + k) * 1000), "chunk_source_id": f"u#{k}", "partition": 0,
                "stream": "unit-stream", "stream_source": "fhir:urn:test|DEV"}
        step = stage.with_models(stage.on_chunk(s, entry, assembler, piece, meta, None, now=t0 + k))
        entry = step.state
        reports += step.reports
    return entry, reports


@pytest.fixture(scope="module")
def stitched():
    pairs = {p[0]: p for p in mon.stitched_pairs(find_recordings(ROOT / "samples"))}
    return {bed.label: bed.record for bed in mon.stitched_beds([pairs["ptbxl-641"], pairs["ptbxl-555"]])}


def test_opening_is_scored_and_one_reading_merged_once(stitched):
    s = ToolSettings(**RULES, reasoner_url="http://127.0.0.1:9/unused",
                     encoder_manifest=str(ROOT / "models" / "triage-s50" / "encoder.json"))
    t0 = float(1_700_000_000)
    entry, reports = _run(s, stitched["stitched ptbxl-641"], t0, 240)
    opened = next(out for out in reports if out.kind == "opened")
    assert opened.opening is not None and opened.models["reasoning"] == "requested"
    assert "reasoning review pending" in report_resource(_bundle(opened))["conclusion"]

    # The encoder's head on the opening window (the handler's step, here by hand), kept for every later version.
    scorer = make_scorer(s)
    window = opened.opening
    (head,) = scorer.score([Analysed(window, {}, models.opening_analysis(window), [], {})])
    scored = stage.with_head(s, opened, head, scorer.versions)
    div = report_resource(_bundle(scored))["text"]["div"]
    assert "triage head: TWI present p=" in div and scored.version == 1 and scored.report_id == opened.report_id
    entry = stage.with_models(stage.Step(state=entry, reports=[scored])).state

    with standin_shim("lateral-twi") as (server, _):
        result = reason_and_check(window, models.opening_analysis(window), HttpReasoner(server.url), 30)
    reasoning = to_report_dict(result)
    answer = {"report_id": opened.report_id, "stream": "unit-stream", "reasoning": reasoning,
              "review": review_reasoning(reasoning, result)}
    last = max(out.version for out in reports if out.report_id == opened.report_id)
    merged = stage.on_reasoned(s, entry, window, answer)
    (out,) = merged.reports
    assert out.version == last + 1 and out.kind == "reasoned"
    report = report_resource(_bundle(out))
    assert "Model reasoning attached (unverified)" in report["conclusion"] and report["status"] == "preliminary"
    assert "Cross-check vs measurements" in report["text"]["div"] and "triage head: TWI present" in report["text"][
        "div"]
    # The same reading again (a redelivery) changes nothing; read again from the state before, it gives the same bytes.
    again = stage.on_reasoned(s, stage.with_models(merged).state, window, answer)
    assert again.reports == [] and again.state == stage.with_models(merged).state
    assert stage.on_reasoned(s, entry, window, answer).reports[0].value == out.value
    # The engine's version counter moved with it: the episode's next version follows the reasoned one.
    assert merged.state["episodes"]["episode"]["version"] == out.version


def test_four_lead_episode_is_not_scored_and_says_why(stitched):
    s = ToolSettings(**RULES, reasoner_url="http://127.0.0.1:9/unused")
    rec = stitched["stitched ptbxl-555"]
    rows = [rec.leads.index(lead) for lead in ("I", "II", "III", "V5")]
    four = rec.replace(signal=rec.signal[rows], leads=("I", "II", "III", "V"), lead_marks={"V": "unknown-position"})
    _, reports = _run(s, four, float(1_700_000_000), 240)
    opened = next(out for out in reports if out.kind == "opened")
    assert opened.opening is None and opened.models["reasoning"] == "not-12-lead"
    conclusion = report_resource(_bundle(opened))["conclusion"]
    assert "No reasoning was requested: the encoder and ECG-R1 take 12 leads at 500 Hz" in conclusion


def _bundle(out) -> dict:
    return json.loads(out.value)
