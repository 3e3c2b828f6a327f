"""DiagnosticReport builder (docs/SPEC.md §3): research-only labels, partial -> preliminary lifecycle, SNOMED findings.

conclusionCode policy (findings, never diagnoses the engine cannot make):
- 59931005 T wave inversion when a TWI group met the criteria;
- the code(s) of each secondary cause whose check was positive (LBBB, RBBB, LVH [+ LV strain], ventricular pacing,
  WPW), and 10370003 pacing rhythm when the rhythm was classed as paced;
- nothing for the "ischemic-pattern" triage class: myocardial ischemia (164861001) and its children are diagnoses
  that need a clinician. The class stays in the conclusion text, marked as criteria-based and unverified;
- 428750005 (non-specific ST-T abnormality) is not emitted either: the engine has no rule that decides it.
"""
from __future__ import annotations

from typing import Any

from engine.result import Analysis
from integrations.fhir import codes
from integrations.fhir.context import ReportContext, research_meta
from integrations.fhir.narrative import conclusion_text, narrative_div

REPORT_STATUSES = ("partial", "preliminary")  # never final/amended: those mean verified by a clinician


def conclusion_codes(analysis: Analysis) -> list[dict[str, Any]]:
    found: list[tuple[str, str]] = []
    if analysis.twi:
        found.append(codes.SNOMED_TWI)
    for finding in analysis.secondary:
        if finding.present:
            found.extend(codes.SNOMED_BY_SECONDARY_CAUSE.get(finding.cause, []))
    if analysis.rhythm == "paced":
        found.append(codes.SNOMED_PACED_RHYTHM)
    unique = list(dict.fromkeys(found))  # LVH may come twice (lvh and lvh-strain); keep first-seen order
    return [{"coding": [{"system": codes.SNOMED, "code": code, "display": display}], "text": display}
            for code, display in unique]


def build_diagnostic_report(
    ctx: ReportContext,
    analysis: Analysis,
    *,
    status: str,
    results: list[tuple[str, str]],
    reasoning: dict[str, Any] | None,
    prior_acquired_at: Any = None,
    head: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`results` are (fullUrl, display) of the result Observations."""
    if status not in REPORT_STATUSES:
        raise ValueError(f"report status must be one of {REPORT_STATUSES}, not {status!r}")
    conclusion = conclusion_text(analysis, status, reasoning, prior_acquired_at, head)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ctx.rid(),
        "meta": research_meta(ctx.version),
        "text": {"status": "generated", "div": narrative_div(analysis, conclusion, reasoning, head)},
        "identifier": [ctx.identifier()],
        "status": status,
        "category": [{"coding": [{"system": codes.V2_0074, "code": codes.V2_0074_EC[0],
                                  "display": codes.V2_0074_EC[1]}]}],
        "code": {"coding": [{"system": codes.LOINC, "code": codes.LOINC_EKG_STUDY, "display": "EKG study"}],
                 "text": "ECG T-wave analysis (research use only)"},
    }
    ctx.stamp(report)
    if results:
        report["result"] = [{"reference": url, "display": display} for url, display in results]
    report["conclusion"] = conclusion
    coded = conclusion_codes(analysis)
    if coded:
        report["conclusionCode"] = coded
    return report
