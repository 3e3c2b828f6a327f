"""analyze() on real recordings with clinical expectations (LUDB: cardiologist annotations; PTB-XL: diagnoses).

Records needed (see test_engine_support for the layout): LUDB 11 (inverted T in II/III/aVF, NeuroKit2 issue #1138),
10 (complete RBBB), 83 (complete LBBB, atrial fibrillation), 34 (unipolar ventricular pacing); PTB-XL 468 (INVT in
V4-V5, 100 Hz and 500 Hz), 140 (LVH with strain, 100 Hz), 2 (normal, 100 Hz).
Note: the LUDB copy in ../shared has every lead scaled to exactly 1.0 mV peak-to-peak, so LUDB amplitudes are
relative; polarity and timing are what these tests check on LUDB, voltages only on PTB-XL.
"""
from __future__ import annotations

from engine.analyze import analyze
from tests.support.records import load_wfdb, ludb_path, ludb_waves, ptbxl_path


def test_ludb11_inverted_t_in_ii_found_with_the_right_sign_and_timing():
    path = ludb_path(11)
    a = analyze(load_wfdb(path, "ludb/11", sex="M"))
    for lead in ("II", "III", "aVF"):
        assert a.leads[lead].t_polarity == "negative", lead
    assert a.leads["I"].t_polarity == "positive" and a.leads["V2"].t_polarity == "positive"
    # per-beat T peaks and offsets against the cardiologists' marks in lead II
    ref = [w for w in ludb_waves(path, "ii") if w["kind"] == "t"]
    ours = [b for b in a.leads["II"].beats if b.t_peak is not None]
    for w in ref:
        b = min(ours, key=lambda b: abs(b.t_peak - w["peak"]))
        assert abs(b.t_peak - w["peak"]) <= 10, (w, b)  # 20 ms
        assert abs(b.t_offset - w["off"]) <= 15, (w, b)  # 30 ms
    # the inverted T is below the isoelectric level at each of our T peaks
    assert a.leads["II"].t_amplitude_mv < -0.1
    # III and aVF have small R waves (inferior scar): the criteria exclude them, and the evidence says why
    assert a.twi == [] and a.triage.cls == "no-twi"
    assert any("aVF" in e and "prominent R" in e for e in a.triage.evidence)


def test_ludb10_complete_rbbb():
    a = analyze(load_wfdb(ludb_path(10), "ludb/10"))
    rbbb = next(f for f in a.secondary if f.cause == "rbbb")
    assert rbbb.present and a.qrs_duration_ms >= 120
    assert not next(f for f in a.secondary if f.cause == "lbbb").present


def test_ludb83_complete_lbbb_in_atrial_fibrillation():
    a = analyze(load_wfdb(ludb_path(83), "ludb/83"))
    assert next(f for f in a.secondary if f.cause == "lbbb").present
    assert a.rhythm == "irregular" and a.rr_irregularity > 0.1
    assert a.qrs_duration_ms >= 120


def test_ludb34_ventricular_pacing():
    a = analyze(load_wfdb(ludb_path(34), "ludb/34"))
    pacing = next(f for f in a.secondary if f.cause == "ventricular-pacing")
    assert pacing.present and a.rhythm == "paced"
    assert 55 <= a.heart_rate_bpm <= 65


def test_ptbxl468_invt_v4_v5_at_both_rates():
    for res in ("lr", "hr"):
        a = analyze(load_wfdb(ptbxl_path(468, res), f"ptbxl/468_{res}"))
        assert [g.leads for g in a.twi] == [["V4", "V5"]], res
        assert a.twi[0].depths_mv["V4"] > 0.12
        assert a.triage.cls == "ischemic-pattern"


def test_ptbxl140_lvh_strain_explains_lateral_twi():
    a = analyze(load_wfdb(ptbxl_path(140), "ptbxl/140", sex="M"))
    lvh = next(f for f in a.secondary if f.cause == "lvh-strain")
    assert lvh.present and any("Sokolow" in e for e in lvh.evidence)
    assert a.triage.cls == "secondary:lvh-strain"


def test_ptbxl2_normal():
    a = analyze(load_wfdb(ptbxl_path(2), "ptbxl/2"))
    assert a.triage.cls == "no-twi" and a.rhythm == "sinus"
    assert all(lr.quality == "ok" for lr in a.leads.values())
