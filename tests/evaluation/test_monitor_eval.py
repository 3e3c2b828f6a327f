"""`twiwatch evaluate monitor` pieces on samples/ only: epoch windows, lead mapping, a stitched stream."""
from __future__ import annotations

import numpy as np

from engine.analyze import analyze
from engine.monitor import MonitorRules, baseline_from_prior, new_state
from evaluation.monitor import Segment, read_segment, run_stream, stitched_windows, windows
from tests.support.records import load_wfdb, ptbxl_path


def test_windows_are_epoch_aligned_and_whole():
    rec = load_wfdb(ptbxl_path(1809), "x")
    sig = np.tile(rec.signal[:2], 3)  # 30 s
    seg = Segment(signal=sig, flagged=np.zeros(sig.shape, bool), leads=["I", "II"], fs=rec.fs, t0=1234.5)
    got = list(windows([seg], 10.0))
    assert [ws for ws, _ in got] == [1240.0, 1250.0]  # 1260..1270 would run past the end (1264.5)
    assert all(w.n_samples == 1000 and w.kind == "chunk" for _, w in got)


def test_read_segment_maps_monitoring_names_and_drops_other_channels(tmp_path):
    import wfdb

    rec = load_wfdb(ptbxl_path(1809), "x")
    p = np.vstack([rec.signal[1], rec.signal[7], rec.signal[9], rec.signal[0] * 0 + 8]).T.astype(np.float64)
    p[100:150, 0] = np.nan  # a dropout
    wfdb.wrsamp("m", fs=100, units=["mV", "mV", "mV", "mmHg"], sig_name=["ECG", "ECGX", "MCL1", "ABP"], p_signal=p,
                fmt=["16"] * 4, adc_gain=[1000.0] * 4, baseline=[0] * 4, write_dir=str(tmp_path))
    hea = tmp_path / "m.hea"  # as in MIT-BIH svdb 800: both channels named ECG (wfdb will not write that itself)
    hea.write_text(hea.read_text().replace(" ECGX", " ECG"))
    seg = read_segment(tmp_path / "m")
    assert seg.leads == ["ECG", "V", "MCL1"]
    assert seg.flagged[0, 100:150].all() and not seg.flagged[1:].any()
    (_, w), = list(windows([seg], 10.0))
    assert w.leads == ("ECG", "V", "V1") and w.lead_marks == {"ECG": "unknown-position", "V": "unknown-position",
                                                              "V1": "approximation"}


def test_a_stitched_stream_opens_exactly_one_episode_in_time():
    a_rec, b_rec = load_wfdb(ptbxl_path(1809), "a"), load_wfdb(ptbxl_path(1844), "b")
    rules = MonitorRules(prior_limb_leads=True)
    wins, change_s = stitched_windows(a_rec, b_rec, rules.window_s)
    state = new_state(rules, prior=baseline_from_prior(analyze(a_rec).summary), prior_label="1992-06-30")
    out = run_stream(wins, rules, state)
    opened = [e for e in out["events"] if e.kind == "opened"]
    assert len(opened) == 1 and set(opened[0].leads) >= {"V4", "V5"}
    assert 0 < opened[0].at_s + rules.window_s - change_s <= rules.persistence_s + 20
    assert out["events"][-1].kind == "resolved" and out["events"][-1].reason.startswith("signal lost")
