"""The report of one analysis as a FHIR Bundle: DiagnosticReport, result Observations, Device(s), Provenance.

Bundle types:
- `collection` (default): the self-contained report version that goes on the Kafka topic.
- `transaction`: the same entries with requests for idempotent EHR delivery. DiagnosticReport and Observations use a
  conditional *update* (`PUT DiagnosticReport?identifier=system|value`), not a conditional create: a conditional
  create would make the second version (partial -> preliminary) a no-op on the server. Redelivering one version
  rewrites the same content. The Device uses a conditional create (`ifNoneExist: identifier=...`); Provenance has no
  identifier element, so it goes as `PUT Provenance/<deterministic id>`.

Determinism: ids and fullUrls derive from the report id (ids.py), lists follow canonical lead order, numbers are
rounded; serialise with `bundle_bytes` (sorted keys) for byte-identical output.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from html import unescape
from typing import Any, Literal
from urllib.parse import quote

from engine.record import EcgRecord
from engine.result import Analysis
from integrations.fhir import codes
from integrations.fhir.context import ReportContext, research_meta
from integrations.fhir.datetimes import to_fhir_datetime, to_fhir_instant
from integrations.fhir.device import (
    DEFAULT_MODEL_CARD,
    build_reasoning_device,
    build_software_device,
    device_url,
    reasoning_device_identity,
)
from integrations.fhir.diagnostic_report import REPORT_STATUSES, build_diagnostic_report
from integrations.fhir.measures import (
    analysable_leads,
    build_impression_observation,
    build_lead_observation,
    impression_url,
    lead_observation_url,
)
from integrations.fhir.narrative import reasoning_lines
from integrations.fhir.provenance import build_provenance, prior_entity, source_entity
from integrations.fhir.validation import check_version, validate_bundle

__all__ = ["build_report_bundle", "bundle_bytes", "is_research_flagged", "validate_bundle", "report_resource"]

BundleType = Literal["collection", "transaction"]


def build_report_bundle(
    analysis: Analysis,
    record: EcgRecord,
    *,
    report_id: str,
    version: int,
    status: Literal["partial", "preliminary"],
    issued: datetime,
    fhir_version: str = "R4B",
    identifier_system: str = codes.DEFAULT_REPORT_IDENTIFIER_SYSTEM,
    software_version: str | None = None,
    model_versions: dict[str, str] | None = None,
    reasoning: dict[str, Any] | None = None,
    bundle_type: BundleType = "collection",
    organization: str | None = None,
    model_card: str = DEFAULT_MODEL_CARD,
    prior_acquired_at: str | datetime | None = None,
    validate: bool = True,
    head: dict[str, Any] | None = None,
    prior_report_id: str | None = None,
) -> dict[str, Any]:
    """One version of the report as a Bundle dict, valid under `fhir_version` (checked unless validate=False).

    `reasoning` (optional) is read for: model, version, status ("abandoned"/"failed"/"timeout" = not available),
    answer (str or list of str), cross_check (list of str). `prior_acquired_at` names the prior ECG in "new vs prior".
    `head` (optional): the encoder triage head's scores and disagreement sentence (narrative.head_lines).
    `prior_report_id`: the report identifier value of the prior ECG compared with; the Provenance names it
    (docs/SPEC.md §3.3).
    """
    check_version(fhir_version)
    if status not in REPORT_STATUSES:
        raise ValueError(f"report status must be one of {REPORT_STATUSES}, not {status!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError("version must be a positive int (it becomes meta.versionId)")
    if bundle_type not in ("collection", "transaction"):
        raise ValueError(f"bundle_type must be collection or transaction, not {bundle_type!r}")
    model_versions = dict(model_versions or {})
    software_version = software_version or analysis.engine_version
    ctx = ReportContext(
        report_id=report_id,
        version=version,
        fhir_version=fhir_version,
        identifier_system=identifier_system,
        issued=to_fhir_instant(issued),
        effective=to_fhir_datetime(record.acquired_at) if record.acquired_at is not None else None,
        patient_id=record.patient_id,
        patient_system=record.patient_system,
    )

    lead_obs = [(lead_observation_url(ctx, lr.lead), build_lead_observation(ctx, lr))
                for lr in analysable_leads(analysis)]
    r_lines = reasoning_lines(reasoning)
    impression = (impression_url(ctx), build_impression_observation(ctx, analysis, [u for u, _ in lead_obs], r_lines))
    observations = lead_obs + [impression]
    results = [(url, obs["code"]["text"]) for url, obs in observations]
    report = (ctx.url("DiagnosticReport"), build_diagnostic_report(
        ctx, analysis, status=status, results=results, reasoning=reasoning, prior_acquired_at=prior_acquired_at,
        head=head))

    software = build_software_device(fhir_version, software_version=software_version, model_versions=model_versions,
                                     organization=organization, model_card=model_card)
    devices = [(device_url("twiwatch", software_version, model_versions), software)]
    reasoning_url = reasoning_name = None
    if reasoning:
        name, model_version = reasoning_device_identity(reasoning, model_versions)
        reasoning_url, reasoning_name = device_url(name, model_version, {}), name
        devices.append((reasoning_url, build_reasoning_device(fhir_version, reasoning, model_versions, organization)))
    provenance = (ctx.url("Provenance", "provenance", f"v{version}"), build_provenance(
        ctx,
        targets=[report[0]] + [url for url, _ in observations],
        device_url=devices[0][0],
        source=source_entity(record.source_id, record.source_format),
        prior=prior_entity(prior_report_id, identifier_system, prior_acquired_at) if prior_report_id else None,
        reasoning_device_url=reasoning_url,
        reasoning_display=reasoning_name,
    ))

    entries = [report] + observations + devices + [provenance]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": ctx.rid("bundle", f"v{version}"),
        "meta": research_meta(security=False),
        # (identifier, version) is the dedup key of docs/SPEC.md §10; the Bundle carries both for consumers of the
        # topic.
        "identifier": ctx.identifier(f"v{version}"),
        "type": bundle_type,
        "timestamp": ctx.issued,
        "entry": [_entry(url, res, bundle_type, identifier_system) for url, res in entries],
    }
    if validate:
        validate_bundle(bundle, fhir_version)
    return bundle


def _entry(url: str, resource: dict[str, Any], bundle_type: str, identifier_system: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": url, "resource": resource}
    if bundle_type != "transaction":
        return entry
    rtype = resource["resourceType"]
    if rtype == "Provenance":
        entry["request"] = {"method": "PUT", "url": f"Provenance/{resource['id']}"}
        return entry
    ident = resource["identifier"][0]
    search = f"identifier={quote(ident['system'], safe=':/')}|{quote(ident['value'], safe=':/')}"
    if rtype == "Device":
        entry["request"] = {"method": "POST", "url": "Device", "ifNoneExist": search}
    else:
        entry["request"] = {"method": "PUT", "url": f"{rtype}?{search}"}
    return entry


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no whitespace, UTF-8): equal bundles give equal bytes."""
    return json.dumps(bundle, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def report_resource(bundle: dict[str, Any]) -> dict[str, Any]:
    """The DiagnosticReport of a report bundle."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "DiagnosticReport":
            return resource
    raise ValueError("bundle holds no DiagnosticReport")


def _text_of(div: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", div)).split())


def is_research_flagged(report: dict[str, Any]) -> bool:
    """True when a DiagnosticReport (or every DiagnosticReport in a Bundle) carries all research-only markers:
    AIAST and HRESCH in meta.security, the project research-only tag, and the disclaimer at the start of both the
    conclusion and the narrative."""
    if report.get("resourceType") == "Bundle":
        reports = [e.get("resource") or {} for e in report.get("entry") or []]
        reports = [r for r in reports if r.get("resourceType") == "DiagnosticReport"]
        return bool(reports) and all(is_research_flagged(r) for r in reports)
    if report.get("resourceType") != "DiagnosticReport":
        return False
    meta = report.get("meta") or {}
    security = {(c.get("system"), c.get("code")) for c in meta.get("security") or []}
    tags = {(c.get("system"), c.get("code")) for c in meta.get("tag") or []}
    wanted_security = {(codes.V3_OBSERVATION_VALUE, "AIAST"), (codes.V3_ACT_REASON, "HRESCH")}
    if not wanted_security <= security:
        return False
    if (codes.TAG_RESEARCH_ONLY["system"], codes.TAG_RESEARCH_ONLY["code"]) not in tags:
        return False
    conclusion = report.get("conclusion")
    if not isinstance(conclusion, str) or not conclusion.startswith(codes.DISCLAIMER):
        return False
    div = (report.get("text") or {}).get("div")
    return isinstance(div, str) and _text_of(div).startswith(codes.DISCLAIMER)

