"""The one ECG record type every part of twiwatch uses (docs/SPEC.md §10, §11).

Samples are float32 millivolts, shape (leads, samples), at the record's own sampling rate.
Standard leads carry canonical names; extra named leads (e.g. Frank vx/vy/vz) are kept and ignored.
Monitoring leads map with a mark (`lead_marks`): MLII -> II and MCL1 -> V1 as approximations, `V` (a chest lead
placed at the bedside) and an unnamed `ECG` channel as one lead of unknown position each.

A record is a `strip` (an ECG the sender meant as a whole: 2.5 s minimum) or a `chunk` (one piece of a monitor's
continuous stream, typically 1 s: the sender decides, never the duration, docs/SPEC.md §11).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import numpy as np

from engine.errors import InvalidRecord

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_CANONICAL_BY_LOWER = {name.lower(): name for name in STANDARD_LEADS}

MIN_DURATION_S = 2.5
MAX_ANALYSED_S = 60.0
# A chunk is a piece of a stream: a W01 segment between two gaps may be a handful of samples, so one sample is
# enough. Above 60 s (the longest window analysed) it is no chunk: a strip sender configured as a chunk feed, or a
# sampling rate in the wrong unit; the window assembler would hold it whole per bed.
MIN_CHUNK_SAMPLES = 1
MAX_CHUNK_S = MAX_ANALYSED_S

RecordKind = Literal["strip", "chunk"]
MARK_APPROXIMATION = "approximation"  # a monitoring lead standing in for a standard one (MLII for II)
MARK_UNKNOWN_POSITION = "unknown-position"  # a lead whose electrode position the sender did not say
# Canonical names of the unknown-position leads: not standard leads, never contiguous with a named neighbour.
UNKNOWN_CHEST_LEAD = "V"
UNKNOWN_ECG_LEAD = "ECG"
# Modified limb and chest leads of bedside monitoring (MIT-BIH writes MLII; MCL1 is the usual chest substitute).
_MONITORING_LEADS: dict[str, tuple[str, str]] = {
    "mli": ("I", MARK_APPROXIMATION),
    "mlii": ("II", MARK_APPROXIMATION),
    "mliii": ("III", MARK_APPROXIMATION),
    **{f"mcl{i}": (f"V{i}", MARK_APPROXIMATION) for i in range(1, 7)},
    "v": (UNKNOWN_CHEST_LEAD, MARK_UNKNOWN_POSITION),
    "ecg": (UNKNOWN_ECG_LEAD, MARK_UNKNOWN_POSITION),
}
_LEAD_ORDER = {name: i for i, name in enumerate(STANDARD_LEADS + (UNKNOWN_CHEST_LEAD, UNKNOWN_ECG_LEAD))}
# Below 50 Hz a T wave is a handful of samples; above 20 kHz no ECG device exists. Both mean a broken header.
MIN_FS_HZ = 50.0
MAX_FS_HZ = 20_000.0


def canonical_lead(name: str) -> str:
    """Canonical name for a standard lead (case-insensitive: PTB-XL `AVR`, LUDB `avr`); other names unchanged."""
    stripped = name.strip()
    return _CANONICAL_BY_LOWER.get(stripped.lower(), stripped)


def is_standard(name: str) -> bool:
    return name in _CANONICAL_BY_LOWER.values()


def lead_and_mark(name: str) -> tuple[str, str | None]:
    """(canonical name, mark) for any lead name: standard leads unmarked, monitoring leads with their mark
    (MLII -> ("II", "approximation"), V -> ("V", "unknown-position")), other names unchanged and unmarked."""
    stripped = name.strip()
    monitoring = _MONITORING_LEADS.get(stripped.lower())
    if monitoring is not None:
        return monitoring
    return _CANONICAL_BY_LOWER.get(stripped.lower(), stripped), None


def is_ecg_lead(name: str) -> bool:
    """A standard lead or one of unknown position (V, ECG): what a chunk may hold alone."""
    return name in _LEAD_ORDER


def lead_order(name: str) -> int:
    """Sort key: canonical order, then V and ECG, then other names."""
    return _LEAD_ORDER.get(name, len(_LEAD_ORDER))


@dataclass(frozen=True, eq=False)
class EcgRecord:
    signal: np.ndarray  # float32 mV, (n_leads, n_samples)
    leads: tuple[str, ...]
    fs: float
    source_id: str  # sender + control id (HL7) or the Observation identifier (FHIR) or dataset/record (WFDB)
    patient_id: str | None = None
    # None: patient_id is a FHIR logical id (Patient/<id>). Otherwise patient_id is a business identifier (an MRN
    # from HL7 PID-3, a FHIR subject.identifier) in this namespace ("" when the sender named none): it must never be
    # turned into a literal reference, and the same value from two namespaces is two patients.
    patient_system: str | None = None
    acquired_at: datetime | None = None
    sex: str | None = None  # "M", "F" or None
    birth_date: date | None = None
    bed: str | None = None
    unit: str | None = None  # the point of care (HL7 PV1-3.1), where the sender names one
    device_id: str | None = None
    source_format: str = "unknown"  # hl7 | fhir | wfdb
    derived_leads: frozenset[str] = frozenset()
    # True where the sender flagged a sample (FHIR E/U/L, saturation, INOP): kept as quality information.
    flagged: np.ndarray | None = None
    kind: RecordKind = "strip"
    # lead -> MARK_APPROXIMATION | MARK_UNKNOWN_POSITION, for monitoring leads only (standard leads are unmarked).
    lead_marks: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def standard_leads(self) -> tuple[str, ...]:
        return tuple(name for name in STANDARD_LEADS if name in self.leads)

    @property
    def absent_leads(self) -> tuple[str, ...]:
        return tuple(name for name in STANDARD_LEADS if name not in self.leads)

    @property
    def approximated_leads(self) -> tuple[str, ...]:
        return tuple(n for n in self.leads if self.lead_marks.get(n) == MARK_APPROXIMATION)

    @property
    def unknown_position_leads(self) -> tuple[str, ...]:
        return tuple(n for n in self.leads if self.lead_marks.get(n) == MARK_UNKNOWN_POSITION)

    def lead(self, name: str) -> np.ndarray:
        return self.signal[self.leads.index(name)]

    def replace(self, **changes) -> EcgRecord:
        return dataclasses.replace(self, **changes)


def make_record(
    signal: np.ndarray,
    leads: list[str] | tuple[str, ...],
    fs: float,
    source_id: str,
    *,
    flagged: np.ndarray | None = None,
    **meta,
) -> EcgRecord:
    """Build and validate a record: canonical lead names (monitoring names mapped and marked), float32, the
    contract's checks (raises InvalidRecord). `kind="chunk"` in meta applies the chunk rules."""
    named = [lead_and_mark(n) for n in leads]
    names = tuple(name for name, _ in named)
    marks = {name: mark for name, mark in named if mark is not None}
    meta["lead_marks"] = {**marks, **dict(meta.get("lead_marks") or {})}
    arr = np.asarray(signal)
    if arr.ndim != 2 or arr.shape[0] != len(names):
        raise InvalidRecord(f"signal shape {arr.shape} does not match {len(names)} lead names", "shape")
    if arr.shape[0] == 0:
        raise InvalidRecord("no leads", "no-leads")
    arr = arr.astype(np.float32, copy=False)
    rec = EcgRecord(signal=arr, leads=names, fs=float(fs), source_id=source_id, flagged=flagged, **meta)
    validate(rec)
    return rec


def validate(rec: EcgRecord) -> None:
    """Raise InvalidRecord when the record breaks docs/SPEC.md §10 (strips) or §11 (chunks). Reasons name leads and
    numbers, never patient data."""
    if not np.isfinite(rec.fs) or not (MIN_FS_HZ <= rec.fs <= MAX_FS_HZ):
        raise InvalidRecord(f"sampling rate {rec.fs!r} Hz outside {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz", "sampling-rate")
    seen: set[str] = set()
    for name in rec.leads:
        key = name.lower()
        if key in seen:
            raise InvalidRecord(f"lead {name} appears twice", "duplicate-lead")
        seen.add(key)
    if rec.kind not in ("strip", "chunk"):
        raise InvalidRecord(f"record kind {rec.kind!r} is neither strip nor chunk", "metadata")
    if rec.kind == "chunk":
        # A monitor may stream only I/II/III and V, or one unnamed ECG channel: any ECG lead is enough.
        if not any(is_ecg_lead(n) for n in rec.leads):
            raise InvalidRecord(f"no ECG lead present (got {', '.join(rec.leads)})", "no-standard-leads")
        if rec.n_samples < MIN_CHUNK_SAMPLES:
            raise InvalidRecord("chunk holds no samples", "too-short")
        if rec.duration_s > MAX_CHUNK_S:
            raise InvalidRecord(f"chunk of {rec.duration_s:.1f} s is longer than {MAX_CHUNK_S:g} s", "too-long")
    else:
        if not rec.standard_leads:
            raise InvalidRecord(f"none of the standard leads present (got {', '.join(rec.leads)})",
                                "no-standard-leads")
        if rec.duration_s < MIN_DURATION_S:
            raise InvalidRecord(f"strip of {rec.duration_s:.2f} s is shorter than {MIN_DURATION_S} s", "too-short")
    for name, mark in rec.lead_marks.items():
        if name not in rec.leads or mark not in (MARK_APPROXIMATION, MARK_UNKNOWN_POSITION):
            raise InvalidRecord(f"lead mark {mark!r} on lead {name} is not valid", "metadata")
    good = np.isfinite(rec.signal)
    if rec.flagged is not None:
        if rec.flagged.shape != rec.signal.shape:
            raise InvalidRecord("quality-flag mask does not match the signal", "shape")
        good |= rec.flagged
    if not good.all():
        bad_leads = [rec.leads[i] for i in np.flatnonzero(~good.all(axis=1))]
        raise InvalidRecord(f"non-finite samples (NaN/inf) in lead(s) {', '.join(bad_leads)}", "non-finite")
    if rec.sex not in (None, "M", "F"):
        raise InvalidRecord("sex must be M, F or absent", "metadata")


def derive_limb_leads(rec: EcgRecord) -> EcgRecord:
    """Add III, aVR, aVL, aVF from I and II when only those came (Einthoven/Goldberger), marked as derived."""
    if "I" not in rec.leads or "II" not in rec.leads:
        return rec
    i, ii = rec.lead("I"), rec.lead("II")
    formulas = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
    missing = [name for name in formulas if name not in rec.leads]
    if not missing:
        return rec
    signal = np.vstack([rec.signal] + [formulas[n][None, :] for n in missing]).astype(np.float32)
    flagged = rec.flagged
    if flagged is not None:
        limb_flags = flagged[rec.leads.index("I")] | flagged[rec.leads.index("II")]
        flagged = np.vstack([flagged] + [limb_flags[None, :]] * len(missing))
    return rec.replace(
        signal=signal,
        leads=rec.leads + tuple(missing),
        derived_leads=rec.derived_leads | frozenset(missing),
        flagged=flagged,
    )


def iso_utc(moment: datetime) -> str:
    """ISO text that sorts in time order: aware times in UTC (offsets differ between senders), naive ones as they
    are (the codecs attach a zone wherever the source has one)."""
    return (moment.astimezone(UTC) if moment.tzinfo is not None else moment).isoformat()


def last_window(rec: EcgRecord, seconds: float = MAX_ANALYSED_S) -> tuple[EcgRecord, bool]:
    """Longer strips are analysed on their last `seconds` (docs/SPEC.md §10); returns (record, truncated)."""
    n = int(round(seconds * rec.fs))
    if rec.n_samples <= n:
        return rec, False
    flagged = rec.flagged[:, -n:] if rec.flagged is not None else None
    return rec.replace(signal=rec.signal[:, -n:], flagged=flagged), True


def ordered_standard(rec: EcgRecord) -> tuple[np.ndarray, tuple[str, ...]]:
    """Standard leads only, in canonical order (the order codecs emit)."""
    names = rec.standard_leads
    idx = [rec.leads.index(n) for n in names]
    return rec.signal[idx], names


def fill_flagged(x: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Flagged or non-finite samples replaced by linear interpolation from their lead's good samples (a lead with
    none left becomes 0), so filters and models do not see rail values or NaN. The one copy every consumer uses."""
    bad = flagged | ~np.isfinite(x)
    out = x.copy()
    t = np.arange(x.shape[1])
    for i in np.flatnonzero(bad.any(axis=1)):  # per lead with gaps, not per sample
        good = ~bad[i]
        out[i] = np.interp(t, t[good], x[i, good]) if good.any() else 0.0
    return out
