"""Training data for the triage head: PTB-XL folds 1–9 and LUDB's 150 development records, labelled and split.

Splits (patient-disjoint, fixed, documented in the model card):
- PTB-XL by `strat_fold` (PTB-XL puts all ECGs of a patient in one fold): 1–7 train, 8 validation, 9 test. Fold 10
  (PTB-XL's recommended test fold) is held out: its rows are dropped before any file is opened.
- LUDB by record (one record per person): id % 10 == 9 test, == 7 validation, else train; only the ids not divisible
  by 4 exist in ../shared/data (the others are held out).
Labels (NaN = unknown, masked out of the loss and the metrics):
- twi: PTB-XL `INVT` in scp_codes (likelihood 0 = present); LUDB has no T-inversion label -> NaN.
- ischemic (vs secondary): 1 with ischemic codes (PTB-XL ISC*/INJ*; LUDB ischemia/STEMI/NSTEMI) and no secondary
  cause, 0 with a secondary cause (CLBBB/CRBBB/LVH/WPW/PACE; LUDB complete LBBB/RBBB, LVH, ventricular pacing) and
  no ischemic code; NaN otherwise (neither, or both).
- aux: PTB-XL diagnostic superclasses (NORM, MI, STTC, CD, HYP) as extra training signal; NaN for LUDB.
"""
from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.encoder.adapter import adapt
from integrations.datasets.ptbxl import DATABASE_CSV, HELD_OUT_FOLD, read_ptbxl_database
from integrations.datasets.wfdb_io import read_wfdb

SPLITS = ("train", "val", "test")
PTBXL_FOLDS = {"train": {1, 2, 3, 4, 5, 6, 7}, "val": {8}, "test": {9}}
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
ISCHEMIC_PREFIXES = ("ISC", "INJ")
SECONDARY_CODES = frozenset({"CLBBB", "CRBBB", "LVH", "WPW", "PACE"})


@dataclass(frozen=True)
class Item:
    path: Path  # WFDB record without extension
    dataset: str
    record_id: str
    patient: str
    split: str
    twi: float
    ischemic: float
    aux: tuple[float, ...]


def ludb_split(record_id: int) -> str:
    if record_id % 4 == 0:
        raise ValueError(f"LUDB record {record_id} is in the held-out set (ids divisible by 4)")
    return "test" if record_id % 10 == 9 else "val" if record_id % 10 == 7 else "train"


def ptbxl_items(root: Path) -> list[Item]:
    superclass = {}
    with open(root / "scp_statements.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("diagnostic") == "1.0" and row.get("diagnostic_class"):
                superclass[row[""]] = row["diagnostic_class"]
    items = []
    for row in read_ptbxl_database(root):
        fold = row.strat_fold
        if fold == HELD_OUT_FOLD:
            continue  # never read: PTB-XL's recommended test fold is held out (docs/SPEC.md §7)
        split = next(s for s, folds in PTBXL_FOLDS.items() if fold in folds)
        name = row.filename_hr if row.filename_hr and (root / (row.filename_hr + ".hea")).exists() \
            else row.filename_lr
        if not (root / (name + ".hea")).exists():
            continue
        codes = row.scp_codes
        isc = any(c.startswith(ISCHEMIC_PREFIXES) for c in codes)
        sec = any(c in SECONDARY_CODES for c in codes)
        classes = {superclass[c] for c in codes if c in superclass}
        items.append(Item(root / name, "ptbxl", str(row.ecg_id), row.patient, split,
                          twi=float("INVT" in codes), ischemic=_ischemic_label(isc, sec),
                          aux=tuple(float(c in classes) for c in SUPERCLASSES)))
    return items


def ludb_items(root: Path) -> list[Item]:
    items = []
    with open(root / "ludb.csv", newline="") as f:
        for row in csv.DictReader(f):
            rid = int(row["ID"])
            hea = root / "data" / f"{rid}.hea"
            if rid % 4 == 0 or not hea.exists():
                continue
            isch_text = row.get("Ischemia", "").lower()
            isc = any(k in isch_text for k in ("ischemia", "stemi"))
            conduction = row.get("Conduction abnormalities", "").lower()
            sec = ("complete left bundle" in conduction or "complete right bundle" in conduction
                   or "left ventricular hypertrophy" in row.get("Hypertrophies", "").lower()
                   or "ventricular pacing" in row.get("Cardiac pacing", "").lower()
                   or "wpw" in row.get("Other states", "").lower())
            items.append(Item(hea.with_suffix(""), "ludb", str(rid), f"ludb-record-{rid}", ludb_split(rid),
                              twi=float("nan"), ischemic=_ischemic_label(isc, sec),
                              aux=tuple(float("nan") for _ in SUPERCLASSES)))
    return items


def find_items(data_dir: Path) -> list[Item]:
    """All items under data_dir (the ../shared/data layout: ptbxl/ and ludb/<release>/)."""
    data_dir = Path(data_dir)
    items: list[Item] = []
    if (data_dir / "ptbxl" / DATABASE_CSV).exists():
        items += ptbxl_items(data_dir / "ptbxl")
    for csv_path in sorted((data_dir / "ludb").glob("**/ludb.csv")) if (data_dir / "ludb").is_dir() else []:
        items += ludb_items(csv_path.parent)
    if not items:
        raise FileNotFoundError(f"no PTB-XL or LUDB data under {data_dir}")
    check_patient_disjoint(items)
    return items


def check_patient_disjoint(items: list[Item]) -> None:
    seen: dict[str, str] = {}
    for it in items:
        if seen.setdefault(it.patient, it.split) != it.split:
            raise ValueError(f"patient {it.patient} appears in both {seen[it.patient]} and {it.split}")


def load_signals(items: list[Item], workers: int = 2) -> np.ndarray:
    """(N, 12, 5000) float32 model inputs, through the same adapter the runtime uses."""
    paths = [str(it.path) for it in items]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return np.stack(list(pool.map(_load_one, paths, chunksize=32)))
    return np.stack([_load_one(p) for p in paths])


def _load_one(path: str) -> np.ndarray:
    return adapt(read_wfdb(path, source_id=f"train:{Path(path).name}")).signal


def _ischemic_label(isc: bool, sec: bool) -> float:
    return 1.0 if isc and not sec else 0.0 if sec and not isc else float("nan")
