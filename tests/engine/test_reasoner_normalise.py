"""normalise(): real records (PTB-XL 100/500 Hz, LUDB 500 Hz) -> ECG-R1's (12, 5000) float32, 500 Hz, I II III aVR
aVF aVL V1-V6; refusals with reasons. Records: PTB-XL 468 (100 Hz and 500 Hz), LUDB 10 (500 Hz)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from engine.reasoner.errors import ReasonerInputError
from engine.reasoner.normalise import ECGR1_LEADS, MAX_FLAGGED_FRACTION, normalise
from engine.record import make_record
from integrations.datasets.recordings import find_recordings


def _rec(recordings, dataset, rid):
    return next(r for r in recordings if (r.dataset, r.record_id) == (dataset, rid)).load()


@pytest.fixture(scope="module")
def ptbxl468_500():
    return next(r for r in find_recordings(SAMPLES, prefer_500hz=True)
                if (r.dataset, r.record_id) == ("ptbxl", "468")).load()


def _subset(rec, leads):
    idx = [rec.leads.index(n) for n in leads]
    return make_record(rec.signal[idx], list(leads), rec.fs, rec.source_id)


def test_500hz_record_is_reordered_by_name_exactly(recordings):
    rec = _rec(recordings, "ludb", "10")
    out = normalise(rec)
    assert out.signal.shape == (12, 5000) and out.signal.dtype == np.float32 and out.signal.flags.c_contiguous
    assert out.leads == ECGR1_LEADS and out.fs == 500.0 and out.padded_s == 0.0
    assert ECGR1_LEADS[4:6] == ("aVF", "aVL")  # ECG-R1 (MIMIC-IV-ECG) order, unlike the canonical aVL, aVF
    for i, name in enumerate(ECGR1_LEADS):
        np.testing.assert_array_equal(out.signal[i], rec.lead(name))
    assert out.notes == []


def test_order_comes_from_names_not_positions(recordings):
    rec = _rec(recordings, "ludb", "10")
    shuffled = _subset(rec, ("V6", "aVF", "I", "V1", "aVL", "III", "V3", "II", "aVR", "V5", "V2", "V4"))
    np.testing.assert_array_equal(normalise(shuffled).signal, normalise(rec).signal)
    upper = make_record(rec.signal, ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"],
                        rec.fs, "ptbxl-style-names")  # PTB-XL writes AVR/AVL/AVF
    np.testing.assert_array_equal(normalise(upper).signal, normalise(rec).signal)


def test_ptbxl_100hz_is_resampled_to_500hz_and_matches_the_500hz_recording(recordings, ptbxl468_500):
    low = _rec(recordings, "ptbxl", "468")
    assert low.fs == 100.0 and low.leads[4:6] == ("aVL", "aVF")
    out = normalise(low)
    assert out.signal.shape == (12, 5000) and out.source_fs == 100.0
    assert "resampled 100 Hz -> 500 Hz" in out.notes
    ref = normalise(ptbxl468_500).signal  # the same ECG recorded at 500 Hz (PTB-XL's 100 Hz is derived from it)
    for i, name in enumerate(ECGR1_LEADS):
        r = np.corrcoef(out.signal[i, 250:-250], ref[i, 250:-250])[0, 1]
        assert r > 0.97, (name, r)
    # aVF and aVL went to rows 4 and 5: each matches its own lead better than the other one
    corr = lambda a, b: np.corrcoef(out.signal[a], ref[b])[0, 1]  # noqa: E731
    assert corr(4, 4) > corr(4, 5) and corr(5, 5) > corr(5, 4)


def test_long_strip_keeps_the_last_10_seconds(recordings):
    rec = _rec(recordings, "ludb", "10")
    first, last = rec.signal[:, :2500], rec.signal
    longer = make_record(np.hstack([first, last]), rec.leads, rec.fs, "ludb-15s")
    out = normalise(longer)
    np.testing.assert_array_equal(out.signal, normalise(rec).signal)
    assert out.source_start_s == 5.0 and any("last 10 s" in n for n in out.notes)


def test_strip_between_8_and_10_s_is_padded_at_the_start_with_edge_values(recordings):
    rec = _rec(recordings, "ludb", "10")
    short = make_record(rec.signal[:, -4500:], rec.leads, rec.fs, "ludb-9s")
    out = normalise(short)
    assert out.padded_s == 1.0 and out.real_s == 9.0
    assert any("padded" in n for n in out.notes)
    idx = [rec.leads.index(n) for n in ECGR1_LEADS]
    np.testing.assert_array_equal(out.signal[:, 500:], rec.signal[idx, -4500:])
    np.testing.assert_array_equal(out.signal[:, :500], np.repeat(out.signal[:, 500:501], 500, axis=1))


def test_shorter_than_8_s_is_refused(recordings):
    rec = _rec(recordings, "ludb", "10")
    with pytest.raises(ReasonerInputError) as err:
        normalise(make_record(rec.signal[:, :3950], rec.leads, rec.fs, "ludb-7.9s"))
    assert err.value.code == "too-short" and "7.90 s" in err.value.reason


def test_missing_precordial_lead_is_refused_with_the_lead_named(recordings):
    rec = _rec(recordings, "ptbxl", "468")
    leads = [n for n in rec.leads if n != "V3"]
    with pytest.raises(ReasonerInputError) as err:
        normalise(_subset(rec, leads))
    assert err.value.code == "missing-leads" and "V3" in err.value.reason and "precordial" in err.value.reason


def test_limb_leads_are_derived_from_i_and_ii_and_noted(recordings):
    rec = _rec(recordings, "ludb", "10")
    out = normalise(_subset(rec, ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")))
    assert out.derived_leads == ("III", "aVR", "aVF", "aVL")
    assert any("derived" in n for n in out.notes)
    i, ii = rec.lead("I"), rec.lead("II")
    np.testing.assert_allclose(out.signal[ECGR1_LEADS.index("aVF")], ii - i / 2, atol=1e-6)
    np.testing.assert_allclose(out.signal[ECGR1_LEADS.index("aVL")], i - ii / 2, atol=1e-6)
    with pytest.raises(ReasonerInputError, match="limb lead"):
        normalise(_subset(rec, ("I", "V1", "V2", "V3", "V4", "V5", "V6")))  # one limb lead: nothing to derive from


def test_microvolts_sent_as_millivolts_are_refused(recordings):
    rec = _rec(recordings, "ptbxl", "468")
    with pytest.raises(ReasonerInputError) as err:
        normalise(rec.replace(signal=rec.signal * 1000.0))
    assert err.value.code == "units"


def test_flagged_samples_interpolated_or_refused(recordings):
    rec = _rec(recordings, "ludb", "10")
    v2 = rec.leads.index("V2")
    sig, flags = rec.signal.copy(), np.zeros(rec.signal.shape, dtype=bool)
    flags[v2, 1000:1200] = True  # 4% of the window
    sig[flags] = np.nan
    out = normalise(make_record(sig, rec.leads, rec.fs, "flagged", flagged=flags))
    assert np.isfinite(out.signal).all() and any("interpolated in V2" in n for n in out.notes)
    flags[v2, 1000:1000 + int(5000 * (MAX_FLAGGED_FRACTION + 0.05))] = True
    sig[flags] = np.nan
    with pytest.raises(ReasonerInputError) as err:
        normalise(make_record(sig, rec.leads, rec.fs, "too-flagged", flagged=flags))
    assert err.value.code == "flagged-samples" and "V2" in err.value.reason


@pytest.mark.parametrize("fs", [250.0, 257.0, 360.0, 1000.0])
def test_other_rates_come_out_at_500hz(recordings, fs):
    from scipy.signal import resample_poly

    rec = _rec(recordings, "ludb", "10")
    from fractions import Fraction

    frac = Fraction(fs / 500.0).limit_denominator(1000)
    sig = resample_poly(rec.signal.astype(np.float64), frac.numerator, frac.denominator, axis=1)
    out = normalise(make_record(sig, rec.leads, fs, f"ludb10@{fs:g}"))
    assert out.signal.shape == (12, 5000) and out.padded_s == 0.0
    ref = normalise(rec).signal
    r = np.corrcoef(out.signal[1, 100:-100], ref[1, 100:-100])[0, 1]
    assert r > 0.99, r
