"""Find real recordings in a folder (LUDB, PTB-XL or any WFDB folder) with their real patient ids (docs/SPEC.md §10).

Used by replay, e2e and the tests; reads only the folder it is given (the shipped samples/ by default).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.record import EcgRecord
from integrations.datasets.ptbxl import DATABASE_CSV, HELD_OUT_FOLD, read_ptbxl_database
from integrations.datasets.wfdb_io import read_wfdb


@dataclass(frozen=True)
class Recording:
    path: Path  # WFDB record path without extension
    dataset: str  # "ludb" | "ptbxl" | "wfdb"
    record_id: str
    patient_id: str | None  # the dataset's real patient id where it has one
    sex: str | None = None
    acquired_at: datetime | None = None
    labels: dict = field(default_factory=dict)  # dataset labels (PTB-XL scp_codes, LUDB diagnoses)

    def load(self) -> EcgRecord:
        # A dataset's patient id is a business identifier (no FHIR server knows it), so it travels as one: the same
        # patient key whether the record is replayed as HL7 or as FHIR, with or without a contained Patient.
        return read_wfdb(
            self.path, source_id=f"{self.dataset}:{self.record_id}", patient_id=self.patient_id,
            patient_system="" if self.patient_id else None, sex=self.sex, acquired_at=self.acquired_at,
        )


def _ptbxl(root: Path, prefer_500hz: bool) -> list[Recording]:
    out = []
    for row in read_ptbxl_database(root):
        if row.strat_fold == HELD_OUT_FOLD:
            continue  # PTB-XL's recommended test fold is held out (docs/SPEC.md §7)
        name = row.filename_hr if prefer_500hz and row.filename_hr else row.filename_lr
        if not name or not (root / (name + ".hea")).exists():
            continue
        out.append(Recording(
            path=root / name, dataset="ptbxl", record_id=str(row.ecg_id), patient_id=row.patient, sex=row.sex,
            acquired_at=row.recording_date, labels={"scp_codes": row.scp_codes, "report": row.report},
        ))
    return out


def _ludb(root: Path) -> list[Recording]:
    out = []
    meta: dict[str, dict] = {}
    if (root / "ludb.csv").exists():
        with open(root / "ludb.csv", newline="") as f:
            meta = {row["ID"]: row for row in csv.DictReader(f)}
    for hea in sorted((root / "data").glob("*.hea"), key=lambda p: int(p.stem)):
        row = meta.get(hea.stem, {})
        sex = (row.get("Sex") or "").strip()[:1] or None
        # LUDB has no patient ids: each record is one person, so the record id stands in (and says so).
        out.append(Recording(
            path=hea.with_suffix(""), dataset="ludb", record_id=hea.stem, patient_id=f"ludb-record-{hea.stem}",
            sex=sex if sex in ("M", "F") else None, labels={k: v for k, v in row.items() if v},
        ))
    return out


def find_recordings(root: str | Path, *, prefer_500hz: bool = False) -> list[Recording]:
    """All recordings under `root`: recognises LUDB and PTB-XL layouts (at the root or one level down)."""
    root = Path(root)
    found: list[Recording] = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (folder / DATABASE_CSV).exists():
            found += _ptbxl(folder, prefer_500hz)
        elif ((folder / "data").is_dir() and any((folder / "data").glob("*.hea"))
              and folder.name.startswith(("ludb", "lobachevsky"))):
            found += _ludb(folder)
        elif folder == root and any(root.glob("*.hea")):
            found += [Recording(path=h.with_suffix(""), dataset="wfdb", record_id=h.stem, patient_id=None)
                      for h in sorted(root.glob("*.hea"))]
    if not found:
        raise FileNotFoundError(f"no WFDB recordings found under {root}")
    return found
