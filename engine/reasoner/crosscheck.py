"""Check each extracted claim against the engine's measurements: supported, contradicted or unverifiable.

Every claim gets exactly one verdict, with evidence naming the leads and numbers it rests on. A lead that is
absent, not analysable, or lacks the measurement makes that lead unverifiable, never a contradiction.
Tolerances (measurements are the engine's, on the median beat, vs the isoelectric PR level):
* T inverted: t_polarity "negative" or amplitude < -0.05 mV. A biphasic T not meeting that is unverifiable (its
  inverted lobe is partial). Claimed inverted and measured flat or upright: contradicted.
* T upright: amplitude > +0.05 mV and polarity positive; contradicted only by an inverted T (flat/biphasic:
  unverifiable: the difference is the dead zone, not the polarity). T flat/low: |amplitude| < 0.1 mV or polarity
  flat; contradicted at |amplitude| >= 0.1 mV. T biphasic: polarity biphasic, otherwise contradicted.
* ST (at J+60): elevation claimed: supported >= +0.1 mV (1 mm), contradicted < +0.05 mV, borderline between.
  "No ST elevation" reads as "no significant elevation": contradicted at or above ECG-R1's own protocol thresholds
  (+0.1 mV limb, +0.2 mV precordial), supported below +0.1 mV, unverifiable between (precordial 0.1-0.2 mV).
  Depression: supported at <= -0.05 mV (half a millimetre below), contradicted above. Deviation: either.
* QRS (all-lead width): wide = >= 120 ms, narrow = < 120 ms; a stated duration within +-20 ms (delineation
  error of QRS onset plus offset). LBBB / RBBB / IVCD / pacing: the engine's secondary-cause checks; a check that
  could not be made (lead absent, sampling rate too low) is unverifiable. Incomplete BBB: only its width can be
  checked (>= 120 ms contradicts it); otherwise unverifiable.
* Rhythm: the engine's rhythm (sinus | irregular | paced | undetermined). Atrial fibrillation: irregular with no
  consistent P wave; flutter and sinus arrhythmia are not measured (unverifiable).
* Rate: a stated rate within +-10 bpm or +-15 % (the larger) of the measured rate; tachycardia > 100 bpm,
  bradycardia < 60 bpm, normal 60-100 bpm, each contradicted only beyond a 10 bpm band; the atrial rate is not
  measured.
A claim naming several leads is contradicted when any verifiable lead contradicts it, supported when none does
and at least one supports, otherwise unverifiable. A T or ST claim naming no leads is about the whole ECG:
positive ones need one supporting lead (aVR excluded for T), negated ones are checked on every analysable lead;
"no T-wave inversion" is contradicted by a TWI group that met the docs/SPEC.md §4 criteria.
contradiction_rate = contradicted / (supported + contradicted); None when no claim could be checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.reasoner.claims import Claim, extract_claims
from engine.reasoner.leadtext import PRECORDIAL
from engine.reasoner.parse import ParsedReasoning
from engine.record import STANDARD_LEADS
from engine.result import Analysis, LeadResult, SecondaryFinding

Verdict = Literal["supported", "contradicted", "unverifiable"]
T_INVERTED_MV = -0.05
T_UPRIGHT_MV = 0.05
T_LOW_MV = 0.1
ST_ELEVATED_MV = 0.1
ST_NOT_ELEVATED_MV = 0.05
ST_SIGNIFICANT_MV = {"limb": 0.1, "precordial": 0.2}
ST_DEPRESSED_MV = -0.05
QRS_WIDE_MS = 120.0
QRS_TOLERANCE_MS = 20.0
RATE_TOLERANCE_BPM = 10.0
RATE_TOLERANCE_FRACTION = 0.15
RATE_BAND_BPM = 10.0
SUPPORTED, CONTRADICTED, UNVERIFIABLE = "supported", "contradicted", "unverifiable"


@dataclass
class CrossCheck:
    claims: list[Claim]
    counts: dict[str, int] = field(default_factory=dict)
    contradiction_rate: float | None = None

    def lines(self) -> list[str]:
        """Readable lines for the report: a summary, then each contradiction, then the rest compactly."""
        c = self.counts
        out = [f"{c.get('total', 0)} claims checked: {c.get(SUPPORTED, 0)} supported, "
               f"{c.get(CONTRADICTED, 0)} contradicted, {c.get(UNVERIFIABLE, 0)} unverifiable"]
        for claim in self.claims:
            if claim.verdict == CONTRADICTED:
                out.append(f"CONTRADICTED: {describe(claim)} ({'; '.join(claim.evidence)})")
        for verdict in (SUPPORTED, UNVERIFIABLE):
            names = [describe(x) for x in self.claims if x.verdict == verdict]
            if names:
                out.append(f"{verdict}: " + "; ".join(names))
        return out


_NAMES = {"lbbb": "LBBB", "rbbb": "RBBB", "bbb": "bundle branch block", "incomplete-rbbb": "incomplete RBBB",
          "incomplete-lbbb": "incomplete LBBB", "ivcd": "IVCD", "sinus": "sinus rhythm",
          "sinus-arrhythmia": "sinus arrhythmia", "atrial-fibrillation": "atrial fibrillation",
          "atrial-flutter": "atrial flutter", "paced": "paced rhythm", "irregular": "irregular rhythm",
          "regular": "regular rhythm", "tachycardia": "tachycardia", "bradycardia": "bradycardia",
          "normal": "normal rate"}


def describe(claim: Claim) -> str:
    """A claim in a few words: "T inverted in V4, V5", "no ST elevation", "rate 68 bpm", "QRS not wide"."""
    a, neg = claim.assertion, claim.negated
    if claim.kind == "t_wave":
        text = f"T {'not ' if neg else ''}{a}"
    elif claim.kind == "st":
        text = f"{'no ' if neg else ''}ST {a}"
    elif claim.value is not None:
        unit = "ms" if claim.kind == "qrs" else "bpm"
        span = f"{claim.value:g}" + (f"-{claim.value_high:g}" if claim.value_high is not None else "")
        subject = {"qrs": "QRS", "atrial-value": "atrial rate"}.get(claim.kind if claim.kind == "qrs" else a, "rate")
        text = f"{subject} {'not ' if neg else ''}{span} {unit}"
    elif a in ("wide", "narrow"):
        text = f"QRS {'not ' if neg else ''}{a}"
    else:
        text = f"{'no ' if neg else ''}{_NAMES.get(a, a)}"
    return text + (" in " + ", ".join(claim.leads) if claim.leads else "")


def cross_check(parsed: ParsedReasoning, analysis: Analysis) -> CrossCheck:
    return check_claims(extract_claims(parsed), analysis)


def check_claims(claims: list[Claim], analysis: Analysis) -> CrossCheck:
    for claim in claims:
        try:
            claim.verdict, claim.evidence = _judge(claim, analysis)
        except Exception as exc:  # noqa: BLE001 - a checker bug must not lose the claim: say so, count it
            claim.verdict, claim.evidence = UNVERIFIABLE, [f"check failed: {type(exc).__name__}"]
    counts = {v: sum(c.verdict == v for c in claims) for v in (SUPPORTED, CONTRADICTED, UNVERIFIABLE)}
    counts["total"] = len(claims)
    checked = counts[SUPPORTED] + counts[CONTRADICTED]
    rate = round(counts[CONTRADICTED] / checked, 4) if checked else None
    return CrossCheck(claims=claims, counts=counts, contradiction_rate=rate)


def _judge(claim: Claim, a: Analysis) -> tuple[str, list[str]]:
    if claim.kind in ("t_wave", "st"):
        return _judge_leads(claim, a)
    return {"qrs": _judge_qrs, "rhythm": _judge_rhythm, "rate": _judge_rate}[claim.kind](claim, a)


# --- per-lead (T, ST) ---------------------------------------------------------------------------------------

def _lead_status(a: Analysis, lead: str, needs: str) -> tuple[LeadResult | None, str | None]:
    lr = a.leads.get(lead)
    if lr is None:
        return None, f"{lead}: absent"
    if lr.quality != "ok":
        return None, f"{lead}: not analysable"
    if getattr(lr, needs) is None:
        return None, f"{lead}: not measured"
    return lr, None


def _t_state(lr: LeadResult) -> str:
    amp = lr.t_amplitude_mv
    if lr.t_polarity == "negative" or amp < T_INVERTED_MV:
        return "inverted"
    if lr.t_polarity == "biphasic":
        return "biphasic"
    if lr.t_polarity == "flat" or abs(amp) < T_UPRIGHT_MV:
        return "flat"
    return "upright"


def _t_verdict(assertion: str, negated: bool, lr: LeadResult) -> str:
    state, amp = _t_state(lr), lr.t_amplitude_mv
    if assertion == "inverted":
        verdict = {"inverted": SUPPORTED, "biphasic": UNVERIFIABLE}.get(state, CONTRADICTED)
    elif assertion == "upright":
        verdict = {"upright": SUPPORTED, "inverted": CONTRADICTED}.get(state, UNVERIFIABLE)
    elif assertion == "flat":
        verdict = SUPPORTED if state == "flat" or abs(amp) < T_LOW_MV else CONTRADICTED
    else:  # biphasic
        verdict = SUPPORTED if state == "biphasic" else CONTRADICTED
    return _negate(verdict) if negated else verdict


def _st_verdict(assertion: str, negated: bool, lead: str, st: float) -> str:
    significant = ST_SIGNIFICANT_MV["precordial" if lead in PRECORDIAL else "limb"]
    elevated = SUPPORTED if st >= ST_ELEVATED_MV else CONTRADICTED if st < ST_NOT_ELEVATED_MV else UNVERIFIABLE
    depressed = SUPPORTED if st <= ST_DEPRESSED_MV else CONTRADICTED
    if not negated:
        if assertion == "elevation":
            return elevated
        if assertion == "depression":
            return depressed
        return SUPPORTED if SUPPORTED in (elevated, depressed) else (
            CONTRADICTED if elevated == CONTRADICTED else UNVERIFIABLE)
    no_elevation = CONTRADICTED if st >= significant else SUPPORTED if st < ST_ELEVATED_MV else UNVERIFIABLE
    if assertion == "elevation":
        return no_elevation
    if assertion == "depression":
        return _negate(depressed)
    if depressed == SUPPORTED or no_elevation == CONTRADICTED:
        return CONTRADICTED
    return no_elevation


def _negate(verdict: str) -> str:
    return {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}.get(verdict, UNVERIFIABLE)


def _lead_evidence(kind: str, lr: LeadResult) -> str:
    if kind == "t_wave":
        return f"{lr.lead}: T {lr.t_amplitude_mv:+.2f} mV ({lr.t_polarity})"
    return f"{lr.lead}: ST {lr.st_j60_mv:+.2f} mV at J+60"


def _judge_leads(claim: Claim, a: Analysis) -> tuple[str, list[str]]:
    needs = "t_amplitude_mv" if claim.kind == "t_wave" else "st_j60_mv"
    named = bool(claim.leads)
    leads = claim.leads or [n for n in STANDARD_LEADS if n in a.leads]
    if not named and claim.kind == "t_wave":
        leads = [n for n in leads if n != "aVR"]  # an inverted T in aVR is normal: no global claim rests on it
    per_lead: dict[str, str] = {}
    evidence: dict[str, list[str]] = {SUPPORTED: [], CONTRADICTED: [], UNVERIFIABLE: []}
    for lead in leads:
        lr, why = _lead_status(a, lead, needs)
        if lr is None:
            per_lead[lead] = UNVERIFIABLE
            if named:
                evidence[UNVERIFIABLE].append(why)
            continue
        if claim.kind == "t_wave":
            v = _t_verdict(claim.assertion, claim.negated, lr)
        else:
            v = _st_verdict(claim.assertion, claim.negated, lead, lr.st_j60_mv)
        per_lead[lead] = v
        evidence[v].append(_lead_evidence(claim.kind, lr) + ("" if v != UNVERIFIABLE else " (borderline)"))
    if not named and claim.kind == "t_wave":
        return _global_t(claim, a, per_lead, evidence)
    verdicts = set(per_lead.values())
    if named or claim.negated:
        verdict = CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if SUPPORTED in verdicts else UNVERIFIABLE
    else:  # "ST elevation" with no leads: is there any?
        verdict = SUPPORTED if SUPPORTED in verdicts else (
            CONTRADICTED if verdicts == {CONTRADICTED} else UNVERIFIABLE)
    if not named and not per_lead:
        return UNVERIFIABLE, ["no analysable leads"]
    order = (CONTRADICTED, SUPPORTED, UNVERIFIABLE) if verdict == CONTRADICTED else (
        SUPPORTED, UNVERIFIABLE, CONTRADICTED)
    ev = [e for v in order for e in evidence[v]]
    if not named:
        ev = ([f"no leads named: checked on {len(per_lead)} leads"] + [e for e in evidence[verdict]])[:8]
    return verdict, ev


def _global_t(claim: Claim, a: Analysis, per_lead: dict[str, str],
              evidence: dict[str, list[str]]) -> tuple[str, list[str]]:
    if claim.assertion != "inverted":
        return UNVERIFIABLE, [f"T {claim.assertion} claimed without naming leads"]
    groups = [f"TWI group {', '.join(g.leads)} ({g.name})" for g in a.twi]
    measured = [lead for lead, v in per_lead.items() if v == (CONTRADICTED if claim.negated else SUPPORTED)]
    if not claim.negated:
        if groups or measured:
            return SUPPORTED, groups + [f"inverted T in {', '.join(measured)}"] if measured else groups
        checked = [lead for lead, v in per_lead.items() if v != UNVERIFIABLE]
        if checked:
            return CONTRADICTED, [f"no inverted T in any analysable lead ({len(checked)} checked)"]
        return UNVERIFIABLE, ["no analysable leads"]
    if groups:
        return CONTRADICTED, groups
    if measured:
        return UNVERIFIABLE, [f"inverted T in {', '.join(measured)} not meeting the contiguous-lead criteria"]
    if any(v == SUPPORTED for v in per_lead.values()):
        return SUPPORTED, ["no inverted T outside aVR"]
    return UNVERIFIABLE, ["no analysable leads"]


# --- QRS, rhythm, rate --------------------------------------------------------------------------------------

def _secondary(a: Analysis, cause: str) -> SecondaryFinding | None:
    return next((f for f in a.secondary if f.cause == cause), None)


def _assessed(f: SecondaryFinding | None) -> bool:
    return f is not None and not any("not assessed" in e or "not detectable" in e for e in f.evidence)


def _finding_verdict(claim: Claim, findings: list[SecondaryFinding | None]) -> tuple[str, list[str]]:
    present = [f for f in findings if f is not None and f.present]
    ev = [f"{f.cause}: {'present' if f.present else 'not present'} ({'; '.join(f.evidence)})"
          for f in findings if f is not None]
    if present:
        verdict = SUPPORTED
    elif findings and all(_assessed(f) for f in findings):
        verdict = CONTRADICTED
    else:
        return UNVERIFIABLE, ev or ["not checked by the engine"]
    return (_negate(verdict) if claim.negated else verdict), ev


def _judge_qrs(claim: Claim, a: Analysis) -> tuple[str, list[str]]:
    q = a.qrs_duration_ms
    qtext = f"QRS {q:.0f} ms (all leads, median beat)" if q is not None else "QRS not measured"
    kind = claim.assertion
    if kind in ("lbbb", "rbbb", "ivcd"):
        return _finding_verdict(claim, [_secondary(a, kind)])
    if kind == "bbb":
        return _finding_verdict(claim, [_secondary(a, "lbbb"), _secondary(a, "rbbb")])
    if q is None:
        return UNVERIFIABLE, [qtext]
    if kind.startswith("incomplete"):
        if q >= QRS_WIDE_MS and not claim.negated:
            return CONTRADICTED, [qtext + ": complete-block width"]
        return UNVERIFIABLE, [qtext + "; incomplete-block morphology not measured"]
    if kind == "duration":
        lo, hi = claim.value, claim.value_high or claim.value
        ok = lo - QRS_TOLERANCE_MS <= q <= hi + QRS_TOLERANCE_MS
        verdict = SUPPORTED if ok else CONTRADICTED
        return (_negate(verdict) if claim.negated else verdict), [qtext + f" (tolerance +-{QRS_TOLERANCE_MS:g} ms)"]
    wide = q >= QRS_WIDE_MS
    verdict = SUPPORTED if wide == (kind == "wide") else CONTRADICTED
    return (_negate(verdict) if claim.negated else verdict), [qtext]


def _judge_rhythm(claim: Claim, a: Analysis) -> tuple[str, list[str]]:
    cv = f", RR variation {a.rr_irregularity:.2f}" if a.rr_irregularity is not None else ""
    ev = [f"engine rhythm: {a.rhythm}{cv}"]
    r, kind = a.rhythm, claim.assertion
    if kind == "paced":
        pacing = _secondary(a, "ventricular-pacing")
        if r == "paced" or (pacing is not None and pacing.present):
            verdict = SUPPORTED
        elif r in ("sinus", "irregular") and _assessed(pacing):
            verdict = CONTRADICTED
        else:
            return UNVERIFIABLE, ev + ([pacing.evidence[0]] if pacing and pacing.evidence else [])
    elif kind == "sinus":
        verdict = SUPPORTED if r == "sinus" else CONTRADICTED if r in ("irregular", "paced") else UNVERIFIABLE
    elif kind == "atrial-fibrillation":
        if r == "irregular" and a.pr_interval_ms is None:
            verdict = SUPPORTED
        elif r == "sinus":
            verdict = CONTRADICTED
        else:
            verdict = UNVERIFIABLE
            ev.append("P wave measured" if a.pr_interval_ms is not None else "no consistent P wave")
    elif kind in ("irregular", "regular"):
        irregular = SUPPORTED if r == "irregular" else CONTRADICTED if r in ("sinus", "paced") else UNVERIFIABLE
        verdict = irregular if kind == "irregular" else _negate(irregular)
    else:  # atrial flutter, sinus arrhythmia: the engine does not tell these apart
        return UNVERIFIABLE, ev + [f"{kind} not measured by the engine"]
    return (_negate(verdict) if claim.negated else verdict), ev


def _judge_rate(claim: Claim, a: Analysis) -> tuple[str, list[str]]:
    hr = a.heart_rate_bpm
    if claim.assertion == "atrial-value":
        return UNVERIFIABLE, ["atrial rate not measured (the engine measures the ventricular rate)"]
    if hr is None:
        return UNVERIFIABLE, ["heart rate not measured"]
    ev = [f"measured heart rate {hr:.0f} bpm"]
    if claim.assertion == "value":
        tol = max(RATE_TOLERANCE_BPM, RATE_TOLERANCE_FRACTION * hr)
        lo, hi = claim.value, claim.value_high or claim.value
        verdict = SUPPORTED if lo - tol <= hr <= hi + tol else CONTRADICTED
        return (_negate(verdict) if claim.negated else verdict), [ev[0] + f" (tolerance +-{tol:.0f} bpm)"]
    inside, far_out, far_in = _RATE_CLASSES[claim.assertion]
    if not claim.negated:
        verdict = SUPPORTED if inside(hr) else CONTRADICTED if far_out(hr) else UNVERIFIABLE
    else:
        verdict = CONTRADICTED if far_in(hr) else SUPPORTED if not inside(hr) else UNVERIFIABLE
    return verdict, ev


# (in the class, clearly outside it by more than RATE_BAND_BPM, clearly inside it by more than RATE_BAND_BPM)
_B = RATE_BAND_BPM
_RATE_CLASSES = {
    "tachycardia": (lambda h: h > 100, lambda h: h < 100 - _B, lambda h: h >= 100 + _B),
    "bradycardia": (lambda h: h < 60, lambda h: h > 60 + _B, lambda h: h <= 60 - _B),
    "normal": (lambda h: 60 <= h <= 100, lambda h: h < 60 - _B or h > 100 + _B, lambda h: 60 + _B <= h <= 100 - _B),
}
