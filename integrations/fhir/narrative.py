"""Human-readable texts of a report: the conclusion and the XHTML narrative.

Both begin with the disclaimer. Findings are phrased as measurements ("Measured T-wave inversion in ..."), never as a
diagnosis; engine evidence strings are quoted verbatim (they name leads and numbers, never patient data).
"""
from __future__ import annotations

from datetime import date, datetime
from html import escape
from typing import Any

from engine.record import STANDARD_LEADS
from engine.result import Analysis, TwiGroup
from integrations.fhir import codes
from integrations.fhir.measures import triage_phrase

# One phrase per cause engine/secondary.py can report (tests/engine/test_narrative_labels.py keeps them in step):
# measured patterns, never diagnoses.
SECONDARY_LABELS = {
    "lbbb": "LBBB pattern",
    "lbbb-incomplete": "incomplete LBBB pattern (QRS 110-119 ms)",
    "rbbb": "RBBB pattern",
    "rbbb-incomplete": "incomplete RBBB pattern (QRS 110-119 ms)",
    "lvh-strain": "LVH voltage with strain pattern",
    "lvh": "LVH voltage",
    "ventricular-pacing": "ventricular pacing pattern",
    "wpw": "WPW (pre-excitation) pattern",
    "ivcd": "wide QRS without a bundle-branch, paced or pre-excitation pattern (intraventricular conduction delay)",
}


def _day(value: str | date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.date().isoformat() if isinstance(value, datetime) else value.isoformat()
    return str(value)[:10]


def twi_sentence(group: TwiGroup, prior_acquired_at: str | date | datetime | None = None) -> str:
    prior = _day(prior_acquired_at)
    novelty = {
        "new": "new vs prior ECG" + (f" of {prior}" if prior else ""),
        "persistent": "also present on prior ECG" + (f" of {prior}" if prior else ""),
    }.get(group.novelty, "novelty unknown: no prior ECG to compare")
    depths = ", ".join(f"{lead} {abs(float(d)):.2f} mV" for lead, d in group.depths_mv.items())
    detail = f"; depth below isoelectric {depths}" if depths else ""
    return (f"Measured T-wave inversion in {', '.join(group.leads)} ({group.name} group, {novelty}{detail}; "
            f"rule: {group.rule}).")


def reasoning_lines(reasoning: dict[str, Any] | None) -> list[str]:
    """Lines shown for an ECG-R1 style reasoning result. Keys read: model, status, answer (str or list),
    cross_check (list of str). Quoted as model output, unverified."""
    if not reasoning:
        return []
    model = str(reasoning.get("model") or "reasoning model")
    status = reasoning.get("status")
    if status in ("abandoned", "failed", "timeout"):
        return [f"Reasoning by {model} not available ({status}); measurements only."]
    lines = []
    answer = reasoning.get("answer")
    if isinstance(answer, (list, tuple)):
        answer = "; ".join(str(a) for a in answer)
    if answer:
        lines.append(f"Reasoning model output ({model}, unverified): {answer}")
    for check in reasoning.get("cross_check") or []:
        lines.append(f"Cross-check vs measurements: {check}")
    return lines or [f"Reasoning by {model} returned no answer."]


def head_lines(head: dict[str, Any] | None) -> list[str]:
    """The encoder triage head's scores (a research model, secondary to the measured criteria). Keys read: model,
    twi_present, ischemic_vs_secondary, disagreement (a sentence, or None when it agrees or abstains)."""
    if not head:
        return []
    lines = [f"{head.get('model', 'encoder head')}: TWI present p={float(head['twi_present']):.2f}, "
             f"ischemic vs secondary p={float(head['ischemic_vs_secondary']):.2f} (research model, unvalidated)."]
    lines.append(head["disagreement"] if head.get("disagreement") else "Agrees with the measured criteria or abstains.")
    return lines


def conclusion_text(
    analysis: Analysis, status: str, reasoning: dict[str, Any] | None, prior_acquired_at: Any = None,
    head: dict[str, Any] | None = None,
) -> str:
    parts = [codes.DISCLAIMER]
    if analysis.twi:
        parts += [twi_sentence(g, prior_acquired_at) for g in analysis.twi]
    else:
        parts.append("No T-wave inversion meeting the contiguous-lead criteria in the analysed leads.")
    parts.append(f"Pattern: {triage_phrase(analysis)}.")
    positive = [SECONDARY_LABELS.get(s.cause, s.cause) for s in analysis.secondary if s.present]
    if positive:
        parts.append(f"Secondary-cause checks positive (measured criteria): {', '.join(positive)}.")
    if analysis.absent_leads:
        parts.append(f"Absent leads, criteria not applied there: {', '.join(analysis.absent_leads)}.")
    if analysis.truncated:
        parts.append("Strip longer than 60 s: only its last 60 s were analysed.")
    if head_sentence(head):
        parts.append(head_sentence(head))
    if status == "partial":
        parts.append("Reasoning review pending.")
    elif reasoning:
        parts.append(reasoning_sentence(reasoning))
    return " ".join(parts)


def head_sentence(head: dict[str, Any] | None) -> str:
    """The conclusion's sentence about the encoder's head: only when it disagrees with the criteria."""
    if head and head.get("disagreement"):
        return f"Encoder triage head disagrees with the criteria: {head['disagreement']}."
    return ""


def reasoning_sentence(reasoning: dict[str, Any]) -> str:
    """The conclusion's sentence about an attached reasoning result (reasoning_lines gives its content)."""
    if reasoning.get("status") in ("abandoned", "failed", "timeout"):
        return "Model reasoning not available."
    return "Model reasoning attached (unverified)."


def model_sections(head: dict[str, Any] | None, reasoning: dict[str, Any] | None) -> str:
    """The narrative's sections for the encoder's head and the reasoning model (empty when neither ran)."""
    return _list("Encoder triage head", head_lines(head)) + _list("Reasoning", reasoning_lines(reasoning))


def _e(text: Any) -> str:
    return escape(str(text), quote=False)


def _fmt(value: Any, decimals: int) -> str:
    return "" if value is None else f"{float(value):.{decimals}f}"


def narrative_div(analysis: Analysis, conclusion: str, reasoning: dict[str, Any] | None,
                  head: dict[str, Any] | None = None) -> str:
    """XHTML narrative: disclaimer first, then the conclusion, per-lead measures and the evidence verbatim."""
    out = [f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{_e(codes.DISCLAIMER)}</b></p>']
    out.append(f"<p>{_e(conclusion[len(codes.DISCLAIMER):].strip())}</p>")
    out.append("<p><b>Per-lead T-wave measures (median beat)</b></p><table><tr><th>Lead</th><th>Quality</th>"
               "<th>T polarity</th><th>T amplitude (mV)</th><th>T symmetry</th><th>ST J+60 (mV)</th>"
               "<th>QRS (ms)</th><th>R (mV)</th></tr>")
    for name in STANDARD_LEADS:
        lr = analysis.leads.get(name)
        if lr is None:
            continue
        quality = lr.quality + (" (" + "; ".join(lr.quality_reasons) + ")" if lr.quality_reasons else "")
        lead = name + (" (derived)" if lr.derived else "")
        cells = [lead, quality, lr.t_polarity or "", _fmt(lr.t_amplitude_mv, 3), _fmt(lr.t_symmetry, 2),
                 _fmt(lr.st_j60_mv, 3), _fmt(lr.qrs_duration_ms, 0), _fmt(lr.r_amplitude_mv, 3)]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    out.append(_list("Triage evidence", analysis.triage.evidence))
    secondary = [f"{SECONDARY_LABELS.get(s.cause, s.cause)}: {'present' if s.present else 'not present'}"
                 + (" - " + "; ".join(s.evidence) if s.evidence else "") for s in analysis.secondary]
    out.append(_list("Secondary-cause checks", secondary))
    facts = [f"Engine {analysis.engine_version}", f"rhythm {analysis.rhythm}"]
    if analysis.heart_rate_bpm is not None:
        facts.append(f"heart rate {analysis.heart_rate_bpm:.0f} bpm")
    if analysis.absent_leads:
        facts.append("absent leads: " + ", ".join(analysis.absent_leads))
    if analysis.derived_leads:
        facts.append("derived leads (from I and II): " + ", ".join(analysis.derived_leads))
    out.append(f"<p>{_e('; '.join(facts))}.</p>")
    out.append(_list("Notes", analysis.notes))
    out.append(model_sections(head, reasoning))
    out.append("</div>")
    return "".join(out)


def _list(title: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"<p><b>{_e(title)}</b></p><ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"
