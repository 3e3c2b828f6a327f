"""Identity rules of GUIDE §10: stable report identifiers and keyed patient hashes.

Kafka keys and logs carry `patient_key` (HMAC-SHA256 with a configured secret), never the identifier itself.
"""
from __future__ import annotations

import hashlib
import hmac


def report_id(source_id: str) -> str:
    """Stable report identifier for one source message (sender + MSH-10, or the Observation identifier)."""
    return hashlib.sha256(("twiwatch-report|" + source_id).encode("utf-8")).hexdigest()[:32]


def patient_key(patient_id: str | None, secret: str) -> str:
    """Keyed hash of a patient identifier, used as Kafka key and in logs. Unknown patients share one key."""
    value = patient_id if patient_id else "<unknown-patient>"
    return hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def hl7_source_id(sending_app: str, sending_facility: str, control_id: str) -> str:
    """MSH-10 is unique only per sender, so the source id joins MSH-3, MSH-4 and MSH-10."""
    return f"hl7:{sending_app}|{sending_facility}|{control_id}"


def fhir_source_id(identifier_system: str | None, identifier_value: str | None, resource_id: str | None) -> str:
    """Prefer the Observation's business identifier; fall back to its logical id."""
    if identifier_value:
        return f"fhir:{identifier_system or ''}|{identifier_value}"
    if resource_id:
        return f"fhir:id|{resource_id}"
    raise ValueError("Observation has neither identifier nor id")
