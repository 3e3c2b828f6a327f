"""Secondary (non-ischemic) causes of T-wave inversion, checked before a TWI is called ischemic (docs/SPEC.md §4).

Each check returns a SecondaryFinding with `present` and evidence strings naming leads and numbers; a check whose
leads are absent says so and is not present. Criteria (amplitudes on the median beat, vs the PR level):
* RBBB: QRS >= 120 ms, terminal R' (or dominant late R) in V1, terminal S >= 40 ms-wide or deep in I or V6.
* LBBB: QRS >= 120 ms, V1 mostly negative (QS/rS: the r before the S under 0.3 mV and under half the S, and no R'
  of half the S after it; an upright end after a deep S is LBBB's discordant ST elevation reaching into the QRS end),
  I or V6 broad positive with little S.
* LVH with strain: Sokolow-Lyon SV1 + max(RV5, RV6) > 3.5 mV, or Cornell RaVL + SV3 > 2.8 mV (men) / 2.0 mV
  (women; only when sex is known); strain = TWI > 0.1 mV or ST(J+60) <= -0.05 mV in I, aVL, V5 or V6.
* Ventricular pacing: pacing spikes lead >= half of the QRS complexes by <= 80 ms, with QRS >= 120 ms.
* WPW: PR < 140 ms, QRS >= 110 ms and a delta wave (slow initial QRS upstroke in >= 3 leads). The classic PR limit is
  120 ms, but the PR is measured to the QRS onset found on the spatial velocity, and the slow start of a delta wave
  stays under that threshold for 10-20 ms, so the measured PR of a pre-excited beat reads long (PTB-XL 461, WPW type B:
  PR 130-134 ms measured, delta in six leads). 140 ms with a delta in >= 3 leads found no other record in PTB-XL folds
  1-9 at 500 Hz, and one (an anteroseptal infarct, already flagged by the 120 ms rule) at 100 Hz. One WPW ECG is all
  the development data has: treat this check as weakly validated.
* Incomplete RBBB / LBBB: the same QRS morphology with QRS 110-119 ms (Surawicz et al., AHA Part III: incomplete
  RBBB 110-120 ms in adults; incomplete LBBB 110-119 ms). Reported as their own causes ("rbbb-incomplete",
  "lbbb-incomplete"); they do not explain a TWI in triage (the complete forms do, docs/SPEC.md §4.4).
* LVH by voltage ("lvh"), reported apart from strain: Sokolow-Lyon and Cornell as above, and RaVL > 1.1 mV (Hancock et
  al., AHA Part V, lists R in aVL >= 1.1 mV among the accepted voltage criteria; it needs no sex). "lvh-strain" is
  unchanged: voltage and a lateral strain pattern.
* Ventricular pacing without visible spikes: many carts filter the stimulus out, and below 400 Hz it cannot be seen.
  A paced ventricle is activated from the lead tip, cell to cell: the QRS is wider than almost any bundle branch
  block. Morphology rule: QRS >= PACED_QRS_MS with a regular rhythm (RR coefficient of variation <= PACED_RR_CV: a
  pacemaker paces at its programmed rate). Developed on PTB-XL folds 1-9 (PACE 11, CLBBB 29 at 100 Hz; the PTB-XL
  pacing records were already the pacing development set): a very wide LBBB (QRS >= 190 ms) is the false call.
* Evidence says "absent" only for a lead the record does not have; a present lead that failed quality is "not
  analysable (its reason)". Leads that failed only for their ST-T (noise judged on the T wave) still serve the QRS
  morphology checks: their QRS is far above that noise.
* IVCD: QRS >= 120 ms that none of the above explains (non-specific intraventricular conduction delay, or pacing
  whose spikes the sampling rate hides): repolarisation is secondary there too, so a TWI cannot be called ischemic.
"""
from __future__ import annotations

import numpy as np

from engine.measure import LeadMeasure
from engine.result import SecondaryFinding

WIDE_QRS_MS = 120.0
INCOMPLETE_QRS_MS = 110.0
RAVL_MV = 1.1
PACED_QRS_MS = 190.0
PACED_RR_CV = 0.08
WPW_PR_MS = 140.0
WPW_QRS_MS = 110.0
WPW_DELTA_LEADS = 3
SOKOLOW_MV = 3.5
CORNELL_MV = {"M": 2.8, "F": 2.0}


def _get(measures: dict[str, LeadMeasure], lead: str) -> LeadMeasure | None:
    return measures.get(lead)


def _missing(leads: tuple[str, ...], have, unusable: dict[str, str] | None) -> str:
    """'V1 absent' / 'V1 not analysable (flat line ...)' for the leads of `leads` not in `have`."""
    out = []
    for lead in leads:
        if lead in have:
            continue
        why = (unusable or {}).get(lead)
        out.append(f"{lead} not analysable ({why})" if why is not None else f"{lead} absent")
    return ", ".join(out)


def _terminal(tref: np.ndarray, on: int, off: int, frac: float = 0.4) -> np.ndarray:
    start = on + int(round((1 - frac) * (off - on)))
    return tref[start:off + 1]


def rbbb_morphology(tref: dict[str, np.ndarray], qrs_ms: float, on: int, off: int, fs: float,
                    unusable: dict[str, str] | None = None) -> tuple[bool | None, list[str]]:
    """(RBBB QRS morphology present, evidence); None when V1 cannot be read."""
    ev: list[str] = []
    if "V1" not in tref:
        return None, [_missing(("V1",), tref, unusable) + ": RBBB not assessed"]
    v1_term = _terminal(tref["V1"], on, off)
    r_prime = float(v1_term.max())
    ev.append(f"QRS {qrs_ms:.0f} ms")
    ev.append(f"V1 terminal R' {r_prime:.2f} mV")
    s_leads = []
    for lead in ("I", "V6"):
        if lead in tref:
            term = _terminal(tref[lead], on, off)
            neg_ms = float((term < -0.05).sum() * 1000.0 / fs)
            depth = float(-term.min())
            if neg_ms >= 40 or (depth >= 0.15 and neg_ms >= 20):
                s_leads.append(f"{lead} terminal S {depth:.2f} mV over {neg_ms:.0f} ms")
    ev += s_leads or ["no wide terminal S in I/V6"]
    terminal_depth = float(max(-v1_term.min(), 0.0))
    # the end of the QRS in V1 is dominated by a positive R' (not by the S of an rS)
    v1_late_r = r_prime >= 0.15 and r_prime >= 0.5 * terminal_depth
    return bool(v1_late_r and s_leads), ev


def check_rbbb(tref: dict[str, np.ndarray], qrs_ms: float, on: int, off: int, fs: float,
               unusable: dict[str, str] | None = None) -> SecondaryFinding:
    morph, ev = rbbb_morphology(tref, qrs_ms, on, off, fs, unusable)
    return SecondaryFinding("rbbb", bool(morph and qrs_ms >= WIDE_QRS_MS), ev)


def check_rbbb_incomplete(tref: dict[str, np.ndarray], qrs_ms: float, on: int, off: int, fs: float,
                          unusable: dict[str, str] | None = None) -> SecondaryFinding:
    morph, ev = rbbb_morphology(tref, qrs_ms, on, off, fs, unusable)
    ev = [e.replace("RBBB not assessed", "incomplete RBBB not assessed") for e in ev]
    if morph is not None:
        ev.append(f"incomplete when QRS {INCOMPLETE_QRS_MS:.0f}-{WIDE_QRS_MS - 1:.0f} ms")
    return SecondaryFinding("rbbb-incomplete", bool(morph and INCOMPLETE_QRS_MS <= qrs_ms < WIDE_QRS_MS), ev)


def lbbb_morphology(m: dict[str, LeadMeasure], qrs_ms: float,
                    unusable: dict[str, str] | None = None) -> tuple[bool | None, list[str]]:
    v1 = _get(m, "V1")
    lateral = [(lead, _get(m, lead)) for lead in ("I", "V6", "V5") if _get(m, lead) is not None]
    if v1 is None:
        return None, [_missing(("V1",), m, unusable) + ": LBBB not assessed"]
    if not lateral:
        return None, [_missing(("I", "V5", "V6"), m, unusable) + ": LBBB not assessed"]
    ev = [f"QRS {qrs_ms:.0f} ms", f"V1 R {v1.r_amp:.2f} mV (r before the S {v1.r_initial:.2f} mV), S {v1.s_amp:.2f} mV"]
    # QS/rS: the r before the S is small; an upright terminal part after a deep S is the discordant ST elevation
    # of LBBB reaching into the QRS end, not an R (an rSR' has an R' at least half its S)
    v1_neg = v1.s_amp > 2 * v1.r_initial and v1.r_initial < 0.3 and v1.r_amp < 0.5 * v1.s_amp
    broad_r = [f"{lead} R {x.r_amp:.2f} mV, S {x.s_amp:.2f} mV" for lead, x in lateral
               if x.qrs_mostly_positive and x.s_amp < 0.25 * max(x.r_amp, 1e-6)]
    ev += broad_r or ["no broad monophasic R in I/V5/V6"]
    return bool(v1_neg and broad_r), ev


def check_lbbb(m: dict[str, LeadMeasure], qrs_ms: float, unusable: dict[str, str] | None = None) -> SecondaryFinding:
    morph, ev = lbbb_morphology(m, qrs_ms, unusable)
    return SecondaryFinding("lbbb", bool(morph and qrs_ms >= WIDE_QRS_MS), ev)


def check_lbbb_incomplete(m: dict[str, LeadMeasure], qrs_ms: float,
                          unusable: dict[str, str] | None = None) -> SecondaryFinding:
    morph, ev = lbbb_morphology(m, qrs_ms, unusable)
    ev = [e.replace("LBBB not assessed", "incomplete LBBB not assessed") for e in ev]
    return SecondaryFinding("lbbb-incomplete", bool(morph and INCOMPLETE_QRS_MS <= qrs_ms < WIDE_QRS_MS), ev)


def check_lvh_voltage(m: dict[str, LeadMeasure], sex: str | None,
                      unusable: dict[str, str] | None = None) -> SecondaryFinding:
    """LVH by voltage alone (no strain needed): Sokolow-Lyon, Cornell (with sex), RaVL."""
    ev: list[str] = []
    hits: list[str] = []
    if _get(m, "V1") and (_get(m, "V5") or _get(m, "V6")):
        rv = max(x.r_amp for x in (_get(m, "V5"), _get(m, "V6")) if x is not None)
        sok = m["V1"].s_amp + rv
        ev.append(f"Sokolow-Lyon SV1+RV5/6 {sok:.2f} mV (> {SOKOLOW_MV})")
        if sok > SOKOLOW_MV:
            hits.append("Sokolow-Lyon")
    else:
        ev.append("Sokolow-Lyon: " + _missing(("V1", "V5", "V6"), m, unusable))
    if _get(m, "aVL") and _get(m, "V3"):
        cor = m["aVL"].r_amp + m["V3"].s_amp
        if sex in CORNELL_MV:
            ev.append(f"Cornell RaVL+SV3 {cor:.2f} mV (> {CORNELL_MV[sex]} for {sex})")
            if cor > CORNELL_MV[sex]:
                hits.append("Cornell")
        else:
            ev.append(f"Cornell RaVL+SV3 {cor:.2f} mV: sex unknown, not applied")
    if _get(m, "aVL"):
        ravl = m["aVL"].r_amp
        ev.append(f"RaVL {ravl:.2f} mV (> {RAVL_MV})")
        if ravl > RAVL_MV:
            hits.append("RaVL")
    if hits:
        ev.append("voltage criteria met: " + ", ".join(hits))
    return SecondaryFinding("lvh", bool(hits), ev)


def check_lvh_strain(m: dict[str, LeadMeasure], sex: str | None, lateral_twi: list[str]) -> SecondaryFinding:
    ev: list[str] = []
    voltage = False
    if _get(m, "V1") and (_get(m, "V5") or _get(m, "V6")):
        rv = max(x.r_amp for x in (_get(m, "V5"), _get(m, "V6")) if x is not None)
        sok = m["V1"].s_amp + rv
        ev.append(f"Sokolow-Lyon SV1+RV5/6 {sok:.2f} mV (> {SOKOLOW_MV})")
        voltage |= sok > SOKOLOW_MV
    if sex in CORNELL_MV and _get(m, "aVL") and _get(m, "V3"):
        cor = m["aVL"].r_amp + m["V3"].s_amp
        ev.append(f"Cornell RaVL+SV3 {cor:.2f} mV (> {CORNELL_MV[sex]} for {sex})")
        voltage |= cor > CORNELL_MV[sex]
    if not ev:
        return SecondaryFinding("lvh-strain", False, ["V1/V5/V6 absent: LVH not assessed"])
    strain = [lead for lead in ("I", "aVL", "V5", "V6") if lead in lateral_twi or
              (_get(m, lead) is not None and m[lead].st_j60 <= -0.05
               and m[lead].polarity in ("negative", "biphasic", "flat"))]
    if strain:
        ev.append("strain (TWI/ST depression) in " + ", ".join(strain))
    else:
        ev.append("no lateral strain pattern")
    return SecondaryFinding("lvh-strain", bool(voltage and strain), ev)


def check_pacing(spike_lead_fraction: float | None, n_spikes: int, qrs_ms: float,
                 rr_cv: float | None = None) -> SecondaryFinding:
    """Spikes leading the QRS (>= 400 Hz), or, where no spike leads it, the paced morphology (module docstring)."""
    if spike_lead_fraction is None:
        ev = ["sampling rate below 400 Hz: pacing spikes not detectable", f"QRS {qrs_ms:.0f} ms"]
    else:
        ev = [f"{n_spikes} pacing spikes; {100 * spike_lead_fraction:.0f}% of QRS complexes led by a spike",
              f"QRS {qrs_ms:.0f} ms"]
        if spike_lead_fraction >= 0.5 and qrs_ms >= WIDE_QRS_MS:
            return SecondaryFinding("ventricular-pacing", True, ev)
    morph = rr_cv is not None and qrs_ms >= PACED_QRS_MS and rr_cv <= PACED_RR_CV
    if rr_cv is not None:
        ev.append(f"RR coefficient of variation {rr_cv:.2f}")
    if morph:
        ev.append(f"paced morphology without visible spikes: QRS >= {PACED_QRS_MS:.0f} ms at a regular rate "
                  f"(RR CV <= {PACED_RR_CV})")
    return SecondaryFinding("ventricular-pacing", bool(morph), ev)


def check_wpw(tref: dict[str, np.ndarray], m: dict[str, LeadMeasure], pr_ms: float | None, qrs_ms: float,
              on: int, fs: float) -> SecondaryFinding:
    if pr_ms is None:
        return SecondaryFinding("wpw", False, ["no P wave measured: WPW not assessed"])
    ev = [f"PR {pr_ms:.0f} ms", f"QRS {qrs_ms:.0f} ms"]
    delta_leads = []
    k = int(round(0.03 * fs))
    for lead, y in tref.items():
        x = m.get(lead)
        if x is None or x.r_amp < 0.5 or not x.qrs_mostly_positive:
            continue
        up = np.diff(y[on:on + int(round(0.12 * fs))])
        if up.size <= k:
            continue
        initial, steepest = float(up[:k].mean()), float(up.max())
        if steepest > 0 and 0 < initial < 0.3 * steepest:
            delta_leads.append(lead)
    ev.append("slurred initial upstroke (delta) in " + ", ".join(delta_leads) if delta_leads else "no delta wave")
    present = pr_ms < WPW_PR_MS and qrs_ms >= WPW_QRS_MS and len(delta_leads) >= WPW_DELTA_LEADS
    return SecondaryFinding("wpw", bool(present), ev)


def check_ivcd(qrs_ms: float, others: list[SecondaryFinding]) -> SecondaryFinding:
    explained = [f.cause for f in others if f.present and f.cause in ("lbbb", "rbbb", "ventricular-pacing", "wpw")]
    ev = [f"QRS {qrs_ms:.0f} ms"] + ([f"explained by {', '.join(explained)}"] if explained else [])
    return SecondaryFinding("ivcd", bool(qrs_ms >= WIDE_QRS_MS and not explained), ev)
