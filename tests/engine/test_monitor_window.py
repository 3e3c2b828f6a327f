"""The lean monitor window path (engine/monitor/window.py) on real recordings from samples/."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.analyze import analyze
from engine.monitor.window import POLARITY, TrendPoint, analyse_window
from engine.record import make_record
from tests.support.records import SAMPLES, load_wfdb, ludb_path, ptbxl_path


def _monitor_window(rec, chest: str, name: str | None = None, fs_out: float = 250.0):
    """I, II, III and one chest lead at 250 Hz, as a 3/5-electrode monitor sends them."""
    idx = [rec.leads.index(n) for n in ("I", "II", "III", chest)]
    x = resample_poly(rec.signal[idx].astype(np.float64), int(fs_out), int(rec.fs), axis=1)
    return make_record(x, ["I", "II", "III", name or chest], fs_out, rec.source_id, kind="chunk")


def _real_500hz_records():
    recs = [load_wfdb(p.with_suffix(""), p.stem) for p in sorted((SAMPLES / "ptbxl" / "records500").rglob("*.hea"))]
    recs += [load_wfdb(ludb_path(i), f"ludb-{i}") for i in (1, 3, 6, 7, 10, 11, 15, 18, 21, 34, 51, 83, 90)]
    return recs


def test_lean_path_agrees_with_engine_t_polarity_on_real_windows():
    both = agree = same_quality = total = 0
    for rec in _real_500hz_records():
        for chest in ("V2", "V5"):
            w = _monitor_window(rec, chest)
            full = analyze(w)
            lean = analyse_window(w)
            for lead, lr in full.leads.items():
                if lead == "aVR":  # the lean path does not derive aVR: it never counts (docs/SPEC.md §4.1)
                    continue
                tp = lean[lead]
                total += 1
                same_quality += (lr.quality == "ok") == tp.ok
                if lr.quality == "ok" and tp.ok:
                    both += 1
                    agree += tp.t_polarity == POLARITY[lr.t_polarity]
    assert both >= 200
    assert agree / both >= 0.97, f"T polarity agrees on {agree}/{both} analysable leads"
    # the window path is stricter: a window whose beats are ~half ectopic (PTB-XL 256, bigeminy) is not trended
    assert same_quality / total >= 0.9


def test_unknown_position_and_derived_leads_get_points():
    rec = load_wfdb(ptbxl_path(2, "lr"), "ptbxl-2")
    pts = analyse_window(_monitor_window(rec, "V5", name="V"))
    assert list(pts) == ["I", "II", "III", "aVL", "aVF", "V"]
    assert all(p.ok for p in pts.values())
    assert pts["V"].t_polarity == "upright" and pts["V"].t_amplitude_mv > 0.3
    assert pts["II"].st_j60_mv is not None
    # the window at the stream's own rate (100 Hz is brought to 250 Hz) gives the same polarities
    own = analyse_window(make_record(rec.signal[[0, 1, 2, 10]], ["I", "II", "III", "V"], rec.fs, "x", kind="chunk"))
    assert {k: p.t_polarity for k, p in own.items()} == {k: p.t_polarity for k, p in pts.items()}


def test_flagged_flat_and_noisy_leads_are_not_analysable_with_reasons():
    """A real AF record (PTB-XL 1052): its rhythm's beat-to-beat variation is not noise (engine/quality.py), so II
    stays analysable and says why; muscle noise added to the chest lead fails it as noise."""
    from scipy.signal import butter, sosfiltfilt

    rec = load_wfdb(ptbxl_path(1052, "lr"), "ptbxl-1052")  # 100 Hz
    emg = sosfiltfilt(butter(4, [20, 45], "bandpass", fs=rec.fs, output="sos"),
                      np.random.default_rng(7).normal(0, 1, rec.n_samples))
    chest = rec.signal[7] + (0.15 * emg / np.std(emg)).astype(np.float32)
    sig = np.vstack([rec.signal[[0, 1, 2]], chest[None, :], np.zeros((1, rec.n_samples), np.float32)])
    flagged = np.zeros(sig.shape, dtype=bool)
    flagged[0, 200:] = True  # lead I off (INOP) for most of the window
    w = make_record(sig, ["I", "II", "III", "V", "ECG"], rec.fs, "x", kind="chunk", flagged=flagged)
    pts = analyse_window(w)
    assert not pts["I"].ok and any("flagged" in r for r in pts["I"].reasons)
    assert not pts["aVL"].ok and not pts["aVF"].ok  # derived from I
    assert pts["III"].ok
    assert pts["II"].ok and pts["II"].t_amplitude_mv is not None
    assert not pts["V"].ok and any("noise" in r for r in pts["V"].reasons)
    assert not pts["ECG"].ok and any("flat line" in r for r in pts["ECG"].reasons)
    assert pts["I"].t_amplitude_mv is None and pts["I"].t_polarity is None


def test_non_ecg_channels_ignored_and_short_windows_refused():
    rec = load_wfdb(ptbxl_path(2, "lr"), "ptbxl-2")
    sig = np.vstack([rec.signal[[1]], rec.signal[[1]] * 40 + 80])
    pts = analyse_window(make_record(sig, ["II", "ABP"], rec.fs, "x", kind="chunk"))
    assert list(pts) == ["II"] and pts["II"].ok
    short = analyse_window(make_record(rec.signal[:2, :200], ["I", "II"], rec.fs, "x", kind="chunk"))
    assert all(not p.ok and "shorter" in p.reasons[0] for p in short.values())


def test_trend_point_round_trips_through_json():
    rec = load_wfdb(ptbxl_path(2, "lr"), "ptbxl-2")
    pts = analyse_window(rec.replace(kind="chunk"))
    again = {k: TrendPoint.from_dict(json.loads(json.dumps(p.to_dict()))) for k, p in pts.items()}
    assert again == pts


@pytest.mark.parametrize("fs", [125.0, 360.0])
def test_other_stream_rates(fs):
    rec = load_wfdb(ptbxl_path(143, "hr"), "ptbxl-143")
    w = _monitor_window(rec, "V2", fs_out=fs)
    pts = analyse_window(w)
    ref = analyse_window(_monitor_window(rec, "V2"))
    assert {k: p.t_polarity for k, p in pts.items()} == {k: p.t_polarity for k, p in ref.items()}
