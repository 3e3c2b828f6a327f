"""Unit tests of the engine's pure steps on hand-made signals."""
from __future__ import annotations

import numpy as np
import pytest

from engine.criteria import find_groups, judge_lead
from engine.filters import detection_filter
from engine.measure import LeadMeasure, classify_polarity
from engine.novelty import assign_novelty
from engine.pacing import detect_spikes
from engine.qrs import detect_qrs
from engine.resample import rational_ratio, to_analysis_rate, to_own_rate
from engine.result import PriorSummary, SecondaryFinding
from engine.triage import triage
from tests.support.synthetic import synthetic_ecg


@pytest.mark.parametrize("fs", [100, 250, 257, 360, 500, 1000])
def test_resample_keeps_timing_and_maps_back(fs):
    up, down = rational_ratio(fs)
    assert abs(fs * up / down - 500) < 1e-9
    t = np.arange(int(10 * fs)) / fs
    x = np.exp(-0.5 * ((t - 4.0) / 0.05) ** 2)[None, :]  # a T-like bump at 4.000 s
    y, fsa = to_analysis_rate(x, fs)
    assert y.shape[1] == int(np.ceil(x.shape[1] * up / down))
    peak = int(np.argmax(y[0]))
    assert abs(peak / fsa - 4.0) <= 2.5 / fsa  # within a couple of samples, no phase shift
    back = int(to_own_rate(peak, fsa, fs))
    assert abs(back / fs - 4.0) <= 1.0 / fs
    assert abs(y[0].max() - 1.0) < 0.05


def test_qrs_detector_high_rate_and_inverted():
    fs = 500.0
    x = synthetic_ecg(fs=fs, hr_bpm=180, duration_s=10)
    q = detect_qrs(detection_filter(x.astype(float), fs), fs)
    assert abs(q.size - 30) <= 1  # 180 bpm over ~9.7 s
    q2 = detect_qrs(detection_filter(-x.astype(float), fs), fs)  # every lead upside down
    assert np.array_equal(q, q2)


def test_pacing_spikes_found_and_not_in_normal_ecg():
    fs = 500.0
    paced = synthetic_ecg(fs=fs, qrs_width_s=0.16, pacing_spikes=True)
    assert detect_spikes(paced.astype(float), fs).size == 10
    assert detect_spikes(synthetic_ecg(fs=fs).astype(float), fs).size == 0
    assert detect_spikes(paced.astype(float)[:, ::5], 100.0).size == 0  # not attempted below 400 Hz


@pytest.mark.parametrize("amp,pos,neg,expected", [
    (0.3, 0.3, -0.01, "positive"), (-0.25, 0.0, -0.25, "negative"), (0.03, 0.03, -0.02, "flat"),
    (-0.2, 0.15, -0.2, "biphasic"), (0.2, 0.2, -0.06, "positive"),
])
def test_polarity_thresholds(amp, pos, neg, expected):
    assert classify_polarity(amp, pos, neg) == expected


def _m(t_amp, r=0.8, s=0.1, polarity=None, sym=1.0):
    pol = polarity or ("negative" if t_amp < -0.05 else "positive" if t_amp > 0.05 else "flat")
    return LeadMeasure(t_amp=t_amp, t_pos=max(t_amp, 0), t_neg=min(t_amp, 0), polarity=pol, symmetry=sym,
                       t_peak_ms=300, t_offset_ms=400, st_j60=0.0, r_amp=r, s_amp=s, qrs_mostly_positive=r > s,
                       p_amp=0.1, pr_ms=160)


def test_contiguity_and_exclusions():
    ms = {lead: _m(0.2) for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")}
    ok = {lead: True for lead in ms}
    # I and II are not contiguous (-aVR between them); aVR never counts
    ms.update(I=_m(-0.3), II=_m(-0.3), aVR=_m(-0.3))
    groups, _ = find_groups(ms, ok)
    assert groups == []
    # II + aVF is the inferior pair
    ms["aVF"] = _m(-0.2)
    groups, _ = find_groups(ms, ok)
    assert [(g.name, g.leads) for g in groups] == [("inferior", ["II", "aVF"])]
    # III with a mostly negative QRS does not extend it; V1 likewise
    ms["III"] = _m(-0.4, r=0.1, s=0.6)
    ms.update(V1=_m(-0.3, r=0.2, s=1.0), V2=_m(-0.3, r=0.4, s=1.0))
    groups, verdicts = find_groups(ms, ok)
    assert [g.leads for g in groups] == [["II", "aVF"]]
    assert "mostly negative" in verdicts["III"].why
    # a not-analysable lead breaks a run; depth must exceed 0.1 mV; prominent R is required
    ms.update(V3=_m(-0.3), V4=_m(-0.3), V5=_m(-0.09), V6=_m(-0.3, r=0.2, s=0.5))
    groups, verdicts = find_groups(ms, {**ok, "V3": False})
    assert [g.leads for g in groups] == [["II", "aVF"]]
    groups, _ = find_groups(ms, ok)
    assert [g.leads for g in groups] == [["II", "aVF"], ["V2", "V3", "V4"]]
    assert groups[1].depths_mv == {"V2": 0.3, "V3": 0.3, "V4": 0.3}
    assert "prominent R" in judge_lead("V6", ms["V6"], True).why


def test_criteria_only_where_leads_exist():
    ms = {"II": _m(-0.3), "V2": _m(-0.3), "V3": _m(-0.3)}
    groups, _ = find_groups(ms, {k: True for k in ms})
    assert [g.leads for g in groups] == [["V2", "V3"]]  # II alone (aVF absent) cannot form a group


def _prior(lead_t, groups=()):
    return PriorSummary(schema_version=1, source_id="p", acquired_at=None, lead_t=lead_t,
                        twi_groups=[list(g) for g in groups])


def test_novelty_new_persistent_unknown():
    ms = {"II": _m(-0.3), "aVF": _m(-0.3), "III": _m(-0.3)}
    groups, _ = find_groups(ms, {k: True for k in ms})
    assert assign_novelty(groups, []) == "unknown"
    upright = {k: {"polarity": "positive", "amplitude_mv": 0.2, "quality": "ok"} for k in ms}
    assert assign_novelty(groups, [_prior(upright)]) == "new"
    inverted = {k: {"polarity": "negative", "amplitude_mv": -0.07, "quality": "ok"} for k in ms}  # within tolerance
    assert assign_novelty(groups, [_prior(inverted)]) == "persistent"
    assert assign_novelty(groups, [_prior(upright), _prior({}, [("II", "aVF")])]) == "persistent"  # most recent wins
    unreadable = {k: {"polarity": None, "amplitude_mv": None, "quality": "not-analysable"} for k in ms}
    assert assign_novelty(groups, [_prior(unreadable).to_dict()]) == "unknown"  # dicts from the table work too
    assert assign_novelty([], [_prior(upright)]) == "none"


def test_triage_classes():
    ms = {"II": _m(-0.3, sym=1.0), "aVF": _m(-0.3, sym=0.9), "V1": _m(-0.3, sym=0.4), "V2": _m(-0.3, sym=0.4)}
    groups, _ = find_groups({k: ms[k] for k in ("II", "aVF")}, {"II": True, "aVF": True})
    assert triage(groups, [], ms, 90, 12, "unknown", []).cls == "ischemic-pattern"
    lbbb = [SecondaryFinding("lbbb", True, ["QRS 150 ms"])]
    assert triage(groups, lbbb, ms, 150, 12, "unknown", []).cls == "secondary:lbbb"
    rbbb = [SecondaryFinding("rbbb", True, [])]
    assert triage(groups, rbbb, ms, 130, 12, "unknown", []).cls == "ischemic-pattern"  # RBBB explains V1-V3 only
    assert triage([], [], ms, 90, 12, "none", []).cls == "no-twi"
    asym = {k: _m(-0.3, sym=0.4) for k in ("II", "aVF")}
    assert triage(groups, [], asym, 90, 12, "unknown", []).cls == "indeterminate"
