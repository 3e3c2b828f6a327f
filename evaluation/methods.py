"""What every method (our engine, each NeuroKit2 delineator) hands the scoring code: per-lead beat landmarks and a
lead-level signed T amplitude, plus record-level TWI groups, on one common shape.

Per-lead "TWI lead" (used against the leads a PTB-XL report names): the lead's T is inverted deeper than
TWI_DEPTH_MV below the isoelectric level on its dominant lobe (engine: t_polarity negative or biphasic with
t_amplitude_mv < -0.1; NeuroKit2: the median T-peak amplitude < -0.1), aVR excluded. Record-level TWI is the
docs/SPEC.md §4 contiguous-lead rule (engine.criteria) for every method.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engine.criteria import TWI_DEPTH_MV
from engine.record import STANDARD_LEADS, EcgRecord

OURS = "ours"


@dataclass
class LeadMarks:
    """Sample indices at the record's own rate (-1 = absent), one entry per detected beat."""

    r: np.ndarray
    qrs_on: np.ndarray
    qrs_off: np.ndarray
    t_peak: np.ndarray
    t_off: np.ndarray
    t_amp: float | None  # lead-level signed T amplitude vs the isoelectric level (None: no answer)

    @staticmethod
    def empty() -> LeadMarks:
        z = np.zeros(0, dtype=np.int64)
        return LeadMarks(z, z, z, z, z, None)


@dataclass
class MethodResult:
    leads: dict[str, LeadMarks]
    twi_groups: list[list[str]]
    lead_twi: dict[str, bool]  # per-lead T inversion deeper than TWI_DEPTH_MV (aVR excluded)
    secondary: dict[str, bool] = field(default_factory=dict)  # engine only
    st_depression: dict[str, bool] = field(default_factory=dict)  # engine only: per-lead 4th UDMI ST depression
    st_groups: list[list[str]] = field(default_factory=list)  # engine only: ST-depression groups
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def _arr(values) -> np.ndarray:
    return np.array([-1 if v is None else int(v) for v in values], dtype=np.int64)


def lead_twi_from_amp(lead: str, amp: float | None) -> bool:
    return lead != "aVR" and amp is not None and amp < -TWI_DEPTH_MV


def run_ours(rec: EcgRecord) -> MethodResult:
    from engine.analyze import analyze

    t0 = time.process_time()
    a = analyze(rec)
    cpu = time.process_time() - t0
    leads, lead_twi = {}, {}
    for name in STANDARD_LEADS:
        lr = a.leads.get(name)
        if lr is None:
            leads[name] = LeadMarks.empty()
            lead_twi[name] = False
            continue
        b = lr.beats
        amp = lr.t_amplitude_mv if lr.quality == "ok" else None
        leads[name] = LeadMarks(
            r=_arr(x.r_peak for x in b), qrs_on=_arr(x.qrs_onset for x in b), qrs_off=_arr(x.qrs_offset for x in b),
            t_peak=_arr(x.t_peak for x in b), t_off=_arr(x.t_offset for x in b), t_amp=amp)
        lead_twi[name] = bool(lr.t_polarity in ("negative", "biphasic") and lead_twi_from_amp(name, amp))
    sec = {f.cause: bool(f.present) for f in a.secondary}
    # 4th UDMI ST depression (engine/st.py): per lead J level <= -0.05 mV with a horizontal/downsloping ST
    st = {n: bool(lr.quality == "ok" and getattr(lr, "st_j_mv", None) is not None and lr.st_j_mv <= -0.05
                  and lr.st_shape in ("horizontal", "downsloping")) for n, lr in a.leads.items() if n != "aVR"}
    return MethodResult(leads=leads, twi_groups=[list(g.leads) for g in a.twi], lead_twi=lead_twi, secondary=sec,
                        st_depression=st, st_groups=[list(g.leads) for g in getattr(a, "st_depression", [])], cpu_s=cpu)
