"""Provenance builder (AI Transparency IG AIProvenance pattern): what the report was made from and by which Device.

Observation.performer cannot reference a Device in R4 (docs/SPEC.md §3), so the Device is named here. Provenance has no
business identifier in R4B or R5: one Provenance per report version, with an id derived from report id + version.
"""
from __future__ import annotations

from typing import Any

from integrations.fhir import codes
from integrations.fhir.context import ReportContext, research_meta


def source_entity(source_id: str, source_format: str) -> dict[str, Any]:
    """The input as a logical reference: the sender's Observation identifier (FHIR) or the HL7 message id."""
    what: dict[str, Any]
    if source_id.startswith("fhir:") and "|" in source_id and not source_id.startswith("fhir:id|"):
        system, value = source_id[len("fhir:"):].split("|", 1)
        what = {"type": "Observation", "identifier": {"system": system, "value": value} if system else {"value": value},
                "display": "source ECG Observation"}
    else:
        display = {"hl7": "source HL7 v2 ORU^R01 message", "fhir": "source ECG Observation"}.get(
            source_format, "source ECG record")
        what = {"identifier": {"system": codes.SOURCE_ID_SYSTEM, "value": source_id}, "display": display}
        if source_format == "fhir":
            what["type"] = "Observation"
    return {"role": "source", "what": what}


def prior_entity(prior_report_id: str, identifier_system: str, acquired_at: Any = None) -> dict[str, Any]:
    """The prior ECG the analysis compared with, as its own report: a logical reference by the report identifier
    (docs/SPEC.md §3.3). Role `source` (in R4B and R5): the novelty findings derive from it."""
    when = f" (acquired {acquired_at})" if acquired_at else ""
    return {"role": "source", "what": {"type": "DiagnosticReport",
                                       "identifier": {"system": identifier_system, "value": prior_report_id},
                                       "display": f"report of the prior ECG compared with{when}"}}


def _agent(who_url: str, display: str, role_text: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": "performer",
                             "display": "Performer"}]},
        "role": [{"text": role_text}],
        "who": {"reference": who_url, "display": display},
    }


def build_provenance(
    ctx: ReportContext,
    *,
    targets: list[str],
    device_url: str,
    source: dict[str, Any],
    prior: dict[str, Any] | None = None,
    reasoning_device_url: str | None = None,
    reasoning_display: str | None = None,
) -> dict[str, Any]:
    operation = ("CREATE", "create") if ctx.version == 1 else ("UPDATE", "revise")
    agents = [_agent(device_url, "twiwatch", "measurement, criteria and triage engine")]
    if reasoning_device_url is not None:
        agents.append(_agent(reasoning_device_url, reasoning_display or "reasoning model",
                             "reasoning model (output unverified)"))
    return {
        "resourceType": "Provenance",
        "id": ctx.rid("provenance", f"v{ctx.version}"),
        "meta": research_meta(security=False),
        "target": [{"reference": url} for url in targets],
        "recorded": ctx.issued,
        "activity": {"coding": [{"system": codes.V3_DATA_OPERATION, "code": operation[0], "display": operation[1]}]},
        "agent": agents,
        "entity": [source] + ([prior] if prior else []),
    }
