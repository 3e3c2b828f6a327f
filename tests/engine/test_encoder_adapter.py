"""The encoder's input adapter (numpy only): lead order, resampling, windowing, absent leads, refusals."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.encoder.adapter import AdapterError, adapt, adapt_batch
from engine.encoder.variants import MODEL_LEADS
from engine.record import STANDARD_LEADS, make_record
from engine.resample import resample_window
from integrations.datasets.wfdb_io import read_wfdb

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PTBXL = SAMPLES / "ptbxl"


def _constant_record(leads=STANDARD_LEADS, fs=500.0, seconds=10.0):
    """Lead k of the canonical order holds the constant k+1 mV, so positions are readable after adapting."""
    n = int(fs * seconds)
    values = {name: STANDARD_LEADS.index(name) + 1.0 for name in leads}
    signal = np.stack([np.full(n, values[name], dtype=np.float32) for name in leads])
    return make_record(signal, list(leads), fs, "test:constant")


def test_model_lead_order_puts_avf_before_avl():
    a = adapt(_constant_record())
    assert a.signal.shape == (12, 5000) and a.signal.dtype == np.float32
    assert MODEL_LEADS[4:6] == ("aVF", "aVL")
    got = a.signal[:, 2500]
    # canonical I, II, III, aVR, aVL(5), aVF(6) -> model I, II, III, aVR, aVF(6), aVL(5)
    assert got.tolist() == [1, 2, 3, 4, 6, 5, 7, 8, 9, 10, 11, 12]
    assert a.lead_mask.all() and not a.notes


def test_ptbxl_100hz_becomes_500hz_close_to_the_real_500hz_record():
    lo = read_wfdb(PTBXL / "records100/00000/00143_lr")
    hi = read_wfdb(PTBXL / "records500/00000/00143_hr")
    a, b = adapt(lo), adapt(hi)
    assert lo.fs == 100 and a.signal.shape == (12, 5000)
    assert "resampled 100 -> 500 Hz" in a.notes
    err = np.abs(a.signal - b.signal)[:, 50:-50]
    assert np.median(err) < 0.01  # mV; 100 Hz lost the content above 50 Hz, so QRS peaks differ a little
    # the 500 Hz record passes through untouched, aVF moved ahead of aVL
    assert np.array_equal(b.signal[4], hi.lead("aVF")) and np.array_equal(b.signal[5], hi.lead("aVL"))


def test_resampling_odd_rates_keeps_a_sine():
    fs_in, f = 257.0, 7.0
    t = np.arange(int(fs_in * 10)) / fs_in
    y = resample_window(np.sin(2 * np.pi * f * t)[None], fs_in, 500.0, 0.0, 4900)
    t_out = np.arange(4900) / 500.0
    assert np.abs(y[0, 100:-100] - np.sin(2 * np.pi * f * t_out[100:-100])).max() < 1e-3


def test_missing_leads_are_zero_with_a_mask_and_limb_leads_are_derived():
    a = adapt(_constant_record(leads=("I", "II", "V1")))
    present = dict(zip(MODEL_LEADS, a.lead_mask, strict=True))
    assert all(present[n] for n in ("I", "II", "III", "aVR", "aVF", "aVL", "V1"))
    assert not any(present[n] for n in ("V2", "V3", "V4", "V5", "V6"))
    assert set(a.derived) == {"III", "aVR", "aVL", "aVF"}
    assert np.all(a.signal[~a.lead_mask] == 0)
    # III = II - I = 1 mV; aVF = II - I/2 = 1.5 mV
    assert a.signal[2, 100] == pytest.approx(1.0) and a.signal[4, 100] == pytest.approx(1.5)
    assert a.absent == ("V2", "V3", "V4", "V5", "V6")
    assert any("absent leads" in n for n in a.notes)


def test_precordial_only_record_has_no_limb_leads():
    a = adapt(_constant_record(leads=("V1", "V2", "V3", "V4", "V5", "V6")))
    assert a.lead_mask.tolist() == [False] * 6 + [True] * 6


def test_long_strips_keep_the_last_10_s_and_short_ones_are_padded():
    n = 500 * 20
    ramp = np.tile(np.linspace(0, 1, n, dtype=np.float32), (12, 1))
    long = adapt(make_record(ramp, list(STANDARD_LEADS), 500.0, "test:long"))
    assert long.cropped_s == pytest.approx(10.0)
    assert long.signal[0, 0] == pytest.approx(ramp[0, n - 5000]) and long.signal[0, -1] == pytest.approx(ramp[0, -1])
    short = adapt(_constant_record(seconds=4.0))
    assert short.padded_s == pytest.approx(6.0)
    assert np.all(short.signal[:, 2000:] == 0) and np.all(short.signal[0, :2000] == 1)


def test_refuses_amplitudes_no_ecg_has():
    rec = _constant_record()
    wild = rec.signal.copy()
    wild[0, 100:200] = 1500.0  # µV values sent as mV
    with pytest.raises(AdapterError) as exc:
        adapt(rec.replace(signal=wild))
    assert exc.value.code == "amplitude" and "µV" in exc.value.reason


def test_flagged_samples_are_interpolated_and_fully_flagged_leads_count_as_absent():
    rec = _constant_record()
    sig, flags = rec.signal.copy(), np.zeros(rec.signal.shape, dtype=bool)
    sig[0, 1000:1010] = np.nan
    flags[0, 1000:1010] = True
    flags[7, :] = True  # V2 entirely flagged
    a = adapt(make_record(sig, list(rec.leads), rec.fs, "test:flags", flagged=flags))
    assert np.isfinite(a.signal).all() and a.signal[0, 1005] == pytest.approx(1.0)
    assert not a.lead_mask[MODEL_LEADS.index("V2")]


def test_adapt_batch_names_the_failing_record():
    good = _constant_record()
    bad_sig = good.signal.copy()
    bad_sig[3, :10] = 900.0
    with pytest.raises(AdapterError, match="record 1"):
        adapt_batch([good, good.replace(signal=bad_sig)])


def test_minimal_wfdb_reader_matches_wfdb_on_every_sample():
    """bench/wfdb_min.py feeds the GPU check where `wfdb` is not installed: it must read samples/ identically."""
    spec = importlib.util.spec_from_file_location("wfdb_min", SAMPLES.parent / "bench" / "wfdb_min.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    heads = sorted(SAMPLES.glob("**/*.hea"))
    assert len(heads) >= 30
    for hea in heads:
        mine, ref = mod.read_record(hea.with_suffix("")), read_wfdb(hea.with_suffix(""))
        assert mine.leads == ref.leads and mine.fs == ref.fs
        assert np.abs(mine.signal - ref.signal).max() < 1e-6, hea.name
