"""The one WFDB reader (integrations/datasets/wfdb_io) and the one PTB-XL database parser (integrations/datasets/ptbxl),
on the shipped samples. The WFDB checks compare against wfdb itself: the only direct wfdb reads in the tests."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import wfdb

from integrations.datasets.ptbxl import HELD_OUT_FOLD, read_ptbxl_database
from integrations.datasets.wfdb_io import read_annotation, read_header, read_signal, read_wfdb
from integrations.errors import DecodeError
from tests.support.records import SAMPLES, ludb_path, ptbxl_path


def test_read_wfdb_matches_wfdb_in_mv_float32():
    path = ludb_path(1)
    raw = wfdb.rdrecord(str(path))
    rec = read_wfdb(path, source_id="t")
    assert rec.signal.dtype == np.float32
    assert np.array_equal(rec.signal, raw.p_signal.T.astype(np.float32))
    assert [n.lower() for n in rec.leads] == [n.lower() for n in raw.sig_name]
    assert rec.source_format == "wfdb" and rec.fs == raw.fs


def test_read_signal_channels_and_sampto():
    path = ptbxl_path(2)
    raw = wfdb.rdrecord(str(path))
    sig = read_signal(path, channels=[1, 0], sampto=300)
    assert sig.names == (raw.sig_name[1], raw.sig_name[0])
    assert sig.signal.dtype == np.float64 and sig.signal.shape == (2, 300)
    assert np.array_equal(sig.signal, raw.p_signal[:300, [1, 0]].T)
    assert read_wfdb(path, sampto=300).n_samples == 300
    assert read_header(path).sig_len == raw.sig_len


def test_units_other_than_voltage_are_refused_unless_left_out(tmp_path):
    p = np.zeros((500, 2))
    p[:, 0] = np.linspace(-1, 1, 500)
    wfdb.wrsamp("m", fs=250, units=["mV", "mmHg"], sig_name=["II", "ABP"], p_signal=p, fmt=["16", "16"],
                write_dir=str(tmp_path))
    with pytest.raises(DecodeError):
        read_signal(tmp_path / "m")
    sig = read_signal(tmp_path / "m", channels=[0])
    assert sig.names == ("II",) and np.allclose(sig.signal[0], p[:, 0], atol=1e-3)
    with pytest.raises(DecodeError):
        read_wfdb(tmp_path / "missing")


def test_read_annotation_matches_wfdb():
    path = ludb_path(1)
    ann = wfdb.rdann(str(path), "ii")
    samples, symbols = read_annotation(path, "ii")
    assert np.array_equal(samples, ann.sample) and symbols == list(ann.symbol)


def test_ptbxl_database_rows_are_typed_and_in_file_order():
    rows = read_ptbxl_database(SAMPLES / "ptbxl")
    first = rows[0]
    assert first.ecg_id == 2 and first.patient_id == 13243 and first.patient == "ptbxl-13243"
    assert first.age == 19.0 and first.sex == "M" and first.strat_fold == 2
    assert first.recording_date == datetime(1984, 11, 14, 12, 55, 37)
    assert first.scp_codes == {"NORM": 80.0, "SBRAD": 0.0}
    assert first.filename_lr == "records100/00000/00002_lr" and first.filename_hr == ""
    assert all(r.strat_fold != HELD_OUT_FOLD for r in rows)  # the shipped samples hold no fold-10 row
