"""What every builder of one report version shares: ids, labels, subject and times, fixed once per bundle."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.fhir import codes
from integrations.fhir.ids import full_url, is_fhir_id, resource_id


@dataclass(frozen=True)
class ReportContext:
    report_id: str
    version: int
    fhir_version: str  # "R4B" | "R5"
    identifier_system: str
    issued: str  # FHIR instant, UTC
    effective: str | None  # acquisition time as FHIR dateTime
    patient_id: str | None
    patient_system: str | None = None  # EcgRecord.patient_system: None = a FHIR logical id

    def rid(self, *parts: str) -> str:
        return resource_id(self.report_id, *parts)

    def url(self, resource_type: str, *parts: str) -> str:
        return full_url(resource_type, self.rid(*parts))

    def identifier(self, *parts: str) -> dict[str, str]:
        """Business identifier: the report id, or report id + "/" + the part, in the configured system."""
        return {"system": self.identifier_system, "value": "/".join((self.report_id,) + parts)}

    def subject(self) -> dict[str, Any] | None:
        """Real subject reference (docs/SPEC.md §10: EHRs need it)."""
        return patient_reference(self.patient_id, self.patient_system) if self.patient_id else None

    def stamp(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Add subject, effectiveDateTime (when known) and issued, in that order, to a report or result resource."""
        subject = self.subject()
        if subject is not None:
            resource["subject"] = subject
        if self.effective is not None:
            resource["effectiveDateTime"] = self.effective
        resource["issued"] = self.issued
        return resource


def patient_reference(patient_id: str, system: str | None) -> dict[str, Any]:
    """A literal reference only for a FHIR logical id; a business identifier (an HL7 MRN, a FHIR identifier) goes as
    a logical reference, so an EHR never resolves it to whichever Patient has that id. Ids that are not FHIR ids
    (urn:uuid:..., values with spaces) go the same way rather than as a broken literal reference."""
    if system is None and is_fhir_id(patient_id):
        return {"reference": f"Patient/{patient_id}"}
    return {"type": "Patient", "identifier": identifier(patient_id, system)}


def identifier(value: str, system: str | None) -> dict[str, str]:
    return {"system": system, "value": value} if system else {"value": value}


def research_meta(version: int | None = None, *, security: bool = True) -> dict[str, Any]:
    """meta with the research-only labels (docs/SPEC.md §3): AIAST + HRESCH security labels and the project tag."""
    meta: dict[str, Any] = {}
    if version is not None:
        meta["versionId"] = str(version)
    if security:
        meta["security"] = [dict(codes.SECURITY_AIAST), dict(codes.SECURITY_HRESCH)]
    meta["tag"] = [dict(codes.TAG_RESEARCH_ONLY)]
    return meta
