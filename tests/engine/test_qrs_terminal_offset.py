"""Global QRS offset over the leads (engine/qrs.py `terminal_offset`) on a real right bundle branch block.

Chapman-Shaoxing JS20052 (complete RBBB, samples/ood): its V1 ends the QRS with a tall, slow R'. An offset placed at
the R' apex (where a spatial-velocity offset lands when the R' is slow) must be moved to where V1 has come back down;
on a QRS whose leads have all ended it must not move."""
from __future__ import annotations

import numpy as np

from engine.beats import delineate_record
from engine.filters import detection_filter, measurement_filter
from engine.qrs import terminal_offset
from engine.record import derive_limb_leads
from engine.resample import to_analysis_rate
from tests.support.records import SAMPLES, load_wfdb, ptbxl_path


def _median_beat(path, name):
    rec = derive_limb_leads(load_wfdb(path, name))
    names = rec.standard_leads
    raw = np.asarray(rec.signal[[rec.leads.index(n) for n in names]], dtype=np.float64)
    x, fs = to_analysis_rate(raw, rec.fs)
    d = delineate_record(measurement_filter(x, fs), detection_filter(x, fs), fs, np.ones(len(names), dtype=bool))
    return d, names, fs


def test_offset_at_the_r_prime_apex_moves_to_its_end():
    d, names, fs = _median_beat(SAMPLES / "ood" / "JS20052", "ood/JS20052")
    v1 = d.template_iso_ref[names.index("V1")]
    on, off, pre = d.tm.qrs_onset, d.tm.qrs_offset, d.epochs.pre
    apex = on + int(np.argmax(v1[on:off + 1]))
    assert v1[apex] > 1.0  # the R' (mV)
    end = terminal_offset(d.template, on, apex, pre, fs)
    assert end > apex + 0.015 * fs  # at least 15 ms later ...
    assert v1[end] < 0.1 * v1[apex]  # ... where V1 is back near its baseline
    assert end <= off  # and not past the engine's own offset for this beat
    assert (end - on) * 1000 / fs >= 110  # the QRS width reads in the bundle-branch range


def test_offset_of_a_normal_qrs_stays():
    d, _, fs = _median_beat(ptbxl_path(2), "ptbxl/2")  # PTB-XL 2: normal ECG
    on, off, pre = d.tm.qrs_onset, d.tm.qrs_offset, d.epochs.pre
    assert terminal_offset(d.template, on, off, pre, fs) == off
    assert (off - on) * 1000 / fs < 110
