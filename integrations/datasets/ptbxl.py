"""PTB-XL's `ptbxl_database.csv`: the project's one parser of it (typed rows, in file order).

Every row is returned, fold 10 included: the callers hold PTB-XL's recommended test fold out themselves (docs/SPEC.md
§7), before they open any signal file. Only the metadata row of a fold-10 record is read here, never its signal.
"""
from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DATABASE_CSV = "ptbxl_database.csv"
HELD_OUT_FOLD = 10  # PTB-XL's recommended test fold


@dataclass(frozen=True)
class PtbxlRow:
    ecg_id: int
    patient_id: int
    age: float | None
    sex: str | None  # "M" | "F" (PTB-XL writes 0 / 1), None when absent
    recording_date: datetime | None
    report: str
    scp_codes: dict[str, float]  # SCP code -> likelihood
    strat_fold: int
    filename_lr: str  # WFDB path without extension, relative to the database folder ('' when absent)
    filename_hr: str

    @property
    def patient(self) -> str:
        """The patient key used across the project: 'ptbxl-<patient_id>'."""
        return f"ptbxl-{self.patient_id}"


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_ptbxl_database(root: str | Path) -> list[PtbxlRow]:
    """All rows of `root/ptbxl_database.csv` in file order."""
    out = []
    with open(Path(root) / DATABASE_CSV, newline="") as f:
        for row in csv.DictReader(f):
            date = row.get("recording_date") or ""
            out.append(PtbxlRow(
                ecg_id=int(float(row["ecg_id"])), patient_id=int(float(row["patient_id"])),
                age=_float(row.get("age")), sex={"0": "M", "1": "F"}.get(str(row.get("sex") or "").strip()),
                recording_date=datetime.fromisoformat(date) if date else None, report=row.get("report") or "",
                scp_codes=ast.literal_eval(row["scp_codes"]), strat_fold=int(float(row["strat_fold"])),
                filename_lr=row.get("filename_lr") or "", filename_hr=row.get("filename_hr") or "",
            ))
    return out
