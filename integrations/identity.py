"""Identity rules of docs/SPEC.md §10: stable report identifiers and keyed patient hashes.

Kafka keys and logs carry `patient_key` (HMAC-SHA256 with a configured secret), never the identifier itself.
"""
from __future__ import annotations

import hashlib
import hmac


def report_id(source_id: str) -> str:
    """Stable report identifier for one source message (sender + MSH-10, or the Observation identifier)."""
    return hashlib.sha256(("twiwatch-report|" + source_id).encode("utf-8")).hexdigest()[:32]


def patient_key(patient_id: str | None, secret: str, source_id: str | None = None, *,
                system: str | None = None) -> str:
    """Keyed hash of a patient identifier, used as Kafka key, per-patient state key and in logs.

    A business identifier is hashed with its system (EcgRecord.patient_system): MRN 123 of two hospitals, or HL7
    MRN 123 and FHIR Patient/123, are different patients. An ECG without a patient id is keyed by its own source
    id: it has no priors and is nobody's prior (one shared "unknown patient" key would compare strangers' ECGs)."""
    if patient_id:
        value = patient_id if system is None else f"<identifier>|{system}|{patient_id}"
    elif source_id:
        value = "<no-patient-id>|" + source_id
    else:
        raise ValueError("an ECG without a patient id needs its source id for a key")
    return hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def stream_key(stream: str, secret: str) -> str:
    """Keyed hash of a monitor stream (sender + device + bed): the Kafka key that keeps one bed's chunks in order on
    one partition. A location, not a patient, but hashed the same way so that keys never carry site details."""
    return hmac.new(secret.encode("utf-8"), ("<stream>|" + stream).encode("utf-8"), hashlib.sha256).hexdigest()[:32]


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
