"""docs/SPEC.md §4 TWI criteria: T inversion > 0.1 mV in two or more contiguous leads with a prominent R wave.

Contiguity: limb leads in the Cabrera sequence aVL, I, (-aVR), II, aVF, III and precordial V1..V6; neighbours in a
sequence are contiguous. -aVR sits between I and II, and aVR never counts, so I and II are not neighbours. An absent
lead breaks a run, so criteria are applied only where the needed leads exist.
A lead qualifies when:
  * its quality is "ok" (leads that failed quality never count), and it is not aVR;
  * its T is negative (or biphasic) with the inverted lobe deeper than TWI_DEPTH_MV below the isoelectric level;
  * its R wave is prominent: R >= PROMINENT_R_MV or R/S > 1 (either suffices; the 4th UDMI wording);
  * for III and V1 (where an inverted T is often normal), its QRS is mostly positive.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.measure import LeadMeasure
from engine.result import TwiGroup

TWI_DEPTH_MV = 0.1
PROMINENT_R_MV = 0.3
SYMMETRIC_MIN = 0.7  # symmetry ratio at or above: symmetric (ischemic-looking); below: slow descent, fast return
LIMB_SEQUENCE = ("aVL", "I", "-aVR", "II", "aVF", "III")
PRECORDIAL_SEQUENCE = ("V1", "V2", "V3", "V4", "V5", "V6")
RULE = "4th UDMI: T inverted > 0.1 mV in >= 2 contiguous leads with prominent R (R >= 0.3 mV or R/S > 1)"


@dataclass
class LeadVerdict:
    qualifies: bool
    depth_mv: float  # >= 0: how far the inverted lobe goes below the isoelectric level
    why: str  # readable reason when it does not qualify (empty when it does)


def t_depth(m: LeadMeasure) -> float:
    if m.polarity == "negative":
        return max(0.0, -min(m.t_amp, m.t_neg))
    if m.polarity == "biphasic":
        return max(0.0, -m.t_neg)
    return 0.0


def judge_lead(lead: str, m: LeadMeasure | None, quality_ok: bool) -> LeadVerdict:
    if m is None:
        return LeadVerdict(False, 0.0, f"{lead}: no beats measured")
    depth = t_depth(m)
    if lead == "aVR":
        return LeadVerdict(False, depth, "aVR never counts")
    if not quality_ok:
        return LeadVerdict(False, depth, f"{lead}: not analysable")
    if depth <= TWI_DEPTH_MV:
        return LeadVerdict(False, depth, "")
    if lead in ("III", "V1") and not m.qrs_mostly_positive:
        return LeadVerdict(False, depth, f"{lead}: T {-depth:.2f} mV but QRS mostly negative (not counted)")
    ratio = m.r_amp / m.s_amp if m.s_amp > 0 else float("inf")
    if not (m.r_amp >= PROMINENT_R_MV or ratio > 1.0):
        return LeadVerdict(False, depth, f"{lead}: T {-depth:.2f} mV without a prominent R "
                                         f"(R {m.r_amp:.2f} mV, S {m.s_amp:.2f} mV)")
    return LeadVerdict(True, depth, "")


def _group_name(leads: list[str]) -> str:
    s = set(leads)
    if s <= {"II", "aVF", "III"}:
        return "inferior"
    if s <= {"aVL", "I"}:
        return "high-lateral"
    if s <= {"V1", "V2"}:
        return "septal"
    if s <= {"V1", "V2", "V3", "V4"}:
        return "anterior"
    if s <= {"V5", "V6"}:
        return "lateral"
    return "anterolateral"


def find_groups(measures: dict[str, LeadMeasure],
                quality_ok: dict[str, bool]) -> tuple[list[TwiGroup], dict[str, LeadVerdict]]:
    """Maximal runs of >= 2 qualifying contiguous leads, per sequence. Returns (groups, per-lead verdicts)."""
    verdicts = {lead: judge_lead(lead, m, quality_ok.get(lead, False)) for lead, m in measures.items()}
    groups: list[TwiGroup] = []
    for seq in (LIMB_SEQUENCE, PRECORDIAL_SEQUENCE):
        run: list[str] = []
        for lead in seq + ("",):  # sentinel closes the last run
            v = verdicts.get(lead)
            if v is not None and v.qualifies:
                run.append(lead)
                continue
            if len(run) >= 2:
                groups.append(_make_group(run, verdicts, measures))
            run = []
    return groups, verdicts


def _make_group(run: list[str], verdicts: dict[str, LeadVerdict], measures: dict[str, LeadMeasure]) -> TwiGroup:
    rule = RULE + f": {', '.join(run)}"
    if set(run) & {"V2", "V3"} and set(run) <= {"V1", "V2", "V3", "V4"}:
        sym = [measures[lead].symmetry for lead in run if measures[lead].symmetry is not None]
        if all(measures[lead].r_amp >= PROMINENT_R_MV for lead in run if lead in ("V2", "V3")) and (
                any(measures[lead].polarity == "biphasic" for lead in run) or (sym and min(sym) >= SYMMETRIC_MIN)):
            rule += "; Wellens-type pattern (V2-V3 TWI/biphasic T with preserved R)"
    return TwiGroup(name=_group_name(run), leads=list(run),
                    depths_mv={lead: round(verdicts[lead].depth_mv, 3) for lead in run}, rule=rule)
