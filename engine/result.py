"""What one analysis returns: plain dataclasses, serialisable with `to_dict` (the `twiwatch analyze` JSON schema).

The report builder, the worker and the dashboard read these fields; evidence strings are shown to clinicians verbatim,
so they name leads and numbers and never patient data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Polarity = Literal["positive", "negative", "flat", "biphasic"]
Novelty = Literal["new", "persistent", "unknown"]
TriageClass = str  # "ischemic-pattern" | "secondary:<cause>" | "indeterminate" | "no-twi"

SUMMARY_SCHEMA_VERSION = 2  # 2: ST-depression groups and per-lead ST level/shape added


@dataclass
class Beat:
    """Sample indices at the record's own sampling rate; None where the wave is absent."""

    qrs_onset: int | None
    r_peak: int | None
    qrs_offset: int | None
    t_onset: int | None
    t_peak: int | None
    t_offset: int | None


@dataclass
class LeadResult:
    lead: str
    quality: str  # "ok" | "not-analysable"
    quality_reasons: list[str] = field(default_factory=list)
    derived: bool = False
    t_polarity: Polarity | None = None
    t_amplitude_mv: float | None = None  # signed, vs the isoelectric (PR) level, on the median beat
    t_symmetry: float | None = None  # descent/ascent slope ratio (~1 symmetric; secondary TWI is asymmetric)
    t_peak_ms: float | None = None  # from QRS onset, median beat
    t_offset_ms: float | None = None
    st_j60_mv: float | None = None
    r_amplitude_mv: float | None = None
    s_amplitude_mv: float | None = None
    qrs_duration_ms: float | None = None
    pr_interval_ms: float | None = None
    qrs_mostly_positive: bool | None = None
    snr_db: float | None = None
    beats: list[Beat] = field(default_factory=list)
    # Added with the 4th UDMI ST-depression criterion (engine/st.py): ST level at the J point (J..J+20 ms, vs the PR
    # level), ST slope over J..J+80 ms and its shape ("horizontal" | "downsloping" | "upsloping").
    st_j_mv: float | None = None
    st_slope_mv_s: float | None = None
    st_shape: str | None = None


@dataclass
class TwiGroup:
    name: str  # "inferior" | "lateral" | "anterior" | ...
    leads: list[str]
    depths_mv: dict[str, float]
    rule: str  # which criterion fired, readable
    novelty: Novelty = "unknown"


@dataclass
class SecondaryFinding:
    cause: str  # "lbbb" | "rbbb" | "lvh-strain" | "ventricular-pacing" | "wpw" | "ivcd" (wide QRS, other)
    present: bool
    evidence: list[str] = field(default_factory=list)


@dataclass
class Triage:
    cls: TriageClass
    evidence: list[str] = field(default_factory=list)


@dataclass
class PriorSummary:
    """What the per-patient table keeps of each ECG (schema versioned: later issues add fields, never rename)."""

    schema_version: int
    source_id: str
    acquired_at: str | None  # ISO 8601
    lead_t: dict[str, dict[str, Any]]  # lead -> {"polarity", "amplitude_mv", "quality"}
    twi_groups: list[list[str]]
    lead_st: dict[str, dict[str, Any]] = field(default_factory=dict)  # v2: lead -> {"st_j_mv", "st_shape", "quality"}
    st_depression_groups: list[list[str]] = field(default_factory=list)  # from v2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorSummary:
        version = int(data.get("schema_version", 0))
        if version > SUMMARY_SCHEMA_VERSION:
            raise ValueError(f"prior summary schema {version} is newer than this engine ({SUMMARY_SCHEMA_VERSION})")
        return cls(
            schema_version=version,
            source_id=data["source_id"],
            acquired_at=data.get("acquired_at"),
            lead_t=data.get("lead_t", {}),
            twi_groups=data.get("twi_groups", []),
            lead_st=data.get("lead_st", {}),
            st_depression_groups=data.get("st_depression_groups", []),
        )


@dataclass
class Analysis:
    engine_version: str
    fs: float  # the record's own rate; beats are indexed at it
    duration_s: float
    truncated: bool  # longer than 60 s: only the last 60 s analysed
    heart_rate_bpm: float | None
    rr_irregularity: float | None  # coefficient of variation of RR
    rhythm: str  # "sinus" | "irregular" | "paced" | "undetermined"
    leads: dict[str, LeadResult]
    absent_leads: list[str]
    derived_leads: list[str]
    twi: list[TwiGroup]
    novelty: str  # "new" | "persistent" | "unknown" | "none" (no TWI)
    secondary: list[SecondaryFinding]
    triage: Triage
    summary: PriorSummary
    notes: list[str] = field(default_factory=list)
    # Added by the engine: where the analysed window starts in the record as sent (non-zero only when truncated);
    # beat indices are into the record as sent, at its own rate.
    analysed_from_sample: int = 0
    qrs_duration_ms: float | None = None  # global (all-lead) QRS width on the median beat
    pr_interval_ms: float | None = None
    # 4th UDMI "new horizontal/downsloping ST depression >= 0.05 mV in 2 contiguous leads", beside TWI (engine/st.py):
    # groups (depths_mv = depression at the J point) and the record's novelty ("new"|"persistent"|"unknown"|"none").
    st_depression: list[TwiGroup] = field(default_factory=list)
    st_depression_novelty: str = "none"

    @property
    def twi_present(self) -> bool:
        return bool(self.twi)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["twi_present"] = self.twi_present
        return out
