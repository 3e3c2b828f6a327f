"""WFDB codec round trip (incl. a PTB-DB-style record with Frank leads at 1 kHz) and replay's patient identities."""
from __future__ import annotations

from collections import Counter

import numpy as np

from engine.record import STANDARD_LEADS
from integrations.datasets.wfdb_io import read_wfdb, write_wfdb
from integrations.identity import patient_key
from stream.config import ToolSettings
from stream.devtools.replay import messages


def test_wfdb_round_trip_within_one_microvolt(recordings, tmp_path):
    for rec in (recordings[0], recordings[-1]):  # LUDB 500 Hz, PTB-XL 100 Hz
        original = rec.load()
        back = read_wfdb(write_wfdb(original, tmp_path, f"r{rec.record_id}"))
        assert back.leads == original.leads and back.fs == original.fs
        assert np.abs(back.signal - original.signal).max() <= 0.0005 + 1e-6


def test_ptbdb_layout_lower_case_names_frank_leads_kept(recordings, tmp_path):
    """PTB-DB writes i, ii, …, v6 and the Frank leads vx, vy, vz at 1 kHz: standard leads become canonical, the
    Frank leads are kept (and ignored by the analysis)."""
    base = recordings[0].load()
    x = np.repeat(base.signal, 2, axis=1)  # 1 kHz by sample repetition: enough for a layout test
    frank = x[:3] * 0.5
    names = [n.lower() for n in STANDARD_LEADS] + ["vx", "vy", "vz"]
    rec = base.replace(signal=np.vstack([x, frank]).astype(np.float32), leads=tuple(names), fs=1000.0)
    back = read_wfdb(write_wfdb(rec, tmp_path, "s0010_like"))
    assert back.leads == STANDARD_LEADS + ("vx", "vy", "vz")
    assert back.standard_leads == STANDARD_LEADS and back.fs == 1000.0


def test_replay_uses_real_patient_ids_and_says_when_synthetic(recordings):
    s = ToolSettings()
    secret = s.patient_hash_secret.get_secret_value()
    ptb = [r for r in recordings if r.dataset == "ptbxl"][:6]
    real = list(messages(ptb, "mixed", s, run_id="t"))
    # dataset ids are business identifiers: one key per patient, whichever format carries the ECG
    assert [m.key for m in real] == [patient_key(r.patient_id, secret, system="").encode() for r in ptb]
    assert Counter(m.fmt for m in real) == {"hl7": 3, "fhir": 3}
    synthetic = list(messages(ptb, "hl7", s, patients=2, run_id="t"))
    assert {m.key for m in synthetic} == {patient_key(f"synthetic-{i}", secret, system="").encode() for i in range(2)}
    # Every run is new input: control ids (and so report ids) differ between runs of the same recordings.
    again = list(messages(ptb, "mixed", s, run_id="u"))
    assert not {m.source_id for m in real} & {m.source_id for m in again}
