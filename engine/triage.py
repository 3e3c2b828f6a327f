"""Record triage from the TWI groups, the secondary-cause checks and novelty.

* no-twi              : no group meets the criteria.
* secondary:<cause>   : every group is explained by a present secondary cause (pacing/LBBB/WPW/IVCD: any lead, as
                        their repolarisation is abnormal everywhere; RBBB: V1-V3 only; LVH strain: lateral leads).
* ischemic-pattern    : some group is unexplained and its inversions are symmetric (median symmetry >= 0.7).
* indeterminate       : unexplained but asymmetric, or too few analysable leads to judge.
Evidence is ordered: groups (leads, depths, symmetry, novelty), then 4th UDMI ST-depression groups (evidence only:
they do not change the class, which is about TWI), then QRS width and voltages, then quality caveats.
"""
from __future__ import annotations

import numpy as np

from engine.criteria import SYMMETRIC_MIN
from engine.measure import LeadMeasure
from engine.result import SecondaryFinding, Triage, TwiGroup

# Pre-excitation is named before LBBB: the delta wave widens the QRS and a right-sided pathway gives an LBBB-like
# morphology (WPW type B), while bundle branch block criteria do not apply to a pre-excited QRS (Part III).
CAUSE_ORDER = ("ventricular-pacing", "wpw", "lbbb", "ivcd", "rbbb", "lvh-strain")
_EXPLAINS = {
    "ventricular-pacing": None,  # None = any lead
    "lbbb": None,
    "wpw": None,
    "ivcd": None,
    "rbbb": {"V1", "V2", "V3"},
    "lvh-strain": {"I", "aVL", "V4", "V5", "V6"},
}
MIN_ANALYSABLE_LEADS = 2


def _explained_by(group: TwiGroup, present: list[str]) -> str | None:
    for cause in CAUSE_ORDER:
        if cause in present:
            scope = _EXPLAINS[cause]
            if scope is None or set(group.leads) <= scope:
                return cause
    return None


def _symmetry(group: TwiGroup, measures: dict[str, LeadMeasure]) -> float | None:
    vals = [measures[lead].symmetry for lead in group.leads if measures[lead].symmetry is not None]
    return float(np.median(vals)) if vals else None


def triage(groups: list[TwiGroup], secondary: list[SecondaryFinding], measures: dict[str, LeadMeasure],
           qrs_ms: float | None, n_analysable: int, novelty: str, caveats: list[str],
           st_groups: list[TwiGroup] | None = None) -> Triage:
    present = [f.cause for f in secondary if f.present]
    ev: list[str] = []
    unexplained: list[TwiGroup] = []
    causes: list[str] = []
    for g in groups:
        sym = _symmetry(g, measures)
        depths = ", ".join(f"{lead} -{d:.2f} mV" for lead, d in g.depths_mv.items())
        sym_txt = f"symmetry {sym:.2f}" if sym is not None else "symmetry n/a"
        cause = _explained_by(g, present)
        ev.append(f"TWI {g.name} ({depths}); {sym_txt}; novelty {g.novelty}"
                  + (f"; explained by {cause}" if cause else ""))
        if cause:
            causes.append(cause)
        else:
            unexplained.append(g)
    for g in st_groups or []:
        depths = ", ".join(f"{lead} -{d:.2f} mV" for lead, d in g.depths_mv.items())
        cause = _explained_by(g, present)
        ev.append(f"ST depression {g.name} ({depths}); novelty {g.novelty}"
                  + (f"; explained by {cause}" if cause else ""))
    if qrs_ms is not None:
        ev.append(f"QRS {qrs_ms:.0f} ms")
    for f in secondary:
        if f.present:
            ev.append(f"{f.cause}: " + "; ".join(f.evidence))
    ev += caveats
    if not groups:
        if n_analysable < MIN_ANALYSABLE_LEADS:
            return Triage("indeterminate", [f"only {n_analysable} analysable lead(s)"] + ev)
        return Triage("no-twi", ["no T inversion > 0.1 mV in 2 contiguous leads with prominent R"] + ev)
    if not unexplained:
        return Triage(f"secondary:{causes[0]}", ev)
    syms = [s for s in (_symmetry(g, measures) for g in unexplained) if s is not None]
    if syms and max(syms) >= SYMMETRIC_MIN:
        return Triage("ischemic-pattern", ev)
    return Triage("indeterminate", ["TWI not explained by a secondary cause but asymmetric"] + ev)
