"""WFDB records (LUDB, PTB-XL, PTB-DB layouts) to EcgRecord, and back. Pure apart from the file read/write."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import wfdb

from engine.record import EcgRecord, make_record
from integrations.errors import DecodeError

_UNIT_TO_MV = {"mv": 1.0, "uv": 0.001, "µv": 0.001, "v": 1000.0}


def read_wfdb(path: str | Path, *, source_id: str | None = None, **meta) -> EcgRecord:
    """Read a WFDB record (path without extension). Lead names are matched case-insensitively; extras are kept."""
    path = Path(path)
    try:
        rec = wfdb.rdrecord(str(path), physical=True)
    except (FileNotFoundError, ValueError) as exc:
        raise DecodeError(f"cannot read WFDB record {path.name}: {exc}", "wfdb") from exc
    scale = np.array([_UNIT_TO_MV.get((u or "mV").strip().lower(), np.nan) for u in rec.units], dtype=np.float64)
    if np.isnan(scale).any():
        bad = [u for u in rec.units if (u or "mV").strip().lower() not in _UNIT_TO_MV]
        raise DecodeError(f"unsupported WFDB units {bad}", "units")
    signal = (rec.p_signal * scale).T.astype(np.float32)
    if "acquired_at" not in meta and rec.base_date is not None:
        meta["acquired_at"] = datetime.combine(rec.base_date, rec.base_time or datetime.min.time())
    return make_record(
        signal, rec.sig_name, float(rec.fs), source_id or f"wfdb:{path.name}", source_format="wfdb", **meta
    )


def write_wfdb(record: EcgRecord, directory: str | Path, name: str) -> Path:
    """Write the record as WFDB format 16 in µV resolution (lossless within 1 µV)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name, fs=record.fs, units=["mV"] * len(record.leads), sig_name=list(record.leads),
        p_signal=record.signal.T.astype(np.float64), fmt=["16"] * len(record.leads),
        adc_gain=[1000.0] * len(record.leads), baseline=[0] * len(record.leads), write_dir=str(directory),
    )
    return directory / name
