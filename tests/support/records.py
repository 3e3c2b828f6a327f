"""Shared helpers for the engine tests (no tests here): load a real record from the project's samples/.

Layout (as in the datasets): samples/ludb/data/<id>.hea|.dat|.i … .v6 and
samples/ptbxl/records100|records500/<NN>000/<ecg_id:05d>_lr|_hr.hea|.dat. A missing record is an error, not a skip:
the tests must run the same on every machine, without ../shared.
"""
from __future__ import annotations

from pathlib import Path

from engine.record import EcgRecord
from integrations.datasets.wfdb_io import read_annotation, read_wfdb

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def ludb_path(rid: int) -> Path:
    path = SAMPLES / "ludb" / "data" / str(rid)
    if not path.with_suffix(".hea").exists():
        raise FileNotFoundError(f"LUDB record {rid} is not in samples/ (scripts/make_samples.py)")
    return path


def ptbxl_path(ecg_id: int, res: str = "lr") -> Path:
    name = f"{ecg_id:05d}_{res}"
    sub = "records100" if res == "lr" else "records500"
    path = SAMPLES / "ptbxl" / sub / f"{ecg_id // 1000:02d}000" / name
    if not path.with_suffix(".hea").exists():
        raise FileNotFoundError(f"PTB-XL record {name} is not in samples/ (scripts/make_samples.py)")
    return path


def load_wfdb(path: Path, source_id: str, sex: str | None = None) -> EcgRecord:
    return read_wfdb(path, source_id=source_id, sex=sex)


def ludb_waves(path: Path, lead_ext: str) -> list[dict]:
    """Annotated waves of one LUDB lead: [{'kind': 'p'|'N'|'t', 'on', 'peak', 'off'}]."""
    samples, symbols = read_annotation(path, lead_ext)
    out, cur = [], None
    for s, sym in zip(samples, symbols, strict=True):
        if sym == "(":
            cur = {"on": int(s)}
        elif sym in ("p", "N", "t") and cur is not None:
            cur.update(kind=sym, peak=int(s))
        elif sym == ")" and cur is not None and "kind" in cur:
            cur["off"] = int(s)
            out.append(cur)
            cur = None
    return out
