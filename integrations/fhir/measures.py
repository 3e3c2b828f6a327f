"""Observation builders for the report's results: per-lead T-wave measures and the 8601-7 "EKG impression".

Observation.status has no `partial` (R4/R5): result Observations are `preliminary` in every report version, since
nothing here is verified by a clinician.
"""
from __future__ import annotations

from typing import Any

from engine.record import STANDARD_LEADS
from engine.result import Analysis, LeadResult
from integrations.fhir import codes
from integrations.fhir.context import ReportContext, research_meta

_CATEGORY_PROCEDURE = [
    {"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "procedure", "display": "Procedure"}]},
]

# (field on LeadResult, component code, display, UCUM code, decimals). Rounded so reports read cleanly and stay stable.
_QUANTITIES: tuple[tuple[str, str, str, str, int], ...] = (
    ("t_amplitude_mv", "t-amplitude", "T-wave amplitude vs isoelectric (PR) level, median beat", "mV", 3),
    ("t_symmetry", "t-symmetry", "T-wave symmetry (descent/ascent slope ratio)", "1", 2),
    ("st_j60_mv", "st-j60", "ST level at J+60 ms vs isoelectric level", "mV", 3),
    ("qrs_duration_ms", "qrs-duration", "QRS duration, median beat", "ms", 1),
    ("r_amplitude_mv", "r-amplitude", "R-wave amplitude", "mV", 3),
    ("s_amplitude_mv", "s-amplitude", "S-wave amplitude", "mV", 3),
)
_UNIT_TEXT = {"mV": "mV", "ms": "ms", "1": "ratio"}


def analysable_leads(analysis: Analysis) -> list[LeadResult]:
    """Standard leads the engine measured, canonical order: one result Observation each."""
    return [
        analysis.leads[name] for name in STANDARD_LEADS
        if name in analysis.leads and analysis.leads[name].quality == "ok"
    ]


def lead_observation_url(ctx: ReportContext, lead: str) -> str:
    return ctx.url("Observation", "t", lead)


def impression_url(ctx: ReportContext) -> str:
    return ctx.url("Observation", "impression")


def _measure_code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": codes.MEASURE_SYSTEM, "code": code, "display": display}], "text": display}


def _common(ctx: ReportContext, code: dict[str, Any], *parts: str) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ctx.rid(*parts),
        "meta": research_meta(ctx.version),
        "identifier": [ctx.identifier(*parts)],
        "status": "preliminary",
        "category": _CATEGORY_PROCEDURE,
        "code": code,
    }
    return ctx.stamp(obs)


def build_lead_observation(ctx: ReportContext, lr: LeadResult) -> dict[str, Any]:
    """T-wave measures of one lead: code = the lead's MDC waveform code, one component per measure present."""
    code = {
        "coding": [{"system": codes.MDC_SYSTEM, "code": codes.POTL_CODE_BY_LEAD[lr.lead],
                    "display": codes.potl_mnemonic(lr.lead)}],
        "text": f"T-wave measures, lead {lr.lead}",
    }
    obs = _common(ctx, code, "t", lr.lead)
    components: list[dict[str, Any]] = []
    if lr.t_polarity is not None:
        components.append({
            "code": _measure_code("t-polarity", "T-wave polarity"),
            "valueCodeableConcept": {"text": lr.t_polarity},
        })
    for attr, mcode, display, unit, decimals in _QUANTITIES:
        value = getattr(lr, attr)
        if value is None:
            continue  # an absent wave is left out rather than sent as a guess
        components.append({
            "code": _measure_code(mcode, display),
            "valueQuantity": {"value": round(float(value), decimals), "unit": _UNIT_TEXT[unit],
                              "system": codes.UCUM, "code": unit},
        })
    if lr.qrs_mostly_positive is not None:
        components.append({
            "code": _measure_code("qrs-mostly-positive", "QRS mostly positive"),
            "valueBoolean": bool(lr.qrs_mostly_positive),
        })
    if components:
        obs["component"] = components
    else:
        obs["dataAbsentReason"] = {"text": "no T-wave measure available"}
    if lr.derived:
        obs["note"] = [{"text": f"Lead {lr.lead} derived from leads I and II, not measured."}]
    return obs


def triage_phrase(analysis: Analysis) -> str:
    return f"{analysis.triage.cls} (criteria-based triage, unverified)"


def build_impression_observation(
    ctx: ReportContext, analysis: Analysis, derived_from: list[str], reasoning_lines: list[str]
) -> dict[str, Any]:
    """LOINC 8601-7 "EKG impression": the triage class as value, the evidence verbatim as notes."""
    code = {"coding": [{"system": codes.LOINC, "code": codes.LOINC_EKG_IMPRESSION, "display": "EKG impression"}],
            "text": "EKG impression (research, unverified)"}
    obs = _common(ctx, code, "impression")
    obs["valueCodeableConcept"] = {
        "coding": [{"system": codes.TRIAGE_SYSTEM, "code": analysis.triage.cls}],
        "text": triage_phrase(analysis),
    }
    notes = [codes.DISCLAIMER] + list(analysis.triage.evidence) + reasoning_lines
    obs["note"] = [{"text": line} for line in notes if line]
    if derived_from:
        obs["derivedFrom"] = [{"reference": url} for url in derived_from]
    return obs
