"""PhysioNet/CinC Challenge 2020/2021 format (`NAME.hea` + `NAME.mat`, SNOMED CT codes on the header's `#Dx:` line):
records from other hospitals and devices (CPSC 2018, Georgia, Chapman-Shaoxing, Ningbo), read for evaluation only.

Labels (docs/SPEC.md §3.6 codes; the CinC 2021 mapping tables). A record may carry several codes. The sets used:
* TWI_POSITIVE: T-wave inversion 59931005.
* TWI_EXCLUDED_FROM_NEGATIVES (a "T/ST/ischaemia label"): T-wave abnormal 164934002, T-wave inversion 59931005,
  myocardial ischemia 164861001, acute myocardial ischemia 413444003, anterior ischemia 426434006, ST depression
  429622005, ST elevation 164931005, non-specific ST-T abnormality 428750005, ST interval abnormal 164930006,
  myocardial infarction 164865005, anterior MI 54329005, inferior ischaemia 425419005, lateral ischaemia 425623009,
  old MI 164867002, LV strain 370365005.
* SECONDARY (the causes that explain a TWI, docs/SPEC.md §4.4), also excluded from the TWI negatives: LBBB 164909002,
  complete LBBB 733534002, RBBB 59118001, complete RBBB 713427006, incomplete RBBB 713426002, incomplete LBBB
  251120003, LVH 164873001, LV strain 370365005, pacing rhythm 10370003, ventricular pacing pattern 251266004, WPW
  74390002 (and ventricular pre-excitation 195060002), non-specific IVCD 698252002.

Split for tuning: a record is "tune" when the first byte of SHA-256(name) is even, otherwise "untouched"; the
engine's thresholds may be fitted only on "tune" (docs/EVALUATION.md says which were).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.record import EcgRecord
from integrations.datasets.wfdb_io import read_wfdb

TWI_POSITIVE = frozenset({"59931005"})
T_ST_ISCHAEMIA = frozenset({"164934002", "59931005", "164861001", "413444003", "426434006", "429622005", "164931005",
                            "428750005", "164930006", "164865005", "54329005", "425419005", "425623009", "164867002",
                            "370365005"})
CAUSE_CODES = {
    "lbbb": frozenset({"164909002", "733534002"}),
    "rbbb": frozenset({"59118001", "713427006"}),
    "rbbb-incomplete": frozenset({"713426002"}),
    "lbbb-incomplete": frozenset({"251120003"}),
    "lvh": frozenset({"164873001"}),
    "pacing": frozenset({"10370003", "251266004"}),
    "wpw": frozenset({"74390002", "195060002"}),
    "ivcd": frozenset({"698252002"}),
}
SECONDARY_CODES = frozenset().union(*CAUSE_CODES.values()) | {"370365005"}
RHYTHMS = {  # first match wins (AF before flutter before sinus variants)
    "af": frozenset({"164889003"}),
    "flutter": frozenset({"164890007"}),
    "paced": frozenset({"10370003"}),
    "sinus-tachycardia": frozenset({"427084000"}),
    "sinus-bradycardia": frozenset({"426177001"}),
    "sinus": frozenset({"426783006", "427393009"}),  # sinus rhythm, sinus arrhythmia
}


@dataclass
class CincRow:
    name: str
    fs: float
    codes: frozenset[str]
    sex: str | None
    age: float | None
    path: Path  # without extension
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def split(self) -> str:
        return split_of(self.name)

    @property
    def rhythm(self) -> str:
        for name, codes in RHYTHMS.items():
            if self.codes & codes:
                return name
        return "other"

    @property
    def twi(self) -> bool:
        return bool(self.codes & TWI_POSITIVE)

    @property
    def twi_negative(self) -> bool:
        """No T/ST/ischaemia label and no secondary-cause label: where a TWI call counts against specificity."""
        return not (self.codes & (T_ST_ISCHAEMIA | SECONDARY_CODES))

    def cause(self, cause: str) -> bool:
        return bool(self.codes & CAUSE_CODES[cause])


def split_of(name: str) -> str:
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "untouched"


def _header_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") and ":" in line:
            k, v = line[1:].split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def find_cinc(root: Path) -> Path:
    root = Path(root)
    for cand in (root, root / "ood"):
        if any(cand.glob("*.hea")):
            return cand
    raise FileNotFoundError(f"no CinC .hea files in {root} or {root / 'ood'}")


def load_rows(cinc_dir: Path) -> list[CincRow]:
    rows = []
    for hea in sorted(Path(cinc_dir).glob("*.hea")):
        text = hea.read_text(errors="replace")
        first = text.splitlines()[0].split()
        f = _header_fields(text)
        codes = frozenset(c.strip() for c in f.get("dx", "").split(",") if c.strip())
        sex = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(f.get("sex", "").lower())
        try:
            age = float(f.get("age", ""))
        except ValueError:
            age = None
        rows.append(CincRow(name=hea.stem, fs=float(first[2]), codes=codes, sex=sex,
                            age=age if age is not None and np.isfinite(age) else None, path=hea.with_suffix("")))
    return rows


def read_record(row: CincRow) -> EcgRecord:
    # acquired_at=None: records as the scoring has always seen them (CinC headers carry a date; it is not used)
    return read_wfdb(row.path, source_id=f"cinc:{row.name}", nan_to_zero=True, sex=row.sex, acquired_at=None)
