"""The prior 12-lead summaries that feed monitor baselines (stream/monitor/prior_summaries.py, docs/SPEC.md §11.9):
what a strip yields, its bytes, which one wins, and how the monitor stage starts a patient's baseline with it. Real
PTB-XL ECGs from samples/ (ptbxl-641's two ECGs: the earlier one is the prior)."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.analyze import analyze
from engine.monitor.episodes import baseline_from_prior, new_state
from engine.record import STANDARD_LEADS
from integrations.datasets.recordings import find_recordings
from integrations.fhir.episode import episode_conclusion
from integrations.identity import patient_key, report_id
from stream.config import WorkerSettings
from stream.monitor import prior_summaries as ps
from stream.monitor import stage
from stream.stages import analyse_only, without_ecgs
from tests.support.chunks import monitoring_piece
from tests.support.records import load_wfdb, ptbxl_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def serial():
    """ptbxl-641's ECGs, oldest first (two 12-lead strips of one patient, 100 Hz)."""
    recs = [r for r in find_recordings(ROOT / "samples") if r.dataset == "ptbxl" and r.patient_id == "ptbxl-641"]
    return [r.load() for r in sorted(recs, key=lambda r: r.acquired_at)]


def test_a_12_lead_strip_yields_its_analysable_t_amplitudes_and_round_trips(serial):
    earlier = serial[0]
    summary = analyze(earlier).summary
    out = ps.summary_of(earlier, summary, report_id(earlier.source_id))
    assert out["t"] == {k: round(v, 4) for k, v in baseline_from_prior(summary).items()}
    assert set(out["t"]) >= {"V1", "V2", "V3", "V4", "V5", "V6"}
    assert out["label"] == earlier.acquired_at.strftime("%Y-%m-%d %H:%M UTC")  # PTB-XL times are naive UTC
    assert out["time_s"] == round(earlier.acquired_at.replace(tzinfo=UTC).timestamp(), 3)
    assert "patient" not in out and earlier.patient_id not in ps.encode(out).decode()  # no MRN, no samples
    assert ps.decode(ps.encode(out)) == out
    assert ps.encode(ps.decode(ps.encode(out))) == ps.encode(out)  # canonical: a redelivery writes the same bytes
    assert ps.new_state_kwargs(out) == {"prior": out["t"], "prior_label": out["label"], "prior_time_s": out["time_s"]}


def test_monitoring_leads_or_an_undated_strip_are_no_prior(serial):
    piece = monitoring_piece(10.0).replace(kind="strip")  # I, II, III and an unnamed chest lead
    assert ps.summary_of(piece, analyze(piece).summary, "r") is None
    undated = serial[0].replace(acquired_at=None)
    assert ps.summary_of(undated, analyze(undated).summary, "r") is None


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"schema_version": 2}',
                                   b'{"schema_version": 1, "report_id": "r", "time_s": 1, "label": "x", "t": {}}',
                                   b'{"schema_version": 1, "report_id": "r", "time_s": "1", "label": "x", '
                                   b'"t": {"V1": 0.1}}'])
def test_decode_refuses_what_is_not_a_summary(value):
    with pytest.raises(ValueError):
        ps.decode(value)


def test_only_a_newer_prior_replaces_an_older_one_in_the_reader():
    reader = ps.PriorReader("unused:9092", "topic", 1 << 20)
    old = {"schema_version": 1, "report_id": "a", "time_s": 100.0, "label": "old", "t": {"V2": 0.1}}
    new = {**old, "report_id": "b", "time_s": 200.0, "label": "new"}
    reader.apply(b"p1", ps.encode(new))
    reader.apply(b"p1", ps.encode(old))  # an older ECG's summary read later
    reader.apply(b"p1", b"garbage")
    assert reader.get("p1")["label"] == "new" and reader.skipped == 1
    assert reader.get("p2") is None and reader.get(None) is None
    reader.apply(b"p1", None)  # a tombstone removes the patient's prior
    assert reader.get("p1") is None


def test_the_analyse_path_marks_only_the_newest_12_lead_ecg(serial):
    s = WorkerSettings()
    earlier, later = serial
    src = {"timestamp_ms": 1_700_000_000_000}
    first = analyse_only(later, None, src, s)
    assert first.prior_summary is not None
    assert first.new_state["monitor_prior"] == {"time_s": first.prior_summary["time_s"],
                                                "report_id": report_id(later.source_id)}
    late_old = analyse_only(earlier, first.new_state, src, s)  # an older 12-lead ECG arriving after the newer one
    assert late_old.prior_summary is None and late_old.new_state["monitor_prior"] == first.new_state["monitor_prior"]
    again = analyse_only(later, None, src, s)  # a redelivery analyses to the same summary (same bytes)
    assert ps.encode(again.prior_summary) == ps.encode(first.prior_summary)
    # An ECG whose report could not be built was never published: it is no one's marker.
    assert "monitor_prior" not in without_ecgs(first.new_state, {later.source_id})


def test_a_patients_baseline_starts_with_their_prior_and_a_bed_without_patient_gets_none(serial):
    s = WorkerSettings(monitor_prior_limb_leads=True, monitor_prior_max_age_s=3600.0)
    assert stage.rules_from(s).prior_limb_leads and stage.rules_from(s).prior_max_age_s == 3600.0
    summary = ps.summary_of(serial[0], analyze(serial[0]).summary, "r1")
    piece = monitoring_piece(1.0)
    patient = patient_key(piece.patient_id, s.patient_hash_secret.get_secret_value(), piece.source_id,
                                system=piece.patient_system)
    priors = {patient: summary}  # what PriorReader holds, and looks up the same way (.get)
    meta = {"timestamp_ms": 0, "partition": 0, "stream": "s1", "chunk_source_id": "c1"}
    step = stage.on_chunk(s, None, stage.assembler_for(s), piece, meta, None, priors=priors)
    assert step.state["episodes"]["prior"]["t"] == summary["t"]
    assert step.state["episodes"]["prior"]["label"] == summary["label"]
    anonymous = piece.replace(patient_id=None)
    step = stage.on_chunk(s, None, stage.assembler_for(s), anonymous, meta, None, priors=priors)
    assert step.state["episodes"]["prior"] is None
    other = piece.replace(patient_id="MRN-other")
    step = stage.on_chunk(s, None, stage.assembler_for(s), other, meta, None, priors=priors)
    assert step.state["episodes"]["prior"] is None


def test_the_episode_report_names_each_baseline_with_its_leads():
    """The prior serves V4 only (say the rest of that ECG was unreadable): an episode in V4 and V5 says which lead
    was judged against which baseline. Real windows of PTB-XL patient 361 (ECG 1809, then 1844: V4 and V5 newly
    inverted), as the engine's own tests feed them."""
    from tests.engine.test_monitor_episodes import T0, Bed, _variants

    prior = load_wfdb(ptbxl_path(1809), "ptbxl-1809").replace(acquired_at=datetime.fromtimestamp(T0 - 3600, UTC))
    summary = ps.summary_of(prior, analyze(prior).summary, report_id(prior.source_id))
    only_v4 = {**summary, "t": {"V4": summary["t"]["V4"]}}
    rules = stage.rules_from(WorkerSettings())
    bed = Bed(new_state(rules, **ps.new_state_kwargs(only_v4)), rules=rules)
    assert bed.feed(_variants(1809), 30) == []
    opened = [e for e in bed.feed(_variants(1844), 6) if e.kind == "opened"]
    assert opened and {"V4", "V5"} <= set(opened[0].leads)
    others = ", ".join(lead for lead in opened[0].leads if lead != "V4")
    text = episode_conclusion(opened[0], monitored_leads=STANDARD_LEADS, reasoning_note="")
    assert (f"against the patient's own baseline (prior 12-lead ECG of {summary['label']} (V4); "
            f"monitoring (first 5 min) ({others}))") in text, text
    assert summary["label"] == datetime.fromtimestamp(T0 - 3600, UTC).strftime("%Y-%m-%d %H:%M UTC")
