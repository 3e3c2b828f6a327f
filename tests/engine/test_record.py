"""The EcgRecord contract (docs/SPEC.md §10, §11) and the internal envelope, on real recordings from samples/."""
import numpy as np
import pytest

from engine.errors import InvalidRecord
from engine.record import STANDARD_LEADS, derive_limb_leads, last_window, make_record
from stream.envelope import pack, unpack


def test_real_recordings_load_with_canonical_leads(recordings):
    datasets = {r.dataset for r in recordings}
    assert datasets == {"ludb", "ptbxl"}
    assert len(recordings) >= 30
    for rec in recordings[:5] + recordings[-5:]:
        r = rec.load()
        assert r.leads == STANDARD_LEADS  # PTB-XL writes AVR, LUDB avr: both become aVR
        assert r.signal.dtype == np.float32
        assert 0.05 < float(np.abs(r.signal).max()) < 20  # millivolts, not µV or counts


def test_ptbxl_patients_have_real_ids_and_serial_ecgs(recordings):
    ptb = [r for r in recordings if r.dataset == "ptbxl"]
    by_patient = {}
    for r in ptb:
        by_patient.setdefault(r.patient_id, []).append(r)
    serial = [v for v in by_patient.values() if len(v) >= 2]
    assert len(serial) >= 5
    assert all(p.startswith("ptbxl-") for p in by_patient)


def _sig(n_leads=2, seconds=3.0, fs=500.0):
    t = np.arange(int(seconds * fs)) / fs
    return np.vstack([np.sin(2 * np.pi * 1.2 * t)] * n_leads).astype(np.float32)


@pytest.mark.parametrize(
    "kwargs, code",
    [
        (dict(signal=_sig(), leads=["I", "i"], fs=500), "duplicate-lead"),
        (dict(signal=_sig(), leads=["vx", "vy"], fs=500), "no-standard-leads"),
        (dict(signal=_sig(seconds=2.0), leads=["I", "II"], fs=500), "too-short"),
        (dict(signal=_sig(), leads=["I", "II"], fs=0), "sampling-rate"),
        (dict(signal=_sig(), leads=["I", "II"], fs=1e7), "sampling-rate"),
        (dict(signal=_sig(), leads=["I"], fs=500), "shape"),
    ],
)
def test_contract_violations_are_named(kwargs, code):
    with pytest.raises(InvalidRecord) as err:
        make_record(source_id="x", **kwargs)
    assert err.value.code == code


def test_nan_rejected_unless_flagged():
    sig = _sig()
    sig[1, 100] = np.nan
    with pytest.raises(InvalidRecord, match="II"):
        make_record(sig, ["I", "II"], 500, "x")
    flags = np.zeros(sig.shape, bool)
    flags[1, 100] = True
    sig[1, 100] = 0.0
    assert make_record(sig, ["I", "II"], 500, "x", flagged=flags).flagged[1, 100]


def test_derived_limb_leads_follow_einthoven(recordings):
    # PTB-XL limb leads obey Einthoven's law to the µV; LUDB's were filtered lead by lead and do not.
    full = next(r for r in recordings if r.dataset == "ptbxl").load()
    only = make_record(full.signal[:2], ["I", "II"], full.fs, "x")
    derived = derive_limb_leads(only)
    assert derived.derived_leads == {"III", "aVR", "aVL", "aVF"}
    for name in ("III", "aVR", "aVL", "aVF"):
        # The recorded limb leads obey the same identities within the recording's quantisation.
        assert np.abs(derived.lead(name) - full.lead(name)).max() < 0.005


def test_long_strip_keeps_last_60_seconds():
    rec = make_record(_sig(seconds=90), ["I", "II"], 500, "x")
    cut, truncated = last_window(rec)
    assert truncated and cut.duration_s == 60.0
    assert np.array_equal(cut.signal, rec.signal[:, -30000:])


def test_extra_leads_kept_and_absent_listed():
    rec = make_record(_sig(3), ["II", "V1", "vx"], 500, "x")
    assert rec.leads == ("II", "V1", "vx")
    assert rec.standard_leads == ("II", "V1")
    assert "I" in rec.absent_leads and "vx" not in rec.absent_leads


def test_envelope_round_trip_is_exact(recordings):
    rec = recordings[-1].load()
    flags = np.zeros(rec.signal.shape, bool)
    flags[3, 10:20] = True
    rec = rec.replace(flagged=flags, bed="ICU^3^B", device_id="0123456789ABCDEF")
    back, source = unpack(pack(rec, {"topic": "t", "offset": 5}))
    assert np.array_equal(back.signal, rec.signal) and np.array_equal(back.flagged, flags)
    assert (back.leads, back.fs, back.patient_id, back.acquired_at, back.sex, back.bed) == (
        rec.leads, rec.fs, rec.patient_id, rec.acquired_at, rec.sex, rec.bed)
    assert source == {"topic": "t", "offset": 5}


def test_monitoring_names_map_with_marks():
    rec = make_record(_sig(3, 3), ["MLII", "MCL1", "V"], 500, "x")
    assert rec.leads == ("II", "V1", "V") and rec.standard_leads == ("II", "V1")
    assert rec.approximated_leads == ("II", "V1") and rec.unknown_position_leads == ("V",)
    with pytest.raises(InvalidRecord) as err:
        make_record(_sig(2, 3), ["II", "MLII"], 500, "x")
    assert err.value.code == "duplicate-lead"


def test_chunk_rules_differ_from_strip_rules():
    # one second of one unnamed ECG channel: a valid chunk, a dead letter as a strip
    one = make_record(_sig(1, seconds=1.0), ["ECG"], 250, "x", kind="chunk")
    assert one.unknown_position_leads == ("ECG",) and one.standard_leads == ()
    with pytest.raises(InvalidRecord) as err:
        make_record(_sig(1, seconds=1.0), ["ECG"], 250, "x")
    assert err.value.code == "no-standard-leads"
    assert make_record(_sig(1, seconds=1 / 500), ["II"], 500, "x", kind="chunk").n_samples == 1
    with pytest.raises(InvalidRecord) as err:
        make_record(_sig(1, seconds=61.0, fs=100), ["II"], 100, "x", kind="chunk")
    assert err.value.code == "too-long"
    with pytest.raises(InvalidRecord) as err:
        make_record(_sig(1, seconds=1.0), ["vx"], 250, "x", kind="chunk")
    assert err.value.code == "no-standard-leads"
