"""analyze() end to end on synthetic edge cases (shape of the input, lead sets, durations, rates)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import __version__
from engine.analyze import analyze
from engine.record import make_record
from engine.result import SUMMARY_SCHEMA_VERSION, PriorSummary
from tests.support.synthetic import synthetic_ecg, synthetic_record

INFERIOR_TWI = {"II": -0.3, "III": -0.25, "aVF": -0.3}


def test_normal_ecg_no_twi_and_schema():
    a = analyze(synthetic_record())
    assert a.engine_version == __version__
    assert a.triage.cls == "no-twi" and a.twi == [] and a.novelty == "none"
    assert a.rhythm == "sinus" and a.heart_rate_bpm == pytest.approx(60, abs=1)
    assert all(lr.quality == "ok" and lr.t_polarity == "positive" for n, lr in a.leads.items() if n != "aVR")
    assert a.leads["aVR"].t_polarity == "negative"
    assert a.absent_leads == [] and a.derived_leads == []
    assert a.summary.schema_version == SUMMARY_SCHEMA_VERSION
    assert set(a.summary.lead_t["II"]) == {"polarity", "amplitude_mv", "quality"}
    json.dumps(a.to_dict())  # serialisable as the `twiwatch analyze` JSON
    PriorSummary.from_dict(json.loads(json.dumps(a.summary.to_dict())))


def test_inverted_symmetric_inferior_twi_is_ischemic_pattern():
    a = analyze(synthetic_record(t_amp=INFERIOR_TWI))
    assert [(g.name, g.leads) for g in a.twi] == [("inferior", ["II", "aVF", "III"])]
    assert a.twi[0].depths_mv["II"] == pytest.approx(0.3, abs=0.03)
    assert a.leads["II"].t_polarity == "negative" and a.leads["II"].t_amplitude_mv < -0.25
    assert a.leads["II"].t_symmetry == pytest.approx(1.0, abs=0.15)
    assert a.triage.cls == "ischemic-pattern" and a.novelty == "unknown"
    assert "II" in a.triage.evidence[0] and "novelty unknown" in a.triage.evidence[0]
    # beats are at the record's own rate and the T peak sits where the synthetic T is (R + 0.34 s at 60 bpm)
    b = a.leads["II"].beats[3]
    assert abs((b.t_peak - b.r_peak) / 500 - 0.34) < 0.012


def test_asymmetric_twi_is_not_called_ischemic():
    a = analyze(synthetic_record(t_amp=INFERIOR_TWI, t_sigma=(0.08, 0.03)))  # slow descent, fast return
    assert a.twi and a.leads["II"].t_symmetry < 0.7
    assert a.triage.cls == "indeterminate"


def test_new_vs_prior():
    prior = analyze(synthetic_record(source_id="old")).summary
    a = analyze(synthetic_record(t_amp=INFERIOR_TWI), [prior])
    assert a.novelty == "new" and a.twi[0].novelty == "new"
    again = analyze(synthetic_record(t_amp=INFERIOR_TWI), [prior, a.summary])
    assert again.novelty == "persistent"


def test_biphasic_and_flat_t():
    a = analyze(synthetic_record(biphasic=("V2", "V3"), t_amp={"V5": 0.02}))
    assert a.leads["V2"].t_polarity == "biphasic" and a.leads["V3"].t_polarity == "biphasic"
    assert a.leads["V5"].t_polarity == "flat"
    assert any(g.leads == ["V2", "V3"] and "Wellens" in g.rule for g in a.twi)


def test_paced_wide_qrs_is_secondary():
    a = analyze(synthetic_record(qrs_width_s=0.16, pacing_spikes=True, t_amp=INFERIOR_TWI))
    assert a.rhythm == "paced"
    pacing = next(f for f in a.secondary if f.cause == "ventricular-pacing")
    assert pacing.present and "10 pacing spikes" in pacing.evidence[0]
    assert a.qrs_duration_ms >= 120
    assert a.triage.cls == "secondary:ventricular-pacing"
    # the spikes do not become extra beats
    assert len(a.leads["II"].beats) == 10


def test_100hz_input_indices_at_own_rate():
    a = analyze(synthetic_record(fs=100.0, t_amp=INFERIOR_TWI))
    assert a.fs == 100.0 and a.heart_rate_bpm == pytest.approx(60, abs=1)
    assert [g.leads for g in a.twi] == [["II", "aVF", "III"]]
    r = [b.r_peak for b in a.leads["V5"].beats]
    assert np.allclose(np.diff(r), 100, atol=1)  # one beat per second = 100 samples at 100 Hz
    assert next(f for f in a.secondary if f.cause == "ventricular-pacing").evidence[0].startswith("sampling rate below")


def test_reordered_and_renamed_leads():
    leads = ("V6", "avf", "II", "I", "AVR", "V1", "III", "aVL", "V2", "V3", "V4", "V5")
    x = synthetic_ecg(leads=tuple(n if n[0] in "IV" else {"avf": "aVF", "AVR": "aVR"}.get(n, n) for n in leads),
                      t_amp=INFERIOR_TWI)
    a = analyze(make_record(x, leads, 500.0, "reordered"))
    assert list(a.leads) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert [g.leads for g in a.twi] == [["II", "aVF", "III"]]


def test_subset_of_leads_and_extra_leads():
    rec = synthetic_record(leads=("II", "V2", "V3", "V4"), t_amp={"V2": -0.3, "V3": -0.3})
    x = np.vstack([rec.signal, rec.signal[:1] * 0.5])
    a = analyze(make_record(x, rec.leads + ("vx",), 500.0, "subset"))
    assert "vx" not in a.leads and set(a.absent_leads) == {"I", "III", "aVR", "aVL", "aVF", "V1", "V5", "V6"}
    assert [g.leads for g in a.twi] == [["V2", "V3"]]
    assert any("absent leads" in e for e in a.triage.evidence)


def test_only_i_and_ii_derives_limb_leads():
    full = synthetic_ecg(t_amp=INFERIOR_TWI)
    a = analyze(make_record(full[:2], ("I", "II"), 500.0, "two-leads"))
    assert a.derived_leads == ["III", "aVR", "aVL", "aVF"]
    assert a.leads["aVF"].derived and not a.leads["II"].derived
    assert a.leads["III"].t_polarity == "negative"
    assert [g.leads for g in a.twi] == [["II", "aVF", "III"]]
    assert any("derived" in n for n in a.notes)


def test_short_and_long_strips():
    short = analyze(synthetic_record(duration_s=3.0))
    assert not short.truncated and 2 <= len(short.leads["II"].beats) <= 3
    assert short.leads["II"].t_polarity == "positive"
    long = analyze(synthetic_record(duration_s=90.0, hr_bpm=75))
    assert long.truncated and long.duration_s == pytest.approx(90.0)
    assert long.analysed_from_sample == 30 * 500
    beats = long.leads["II"].beats
    assert beats[0].r_peak >= 30 * 500 and beats[-1].r_peak < 90 * 500
    assert 73 <= len(beats) <= 76
    assert any("last 60 s" in n for n in long.notes)


def test_flat_and_clipped_leads_do_not_count():
    x = synthetic_ecg(t_amp={"II": -0.3, "aVF": -0.3, "III": -0.3})
    x[5] = 0.0  # aVF off
    a = analyze(make_record(x, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"), 500.0,
                            "off"))
    assert a.leads["aVF"].quality == "not-analysable" and "flat" in a.leads["aVF"].quality_reasons[0]
    assert a.leads["aVF"].t_polarity is None
    assert a.twi == []  # II and III are not neighbours without aVF
    y = synthetic_ecg()
    y[1] = np.clip(y[1], -0.05, 0.3)
    b = analyze(make_record(y, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"), 500.0,
                            "clip"))
    assert b.leads["II"].quality == "not-analysable" and "clipped" in b.leads["II"].quality_reasons[0]


def test_flagged_samples_mark_the_lead():
    x = synthetic_ecg()
    flags = np.zeros_like(x, dtype=bool)
    flags[0, 1000:3000] = True
    x[0, 1000:3000] = np.nan
    a = analyze(make_record(x, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"), 500.0,
                            "flag", flagged=flags))
    assert a.leads["I"].quality == "not-analysable"
    assert any("flagged 40%" in r for r in a.leads["I"].quality_reasons)
    assert a.leads["II"].quality == "ok"


def test_noise_only_is_indeterminate_not_a_crash():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.02, (12, 5000)).astype(np.float32)
    a = analyze(make_record(x, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"), 500.0,
                            "noise"))
    assert a.triage.cls in ("indeterminate", "no-twi")
    assert a.twi == []


def test_slow_and_odd_rates():
    slow = analyze(synthetic_record(hr_bpm=30))  # long still TP segments are not a lead-off
    assert all(lr.quality == "ok" for lr in slow.leads.values()) and slow.heart_rate_bpm == pytest.approx(30, abs=1)
    for fs in (257.0, 360.0, 1000.0):
        a = analyze(synthetic_record(fs=fs, t_amp=INFERIOR_TWI))
        assert [g.leads for g in a.twi] == [["II", "aVF", "III"]], fs
        assert abs(a.leads["II"].beats[2].r_peak / fs - (0.35 + 2.0)) < 0.01, fs
