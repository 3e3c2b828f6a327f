"""WFDB records (LUDB, PTB-XL, PTB-DB, CinC and monitoring layouts) to EcgRecord, and back: the project's one WFDB
reader (every production read goes through here). Pure apart from the file read/write. wfdb is imported on first
use, so importing this module (and the evaluation and training code built on it) stays light."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.record import EcgRecord, make_record
from integrations.errors import DecodeError

if TYPE_CHECKING:
    import wfdb

_UNIT_TO_MV = {"mv": 1.0, "uv": 0.001, "µv": 0.001, "v": 1000.0}


@dataclass(frozen=True)
class WfdbSignal:
    """A WFDB record's samples as read, before any lead mapping: channel names as the header writes them."""

    signal: np.ndarray  # (channels, n) float64 mV: wfdb's physical values, scaled from the header's units
    names: tuple[str, ...]
    fs: float
    base_date: date | None
    base_time: time | None

    @property
    def acquired_at(self) -> datetime | None:
        if self.base_date is None:
            return None
        return datetime.combine(self.base_date, self.base_time or datetime.min.time())


def _decode_error(path: Path, exc: Exception) -> DecodeError:
    return DecodeError(f"cannot read WFDB record {path.name}: {exc}", "wfdb")


def read_header(path: str | Path) -> wfdb.Record:
    """The record's header only (n_sig, fs, sig_len, sig_name, units, base_date/time); no samples are read."""
    import wfdb

    path = Path(path)
    try:
        return wfdb.rdheader(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise _decode_error(path, exc) from exc


def read_signal(
    path: str | Path, *, channels: Sequence[int] | None = None, sampto: int | None = None
) -> WfdbSignal:
    """Samples in mV (float64, channels × samples) of the given channels (all by default; indices in header order)
    up to sample `sampto` (the whole record by default). Only the kept channels' units must convert to mV, so a
    record's non-ECG channels (ABP in mmHg, PLETH in NU) may be left out by `channels`."""
    import wfdb

    path = Path(path)
    try:
        rec = wfdb.rdrecord(str(path), physical=True, sampto=sampto)
    except (FileNotFoundError, ValueError) as exc:
        raise _decode_error(path, exc) from exc
    keep = list(range(len(rec.sig_name))) if channels is None else list(channels)
    units = [rec.units[i] for i in keep]
    scale = np.array([_UNIT_TO_MV.get((u or "mV").strip().lower(), np.nan) for u in units], dtype=np.float64)
    if np.isnan(scale).any():
        bad = [u for u in units if (u or "mV").strip().lower() not in _UNIT_TO_MV]
        raise DecodeError(f"unsupported WFDB units {bad}", "units")
    signal = rec.p_signal[:, keep] * scale if channels is not None else rec.p_signal * scale
    return WfdbSignal(signal=signal.T, names=tuple(rec.sig_name[i] for i in keep), fs=float(rec.fs),
                      base_date=rec.base_date, base_time=rec.base_time)


def read_wfdb(
    path: str | Path, *, source_id: str | None = None, sampto: int | None = None, nan_to_zero: bool = False, **meta
) -> EcgRecord:
    """Read a WFDB record (path without extension) as float32 mV. Lead names are mapped by make_record (monitoring
    names marked); extras are kept. `acquired_at` comes from the header's base date unless given in meta.
    `nan_to_zero` replaces missing samples (NaN) with 0 instead of refusing the record."""
    path = Path(path)
    sig = read_signal(path, sampto=sampto)
    signal = np.nan_to_num(sig.signal) if nan_to_zero else sig.signal
    if "acquired_at" not in meta and sig.acquired_at is not None:
        meta["acquired_at"] = sig.acquired_at
    return make_record(
        signal.astype(np.float32), list(sig.names), sig.fs, source_id or f"wfdb:{path.name}", source_format="wfdb",
        **meta,
    )


def read_annotation(path: str | Path, extension: str) -> tuple[np.ndarray, list[str]]:
    """(sample indices, symbols) of the record's annotation file `extension` (e.g. LUDB's per-lead 'i' … 'v6')."""
    import wfdb

    ann = wfdb.rdann(str(path), extension)
    return np.asarray(ann.sample), list(ann.symbol)


def write_wfdb(record: EcgRecord, directory: str | Path, name: str) -> Path:
    """Write the record as WFDB format 16 in µV resolution (lossless within 1 µV)."""
    import wfdb

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name, fs=record.fs, units=["mV"] * len(record.leads), sig_name=list(record.leads),
        p_signal=record.signal.T.astype(np.float64), fmt=["16"] * len(record.leads),
        adc_gain=[1000.0] * len(record.leads), baseline=[0] * len(record.leads), write_dir=str(directory),
    )
    return directory / name
