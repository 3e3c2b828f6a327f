"""The monitor window measures the conducted beats (engine/monitor/conducted.py), on 2 minutes of MIT-BIH record 208
from samples/long (ventricular bigeminy and couplets: 100 ventricular, 65 normal, 26 fusion beats by the
database's own beat labels)."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

from engine import delineate as dl
from engine import filters
from engine.monitor import analyse_window
from engine.monitor.conducted import conducted_beats
from engine.qrs import detect_qrs
from engine.record import make_record
from integrations.datasets.wfdb_io import read_wfdb
from tests.support.records import SAMPLES

PATH = SAMPLES / "long" / "mitdb-208-2min"


@pytest.fixture(scope="module")
def windows():
    rec = read_wfdb(PATH, source_id="mitdb-208")
    ann = wfdb.rdann(str(PATH), "atr")
    width = int(10 * rec.fs)
    out = []
    for a in range(0, rec.n_samples - width + 1, width):
        w = make_record(rec.signal[:, a:a + width], list(rec.leads), rec.fs, "mitdb-208", kind="chunk")
        inside = (ann.sample >= a) & (ann.sample < a + width)
        out.append((w, ann.sample[inside] - a, np.array(ann.symbol)[inside]))
    return out


def _labels(fid: np.ndarray, samples: np.ndarray, symbols: np.ndarray, fs: float) -> np.ndarray:
    near = np.abs(samples[None, :] - fid[:, None])
    k = near.argmin(axis=1)
    return np.where(near[np.arange(fid.size), k] <= 0.1 * fs, symbols[k], "?")


def test_the_beats_measured_are_the_normally_conducted_ones(windows):
    chosen_windows, pure = 0, 0
    for w, samples, symbols in windows:
        x = np.asarray(w.signal, dtype=np.float64)
        fid = detect_qrs(filters.detection_filter(x, w.fs), w.fs, np.ones(x.shape[0]))
        ep = dl.extract_epochs(filters.measurement_filter(x, w.fs), fid, w.fs)
        mask, why = conducted_beats(ep, w.fs, np.ones(x.shape[0], dtype=bool), fid)
        if why:
            continue
        chosen_windows += 1
        labels = _labels(fid[mask], samples, symbols, w.fs)
        pure += bool(np.all(labels == "N"))
    # More ventricular than normal beats: a majority-morphology rule measures the ectopic beats here.
    assert chosen_windows >= 8
    assert pure >= chosen_windows - 1


def test_the_trended_t_wave_does_not_flip_between_sinus_and_ectopic_beats(windows):
    t = [p.t_amplitude_mv for w, _, _ in windows for n, p in analyse_window(w).items() if n == "II" and p.ok]
    assert len(t) >= 6
    assert np.all(np.sign(t) == np.sign(np.median(t)))  # one morphology's T, window after window
