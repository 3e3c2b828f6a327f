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

    def rid(self, *parts: str) -> str:
        return resource_id(self.report_id, *parts)

    def url(self, resource_type: str, *parts: str) -> str:
        return full_url(resource_type, self.rid(*parts))

    def identifier(self, *parts: str) -> dict[str, str]:
        """Business identifier: the report id, or report id + "/" + the part, in the configured system."""
        return {"system": self.identifier_system, "value": "/".join((self.report_id,) + parts)}

    def subject(self) -> dict[str, Any] | None:
        """Real subject reference (GUIDE §10: EHRs need it). Ids that are not FHIR ids (urn:uuid:..., values with
        spaces) go as a logical reference by identifier rather than as a broken literal one."""
        if not self.patient_id:
            return None
        if is_fhir_id(self.patient_id):
            return {"reference": f"Patient/{self.patient_id}"}
        return {"type": "Patient", "identifier": {"value": self.patient_id}}

    def stamp(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Add subject, effectiveDateTime (when known) and issued, in that order, to a report or result resource."""
        subject = self.subject()
        if subject is not None:
            resource["subject"] = subject
        if self.effective is not None:
            resource["effectiveDateTime"] = self.effective
        resource["issued"] = self.issued
        return resource


def research_meta(version: int | None = None, *, security: bool = True) -> dict[str, Any]:
    """meta with the research-only labels (GUIDE §3): AIAST + HRESCH security labels and the project tag."""
    meta: dict[str, Any] = {}
    if version is not None:
        meta["versionId"] = str(version)
    if security:
        meta["security"] = [dict(codes.SECURITY_AIAST), dict(codes.SECURITY_HRESCH)]
    meta["tag"] = [dict(codes.TAG_RESEARCH_ONLY)]
    return meta
