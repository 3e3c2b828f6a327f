"""ECG Observation (SampledData, one component per lead) <-> EcgRecord, FHIR R4/R4B and R5 (docs/SPEC.md §3).

Decoding is pure: bytes (JSON, or XML through xml.py) in, an EcgRecord or a DecodeError out. The structure is checked
with the matching fhir.resources model; the sample arrays are parsed with numpy (sampled_data.py). The PoCD
SampleArrayObservation chunks reuse the helpers here (sample_array.py).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from engine.errors import InvalidRecord
from engine.record import STANDARD_LEADS, EcgRecord, canonical_lead, lead_and_mark, make_record
from integrations.errors import DecodeError
from integrations.fhir import codes
from integrations.fhir.context import identifier, patient_reference
from integrations.fhir.datetimes import parse_fhir_date, parse_fhir_datetime, to_fhir_datetime
from integrations.fhir.sampled_data import format_microvolts, json_number, mv_per_unit, parse_data, sampling_rate_hz
from integrations.fhir.validation import InvalidFhir, check_version, validate_resource
from integrations.fhir.xml import is_xml, load_xml
from integrations.identity import fhir_source_id
from integrations.senders import SenderRule

_SEX_BY_GENDER = {"male": "M", "female": "F"}
_GENDER_BY_SEX = {"M": "male", "F": "female"}
_CONTAINED_PATIENT_ID = "patient"
# The sender withdrew these ECGs; analysing them would put a report on a recording that does not stand.
_NOT_ANALYSABLE_STATUSES = ("entered-in-error", "cancelled")


# ---------------------------------------------------------------------------------------------------------- decode


def decode_observation(data: bytes, *, sender: SenderRule | None = None) -> EcgRecord:
    """One FHIR Observation (JSON or XML, UTF-8) -> EcgRecord (a strip) in mV. Raises DecodeError with a reason free
    of patient data.

    `sender`: the sender's rule; its `mv_per_count` is the mV per unit for SampledData whose origin carries no unit
    (the FHIR R4 example sends raw ADC counts). None (no rule) rejects such messages: there is no global default.
    """
    return decode_observation_doc(load_observation(data), sender=sender)


def load_observation(data: bytes) -> dict[str, Any]:
    """The Observation as its JSON dict, from JSON or XML bytes; refuses other resource types and withdrawn ECGs."""
    doc = load_xml(data) if is_xml(data) else _load_json(data)
    if doc.get("resourceType") != "Observation":
        found = doc.get("resourceType")
        shown = repr(found[:40]) if isinstance(found, str) else "none"
        raise DecodeError(f"wrong resourceType {shown} (expected Observation)", "resource-type", ack_code="AR")
    if doc.get("status") in _NOT_ANALYSABLE_STATUSES:
        raise DecodeError(f"Observation status {doc['status']} is not analysable", "status")
    return doc


def validated_blocks(doc: dict[str, Any]) -> tuple[list[tuple[str, dict, dict]], str]:
    """(SampledData blocks, FHIR version) after validating the document with that version's model."""
    blocks = _waveform_blocks(doc)
    if not blocks:
        raise DecodeError("Observation carries no SampledData", "no-data")
    version = _detect_version([sd for _, _, sd in blocks])
    try:
        validate_resource(doc, version)
    except InvalidFhir as exc:
        raise DecodeError(str(exc), "fhir-invalid") from None
    return blocks, version


def decode_observation_doc(doc: dict[str, Any], *, sender: SenderRule | None) -> EcgRecord:
    """decode_observation on an already loaded document."""
    return decode_observation_detailed(doc, sender=sender)[0]


def decode_leads(
    doc: dict[str, Any], sender: SenderRule | None
) -> tuple[list[str], list[np.ndarray], list[np.ndarray | None], list[float], tuple[str, ...]]:
    """(leads as named, mV rows, E/U/L masks, rates, skipped non-ECG signals) of every SampledData block, shared by
    strips and PoCD chunks. Non-ECG signals (pressure, pleth, respiration) are skipped and named; an ECG code this
    decoder does not know is refused (its samples would be lost silently)."""
    blocks, version = validated_blocks(doc)
    unitless_mv = sender.mv_per_count if sender is not None else None
    leads: list[str] = []
    rows: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    rates: list[float] = []
    skipped: list[str] = []
    for where, concept, sd in blocks:
        lead = _ecg_lead(concept, where)
        if lead is None:
            skipped.append(_signal_name(concept, where))
            continue
        canonical = lead_and_mark(lead)[0]
        if canonical in (lead_and_mark(n)[0] for n in leads):
            raise DecodeError(f"lead {canonical} appears twice", "duplicate-lead")
        if sd.get("dimensions") != 1:
            raise DecodeError(f"lead {canonical}: SampledData dimensions must be 1 (one component per lead)",
                              "sampled-data")
        values, flagged = parse_data(sd.get("data"), canonical)
        origin = sd.get("origin") or {}
        scale = mv_per_unit(origin, unitless_mv)
        factor = json_number(sd.get("factor", 1.0), f"lead {canonical}: SampledData factor", "sampled-data")
        offset = json_number(origin.get("value", 0.0), f"lead {canonical}: SampledData origin value", "sampled-data")
        mv = (offset + factor * values) * scale
        if flagged is not None:
            mv[flagged] = 0.0  # flagged samples stay finite; the mask carries the information
        leads.append(lead)
        rows.append(mv)
        masks.append(flagged)
        rates.append(sampling_rate_hz(sd, version))
    return leads, rows, masks, rates, tuple(skipped)


def decode_observation_detailed(doc: dict[str, Any], *, sender: SenderRule | None) -> tuple[EcgRecord, tuple[str, ...]]:
    """The strip and the names of the non-ECG signals it skipped."""
    leads, rows, masks, rates, skipped = decode_leads(doc, sender)
    if not leads:
        raise DecodeError(f"no ECG lead in the Observation (only {', '.join(skipped)})", "no-standard-leads")
    lengths = {lead: row.size for lead, row in zip(leads, rows, strict=True)}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{lead}: {n}" for lead, n in lengths.items())
        raise DecodeError(f"leads have unequal lengths ({shown})", "length-mismatch")
    if not np.allclose(rates, rates[0], rtol=1e-9, atol=0.0):
        raise DecodeError("leads have different sampling intervals", "sampling-rate")
    flagged_all = None
    if any(m is not None for m in masks):
        flagged_all = np.vstack([m if m is not None else np.zeros(rows[0].size, bool) for m in masks])

    try:
        return make_record(
            np.vstack(rows), leads, rates[0], _source_id(doc), flagged=flagged_all,
            source_format="fhir", **_metadata(doc),
        ), skipped
    except DecodeError:
        raise
    except InvalidRecord as exc:  # the record contract (rate, duration, ...) seen from the codec: still a decode error
        raise DecodeError(exc.reason, exc.code) from None


def _load_json(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("payload is not UTF-8", "encoding", ack_code="AR") from None
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON (line {exc.lineno}, column {exc.colno})", "json", ack_code="AR") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply", "json", ack_code="AR") from None
    if not isinstance(doc, dict):
        raise DecodeError("JSON payload is not an object", "json", ack_code="AR")
    return doc


def _waveform_blocks(doc: dict[str, Any]) -> list[tuple[str, dict, dict]]:
    """(where, code concept naming the lead, SampledData) for every SampledData value: components, or a single-lead
    Observation whose own code names the lead."""
    blocks = []
    if isinstance(doc.get("valueSampledData"), dict):
        blocks.append(("Observation", doc.get("code") or {}, doc["valueSampledData"]))
    components = doc.get("component")
    for i, comp in enumerate(components if isinstance(components, list) else []):
        if isinstance(comp, dict) and isinstance(comp.get("valueSampledData"), dict):
            blocks.append((f"component {i}", comp.get("code") or {}, comp["valueSampledData"]))
    return blocks


def _detect_version(sampled: list[dict]) -> str:
    """R5 replaced SampledData.period with interval + intervalUnit; the shape tells the versions apart."""
    if any("interval" in sd or "intervalUnit" in sd for sd in sampled):
        return "R5"
    if any("period" in sd for sd in sampled):
        return "R4B"  # R4 and R4B share the Observation/SampledData shape
    raise DecodeError("SampledData without period/interval", "sampled-data")


def _lead_of(concept: Any) -> str | None:
    """Standard lead named by a CodeableConcept: an MDC code (either system), an MDC mnemonic, or a lead name."""
    if not isinstance(concept, dict):
        return None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        code = coding.get("code")
        if not isinstance(code, str):
            continue
        if coding.get("system") in codes.MDC_SYSTEMS and code in codes.LEAD_BY_MDC_CODE:
            return codes.LEAD_BY_MDC_CODE[code]
        if code.lower() in codes.LEAD_BY_MNEMONIC:
            return codes.LEAD_BY_MNEMONIC[code.lower()]
    for name in [concept.get("text")] + [c.get("display") for c in codings]:
        lead = _lead_from_name(name)
        if lead is not None:
            return lead
    return None


_MONITORING_NAMES = {"mli", "mlii", "mliii", "mcl1", "mcl2", "mcl3", "mcl4", "mcl5", "mcl6", "v", "ecg"}
_ECG_CODES = range(131072, 132096)  # MDC partition 2, terms 0..1023: the ECG block (potentials, lead names)


def _ecg_lead(concept: Any, where: str) -> str | None:
    """Lead name for an ECG signal (standard, or a monitoring name), None for a non-ECG signal; an ECG code we do
    not know is refused (its samples would be lost silently)."""
    lead = _lead_of(concept)
    if lead is not None:
        return lead
    codings = [c for c in (concept or {}).get("coding") or [] if isinstance(c, dict)]
    names = [concept.get("text") if isinstance(concept, dict) else None] + [c.get("display") for c in codings]
    for name in names + [c.get("code") for c in codings]:
        if isinstance(name, str):
            short = name.strip().lower().removeprefix("mdc_ecg_elec_potl_").removeprefix("mdc_ecg_lead_")
            if short in _MONITORING_NAMES:
                return short.upper()
    for c in codings:
        code = c.get("code")
        if c.get("system") in codes.MDC_SYSTEMS and isinstance(code, str) and code.isascii() and code.isdigit():
            if int(code) == int(codes.MDC_ECG_ELEC_POTL):
                return "ECG"  # MDC_ECG_ELEC_POTL: ECG, unspecified lead
            if int(code) in _ECG_CODES:
                raise DecodeError(f"{where}: unknown lead{_code_hint(concept)}", "unknown-lead")
        if isinstance(code, str) and code.lower().startswith(("mdc_ecg_elec_potl", "mdc_ecg_lead")):
            raise DecodeError(f"{where}: unknown lead{_code_hint(concept)}", "unknown-lead")
    return None


def _signal_name(concept: Any, where: str) -> str:
    for c in (concept or {}).get("coding") or []:
        if isinstance(c, dict):
            for key in ("display", "code"):
                if isinstance(c.get(key), str) and c[key].strip():
                    return c[key].strip()[:40]
    return where


def _lead_from_name(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    text = name.strip()
    if text.lower() in codes.LEAD_BY_MNEMONIC:
        return codes.LEAD_BY_MNEMONIC[text.lower()]
    if text.lower().startswith("lead "):
        text = text[5:]
    lead = canonical_lead(text)
    return lead if lead in STANDARD_LEADS else None


def _code_hint(concept: Any) -> str:
    """The first code (a terminology code, not patient data) to make a dead letter actionable."""
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return f" (code {coding['code'][:40]!r})"
    return ""


def _source_id(doc: dict[str, Any]) -> str:
    identifiers = [i for i in doc.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    first = identifiers[0] if identifiers else {}
    try:
        return fhir_source_id(first.get("system"), first.get("value"), doc.get("id"))
    except ValueError:
        raise DecodeError("Observation has neither identifier nor id", "identity") from None


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    subject = doc.get("subject") if isinstance(doc.get("subject"), dict) else {}
    patient = _contained_patient(doc, subject)
    patient_id, patient_system = _patient_id(subject, patient)
    acquired = None
    for key in ("effectiveDateTime", "effectiveInstant"):
        acquired = acquired or parse_fhir_datetime(doc.get(key))
    if acquired is None and isinstance(doc.get("effectivePeriod"), dict):
        acquired = parse_fhir_datetime(doc["effectivePeriod"].get("start"))
    device = doc.get("device") if isinstance(doc.get("device"), dict) else {}
    device_id = device.get("reference") or device.get("display") or (device.get("identifier") or {}).get("value")
    return {
        "patient_id": patient_id,
        "patient_system": patient_system,
        "acquired_at": acquired,
        "device_id": device_id,
        "sex": _SEX_BY_GENDER.get(patient.get("gender")) if patient else None,
        "birth_date": parse_fhir_date(patient.get("birthDate")) if patient else None,
    }


def _contained_patient(doc: dict[str, Any], subject: dict[str, Any]) -> dict[str, Any] | None:
    """The contained Patient the subject points at, else the only contained Patient (demographics such as sex)."""
    patients = [r for r in doc.get("contained") or [] if isinstance(r, dict) and r.get("resourceType") == "Patient"]
    ref = subject.get("reference")
    if isinstance(ref, str) and ref.startswith("#"):
        for p in patients:
            if p.get("id") == ref[1:]:
                return p
    return patients[0] if len(patients) == 1 else None


def _patient_id(subject: dict[str, Any], patient: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(patient id, its identifier system): system None for a literal reference's logical id, the identifier's
    system ("" when absent) for a business identifier (a logical reference or a contained Patient's identifier)."""
    ref = subject.get("reference")
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            ids = [i for i in (patient or {}).get("identifier") or [] if isinstance(i, dict) and i.get("value")]
            return (str(ids[0]["value"]), str(ids[0].get("system") or "")) if ids else (None, None)
        parts = ref.rstrip("/").split("/")
        if "Patient" in parts:  # "Patient/123", "https://ehr/fhir/Patient/123/_history/2"
            i = len(parts) - 1 - parts[::-1].index("Patient")
            return (parts[i + 1] if i + 1 < len(parts) else None), None
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            return ref, None
        return None, None  # Group, Device, Location subjects name no patient
    logical = subject.get("identifier")
    if isinstance(logical, dict) and logical.get("value"):
        return str(logical["value"]), str(logical.get("system") or "")
    return None, None


# ---------------------------------------------------------------------------------------------------------- encode


def build_observation(
    record: EcgRecord,
    *,
    fhir_version: str = "R4B",
    identifier_system: str = codes.DEFAULT_ECG_IDENTIFIER_SYSTEM,
    identifier_value: str | None = None,
) -> dict[str, Any]:
    """The ECG Observation as a dict: one component per measured standard lead, canonical order, integer µV.

    Derived leads are left out (a receiver would take them for measured ones) and so are non-standard leads (no MDC
    code in our table). Sex and birth date travel in a contained Patient that the subject points at.
    """
    version = check_version(fhir_version)
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": identifier_system, "value": identifier_value or record.source_id}],
        "status": "final",  # the input ECG as the acquiring device reports it
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "procedure", "display": "Procedure"}]}],
        "code": {
            "coding": [
                {"system": codes.LOINC, "code": codes.LOINC_EKG_STUDY, "display": "EKG study"},
                {"system": codes.MDC_SYSTEM, "code": codes.MDC_ECG_ELEC_POTL, "display": "MDC_ECG_ELEC_POTL"},
            ],
            "text": "12-lead ECG" if len(record.standard_leads) == 12 else "ECG",
        },
    }
    subject = _subject(record)
    if subject is not None:
        obs["subject"] = subject
        if subject.get("reference", "").startswith("#"):
            obs["contained"] = [_patient(record)]
    if record.acquired_at is not None:
        obs["effectiveDateTime"] = to_fhir_datetime(record.acquired_at)
    if record.device_id:
        obs["device"] = {"display": record.device_id}
    step_ms = 1000.0 / record.fs
    timing = {"period": _number(step_ms)} if version == "R4B" else {"interval": _number(step_ms), "intervalUnit": "ms"}
    components = []
    for lead in STANDARD_LEADS:
        if lead not in record.leads or lead in record.derived_leads:
            continue
        idx = record.leads.index(lead)
        flagged = record.flagged[idx] if record.flagged is not None else None
        components.append({
            "code": {
                "coding": [{"system": codes.MDC_SYSTEM, "code": codes.POTL_CODE_BY_LEAD[lead],
                            "display": codes.potl_mnemonic(lead)}],
                "text": lead,
            },
            "valueSampledData": {
                "origin": {"value": 0, "unit": "mV", "system": codes.UCUM, "code": "mV"},
                **timing,
                "factor": 0.001,  # data are integer µV
                "dimensions": 1,
                "data": format_microvolts(record.signal[idx], flagged),
            },
        })
    if not components:
        raise ValueError("record has no measured standard lead to encode")
    obs["component"] = components
    return obs


def encode_observation(
    record: EcgRecord,
    *,
    fhir_version: str = "R4B",
    identifier_system: str = codes.DEFAULT_ECG_IDENTIFIER_SYSTEM,
    identifier_value: str | None = None,
) -> bytes:
    """EcgRecord -> FHIR Observation JSON (UTF-8), validated by the version's fhir.resources model."""
    obs = build_observation(
        record, fhir_version=fhir_version, identifier_system=identifier_system, identifier_value=identifier_value
    )
    validate_resource(obs, fhir_version)
    return json.dumps(obs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _subject(record: EcgRecord) -> dict[str, Any] | None:
    if record.sex is not None or record.birth_date is not None:
        return {"reference": "#" + _CONTAINED_PATIENT_ID}
    if record.patient_id:
        return patient_reference(record.patient_id, record.patient_system)
    return None


def _patient(record: EcgRecord) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": _CONTAINED_PATIENT_ID}
    if record.patient_id:
        patient["identifier"] = [identifier(record.patient_id, record.patient_system)]
    if record.sex in _GENDER_BY_SEX:
        patient["gender"] = _GENDER_BY_SEX[record.sex]
    if record.birth_date is not None:
        patient["birthDate"] = record.birth_date.isoformat()
    return patient


def _number(x: float) -> int | float:
    """Integral decimals as ints (2 rather than 2.0); others to 9 decimals so 1000/fs reads back as fs."""
    return int(x) if float(x).is_integer() else round(float(x), 9)
