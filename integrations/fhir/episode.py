"""A monitor episode of new T-wave inversion as a FHIR Bundle: DiagnosticReport, per-lead trend Observations,
Device, Provenance (docs/SPEC.md §3, §11).

One report per episode, versioned like a strip's report: version 1 when it opens, a new version on a material
change (leads join, depth moves by ≥ 0.05 mV, a reasoning model's reading arrives) and when it resolves;
`effectivePeriod` is the episode's span (its end only once resolved). On 12-lead monitoring the encoder's head and
the ECG-R1 reading (with its cross-check) appear as in a strip's report: the same narrative lines and Devices.
Always `preliminary`: nothing here is verified by a clinician. The episode is a trend against the patient's own
baseline on this bed, a research measurement, never a diagnosis.

Determinism: ids derive from the report id, times from the event (not the wall clock), so a recomputed event yields
the same bytes (serialise with report.bundle_bytes).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any, Protocol

from engine.record import STANDARD_LEADS
from integrations.fhir import codes
from integrations.fhir.context import ReportContext, research_meta
from integrations.fhir.datetimes import to_fhir_instant
from integrations.fhir.device import (
    build_reasoning_device,
    build_software_device,
    device_url,
    reasoning_device_identity,
)
from integrations.fhir.narrative import head_sentence, model_sections
from integrations.fhir.provenance import build_provenance
from integrations.fhir.report import _entry
from integrations.fhir.validation import check_version, validate_bundle

MONITOR_CODE = {"coding": [{"system": codes.LOINC, "code": codes.LOINC_EKG_STUDY, "display": "EKG study"}],
                "text": "Bedside ECG monitoring: T-wave trend episode (research use only)"}


class EpisodeEventLike(Protocol):
    kind: str  # opened | updated | resolved
    episode_start_s: float
    at_s: float
    leads: tuple[str, ...]
    depth_mv: dict[str, float]
    baseline_source: str
    baseline_mv: dict[str, float]
    reason: str
    version: int


def _instant(epoch_s: float) -> str:
    return to_fhir_instant(datetime.fromtimestamp(epoch_s, UTC))


def _lead_order(lead: str) -> tuple[int, str]:
    return (STANDARD_LEADS.index(lead), lead) if lead in STANDARD_LEADS else (len(STANDARD_LEADS), lead)


def episode_conclusion(event: EpisodeEventLike, *, monitored_leads: Sequence[str], reasoning_note: str,
                       head: dict[str, Any] | None = None) -> str:
    leads = sorted(event.leads, key=_lead_order)
    depths = ", ".join(f"{lead} {event.depth_mv.get(lead, 0.0):.2f} mV" for lead in leads)
    opened = datetime.fromtimestamp(event.episode_start_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if event.kind == "resolved":
        state = f"Resolved at {datetime.fromtimestamp(event.at_s, UTC).strftime('%H:%M:%S UTC')} ({event.reason})."
    else:
        state = f"Ongoing ({event.reason})."
    return (f"{codes.DISCLAIMER} Monitor trend: new T-wave inversion against the patient's own baseline "
            f"({event.baseline_source}) in lead(s) {', '.join(leads)} (depth below baseline: {depths}), since "
            f"{opened}. {state} Monitored leads: {', '.join(sorted(monitored_leads, key=_lead_order))}. "
            f"{_sentence(head_sentence(head))}{reasoning_note} "
            "Measured criteria only; not a diagnosis.")


def _sentence(text: str) -> str:
    return f"{text} " if text else ""


def build_episode_bundle(
    event: EpisodeEventLike,
    *,
    report_id: str,
    patient_id: str | None,
    patient_system: str | None,
    stream_source: str,
    monitored_leads: Sequence[str],
    lead_marks: Mapping[str, str],
    bed: str | None,
    device_id: str | None,
    fhir_version: str = "R4B",
    identifier_system: str = codes.DEFAULT_REPORT_IDENTIFIER_SYSTEM,
    software_version: str,
    organization: str | None = None,
    reasoning_note: str,
    head: dict[str, Any] | None = None,
    reasoning: dict[str, Any] | None = None,
    model_versions: dict[str, str] | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """One version of an episode's report as a Bundle (collection), valid under `fhir_version`. `head`: the encoder
    triage head's result for the opening window, `reasoning` the reasoning model's (the shape
    integrations.fhir.report.build_report_bundle reads), `model_versions` the encoder's version for the Device."""
    check_version(fhir_version)
    ctx = ReportContext(report_id=report_id, version=event.version, fhir_version=fhir_version,
                        identifier_system=identifier_system, issued=_instant(event.at_s), effective=None,
                        patient_id=patient_id, patient_system=patient_system)
    observations = [(ctx.url("Observation", "trend", lead), _trend_observation(ctx, event, lead, lead_marks))
                    for lead in sorted(event.leads, key=_lead_order)]
    conclusion = episode_conclusion(event, monitored_leads=monitored_leads, reasoning_note=reasoning_note, head=head)
    model_versions = dict(model_versions or {})
    period = {"start": _instant(event.episode_start_s)}
    if event.kind == "resolved":
        period["end"] = _instant(event.at_s)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ctx.rid(),
        "meta": research_meta(ctx.version),
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(conclusion)}'
                                               f"</p><p>{escape(_where(bed, device_id))}</p>"
                                               f"{model_sections(head, reasoning)}</div>"},
        "identifier": [ctx.identifier()],
        "status": "preliminary",
        "category": [{"coding": [{"system": codes.V2_0074, "code": codes.V2_0074_EC[0],
                                  "display": codes.V2_0074_EC[1]}]}],
        "code": MONITOR_CODE,
    }
    subject = ctx.subject()
    if subject is not None:
        report["subject"] = subject
    report["effectivePeriod"] = period
    report["issued"] = ctx.issued
    report["result"] = [{"reference": url, "display": obs["code"]["text"]} for url, obs in observations]
    report["conclusion"] = conclusion
    report["conclusionCode"] = [{"coding": [{"system": codes.SNOMED, "code": codes.SNOMED_TWI[0],
                                             "display": codes.SNOMED_TWI[1]}], "text": codes.SNOMED_TWI[1]}]
    report_url = ctx.url("DiagnosticReport")
    software = build_software_device(fhir_version, software_version=software_version,
                                     model_versions=model_versions, organization=organization)
    software_url = device_url("twiwatch", software_version, model_versions)
    devices = [(software_url, software)]
    reasoning_url = reasoning_name = None
    if reasoning:  # as in a strip's report: the reasoning model is a Device of its own and an agent of the version
        name, model_version = reasoning_device_identity(reasoning, model_versions)
        reasoning_url, reasoning_name = device_url(name, model_version, {}), name
        devices.append((reasoning_url, build_reasoning_device(fhir_version, reasoning, model_versions,
                                                              organization)))
    source = {"role": "source", "what": {"identifier": {"system": codes.SOURCE_ID_SYSTEM, "value": stream_source},
                                         "display": "bedside monitor waveform stream (chunks)"}}
    provenance = build_provenance(ctx, targets=[report_url] + [u for u, _ in observations], device_url=software_url,
                                  source=source, reasoning_device_url=reasoning_url,
                                  reasoning_display=reasoning_name)
    entries = ([(report_url, report)] + observations + devices
               + [(ctx.url("Provenance", "provenance", f"v{event.version}"), provenance)])
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": ctx.rid("bundle", f"v{event.version}"),
        "meta": research_meta(security=False),
        "identifier": ctx.identifier(f"v{event.version}"),
        "type": "collection",
        "timestamp": ctx.issued,
        "entry": [_entry(url, res, "collection", identifier_system) for url, res in entries],
    }
    if validate:
        validate_bundle(bundle, fhir_version)
    return bundle


def _where(bed: str | None, device_id: str | None) -> str:
    return f"Bed {bed or 'unknown'}, monitor {device_id or 'unknown'}."


def _trend_observation(ctx: ReportContext, event: EpisodeEventLike, lead: str,
                       lead_marks: Mapping[str, str]) -> dict[str, Any]:
    if lead in codes.POTL_CODE_BY_LEAD:
        coding = [{"system": codes.MDC_SYSTEM, "code": codes.POTL_CODE_BY_LEAD[lead],
                   "display": codes.potl_mnemonic(lead)}]
    else:  # a chest lead of unknown position or an unnamed ECG channel: no lead code claims a position
        coding = [{"system": codes.MDC_SYSTEM, "code": codes.MDC_ECG_ELEC_POTL, "display": "MDC_ECG_ELEC_POTL"}]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ctx.rid("trend", lead),
        "meta": research_meta(ctx.version),
        "identifier": [ctx.identifier("trend", lead)],
        "status": "preliminary",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "procedure",
                                  "display": "Procedure"}]}],
        "code": {"coding": coding, "text": f"T-wave trend, lead {lead}"},
    }
    subject = ctx.subject()
    if subject is not None:
        obs["subject"] = subject
    obs["effectiveDateTime"] = ctx.issued
    obs["issued"] = ctx.issued
    obs["component"] = [
        _quantity("t-depth-below-baseline", "T-wave depth below the patient's baseline", event.depth_mv.get(lead)),
        _quantity("t-baseline", f"Baseline T-wave amplitude ({event.baseline_source})",
                  event.baseline_mv.get(lead)),
    ]
    obs["component"] = [c for c in obs["component"] if c is not None]
    mark = lead_marks.get(lead)
    if mark:
        obs["note"] = [{"text": f"Lead {lead}: {mark} (monitoring lead)."}]
    return obs


def _quantity(code: str, display: str, value: float | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"code": {"coding": [{"system": codes.MEASURE_SYSTEM, "code": code, "display": display}], "text": display},
            "valueQuantity": {"value": round(float(value), 3), "unit": "mV", "system": codes.UCUM, "code": "mV"}}
