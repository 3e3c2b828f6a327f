"""The engine's 4th UDMI ST-depression criterion, the narrow-pulse pacing-spike detector and the WPW check.

Synthetic cases for the rules themselves; the shipped real records for the behaviour on data (PTB-XL 143: ventricular
pacing at 500 Hz with 3-4-sample biphasic stimuli; PTB-XL 461: WPW type B; PTB-XL 2: normal).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import st
from engine.analyze import analyze
from engine.pacing import detect_spikes
from engine.record import STANDARD_LEADS, make_record
from engine.result import PriorSummary
from tests.support.records import load_wfdb, ptbxl_path
from tests.support.synthetic import synthetic_ecg

FS = 500.0
BEATS = np.arange(0.35, 9.95, 1.0)  # synthetic_ecg's R peaks at 60 bpm


def _with_st(leads: dict[str, float], slope_mv_s: float = 0.0, fs: float = FS) -> np.ndarray:
    """Synthetic ECG plus an ST shift from 60 to 200 ms after each R (depth at the J point, then the given slope),
    tapered in and out over 20 ms so it has no edges of its own."""
    x = synthetic_ecg(fs=fs).astype(float)
    n = x.shape[1]
    t = np.arange(n) / fs
    for b in BEATS:
        rel = t - b
        inside = (rel >= 0.04) & (rel <= 0.22)
        taper = np.clip((rel - 0.04) / 0.02, 0, 1) * np.clip((0.22 - rel) / 0.02, 0, 1)
        for lead, depth in leads.items():
            x[STANDARD_LEADS.index(lead)] += np.where(inside, (-depth + slope_mv_s * (rel - 0.06)) * taper, 0.0)
    return x


def _rec(x: np.ndarray, fs: float = FS, source: str = "synthetic/st"):
    return make_record(x, STANDARD_LEADS, fs, source)


# --- ST depression ---------------------------------------------------------------------------------------------

def test_st_measures_shape_on_a_hand_made_template():
    fs = 500.0
    tref = np.zeros((3, 200))
    tref[0, 100:140] = -0.1  # horizontal, depressed
    tref[1, 100:140] = -0.1 - 1.0 * np.arange(40) / fs  # downsloping (-1 mV/s)
    tref[2, 100:140] = -0.1 + 3.0 * np.arange(40) / fs  # upsloping (+3 mV/s)
    m = st.st_measures(tref, 100, np.array([-1, -1, -1]), fs)
    assert [x.shape for x in m] == ["horizontal", "downsloping", "upsloping"]
    assert m[0].j_mv == pytest.approx(-0.1, abs=0.01)
    assert st.is_depressed("V5", m[0], True) and st.is_depressed("V5", m[1], True)
    assert not st.is_depressed("V5", m[2], True)  # upsloping does not count
    assert not st.is_depressed("aVR", m[0], True) and not st.is_depressed("V5", m[0], False)


def test_horizontal_st_depression_in_contiguous_leads_is_a_group():
    a = analyze(_rec(_with_st({"V4": 0.15, "V5": 0.2, "V6": 0.15})))
    assert [g.leads for g in a.st_depression] == [["V4", "V5", "V6"]]
    g = a.st_depression[0]
    assert "4th UDMI" in g.rule and all(d >= 0.1 for d in g.depths_mv.values())
    assert a.leads["V5"].st_shape in ("horizontal", "downsloping") and a.leads["V5"].st_j_mv <= -0.1
    assert a.st_depression_novelty == "unknown"  # no prior
    assert any(e.startswith("ST depression") for e in a.triage.evidence)
    assert a.summary.st_depression_groups == [["V4", "V5", "V6"]]
    json.dumps(a.to_dict())


def test_no_st_group_in_a_normal_ecg_or_a_single_lead_or_upsloping():
    assert analyze(_rec(synthetic_ecg(fs=FS).astype(float))).st_depression == []
    assert analyze(_rec(_with_st({"V5": 0.2}))).st_depression == []  # one lead is not two contiguous leads
    up = analyze(_rec(_with_st({"V4": 0.15, "V5": 0.2, "V6": 0.15}, slope_mv_s=3.0)))
    assert up.st_depression == [] and up.leads["V5"].st_shape == "upsloping"


def test_st_depression_new_vs_prior():
    prior_normal = analyze(_rec(synthetic_ecg(fs=FS).astype(float), source="p1")).summary
    now = analyze(_rec(_with_st({"V4": 0.15, "V5": 0.2, "V6": 0.15})), priors=[prior_normal])
    assert now.st_depression_novelty == "new" and now.st_depression[0].novelty == "new"
    again = analyze(_rec(_with_st({"V4": 0.15, "V5": 0.2, "V6": 0.15})), priors=[now.summary])
    assert again.st_depression_novelty == "persistent"
    # a prior stored before ST measures existed (summary v1: no lead_st) cannot tell
    old = json.loads(json.dumps(prior_normal.to_dict()))
    old.pop("lead_st"), old.pop("st_depression_groups")
    old["schema_version"] = 1
    v1 = analyze(_rec(_with_st({"V4": 0.15, "V5": 0.2, "V6": 0.15})), priors=[PriorSummary.from_dict(old)])
    assert v1.st_depression_novelty == "unknown"


# --- pacing spikes ------------------------------------------------------------------------------------------------

def _biphasic_spikes(x: np.ndarray, fs: float, leads: list[int], height: float) -> np.ndarray:
    """Add a 3-sample biphasic stimulus (bipolar-like after anti-alias filtering) 100 ms before each R (10 ms before
    the 160 ms QRS)."""
    y = x.copy()
    for b in BEATS:
        i = int(round((b - 0.10) * fs))
        for li in leads:
            y[li, i:i + 3] += height * np.array([0.5, 1.0, -0.6])
    return y


def test_small_biphasic_spikes_in_several_leads_are_found():
    x = synthetic_ecg(fs=FS, qrs_width_s=0.16).astype(float)
    y = _biphasic_spikes(x, FS, [1, 2, 5, 7, 8, 9], 0.3)
    sp = detect_spikes(y, FS)
    assert sp.size == len(BEATS)
    assert np.all(np.abs(sp - np.round((BEATS - 0.10) * FS)) <= 2)


def test_pulses_in_too_few_leads_or_slow_waves_are_not_spikes():
    x = synthetic_ecg(fs=FS).astype(float)
    assert detect_spikes(_biphasic_spikes(x, FS, [7, 8], 0.3), FS).size == 0  # two leads: electrode noise
    assert detect_spikes(_biphasic_spikes(x, FS, [1, 2, 5, 7, 8, 9], 0.05), FS).size == 0  # under 0.1 mV
    assert detect_spikes(synthetic_ecg(fs=FS, qrs_width_s=0.16).astype(float), FS).size == 0


def test_ptbxl143_paced_at_500hz():
    a = analyze(load_wfdb(ptbxl_path(143, "hr"), "ptbxl/143"))
    pacing = next(f for f in a.secondary if f.cause == "ventricular-pacing")
    assert pacing.present and a.rhythm == "paced"
    assert a.triage.cls in ("secondary:ventricular-pacing", "no-twi")


# --- WPW ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("res", ["hr", "lr"])
def test_ptbxl461_wpw_at_both_rates(res):
    a = analyze(load_wfdb(ptbxl_path(461, res), f"ptbxl/461/{res}"))
    wpw = next(f for f in a.secondary if f.cause == "wpw")
    assert wpw.present, wpw.evidence
    assert any("delta" in e for e in wpw.evidence)
    # its lateral TWI is secondary to pre-excitation, not ischemic
    assert a.twi and a.triage.cls == "secondary:wpw"


def test_normal_ecg_is_not_wpw():
    a = analyze(load_wfdb(ptbxl_path(2), "ptbxl/2"))
    assert not next(f for f in a.secondary if f.cause == "wpw").present
