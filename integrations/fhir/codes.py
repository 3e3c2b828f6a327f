"""Code systems, codes and labels the FHIR codecs and builders share (docs/SPEC.md §2, §3).

One place for every URI and code so that decoders accept the same set the builders emit.
"""
from __future__ import annotations

from engine.record import STANDARD_LEADS

# --- MDC (IEEE 11073-10101). Both URIs travel in the wild; we emit the OID form only (docs/SPEC.md §2).
MDC_OID = "urn:oid:2.16.840.1.113883.6.24"
MDC_ISO_URN = "urn:iso:std:iso:11073:10101"
MDC_SYSTEMS: frozenset[str] = frozenset({MDC_OID, MDC_ISO_URN})
MDC_SYSTEM = MDC_OID  # the one we emit

MDC_ECG_ELEC_POTL = "131328"  # multi-lead ECG

# Waveform codes (MDC_ECG_ELEC_POTL_*) and lead-name codes (MDC_ECG_LEAD_*), both accepted on input.
_POTL_CODES = {
    "I": 131329, "II": 131330, "III": 131389, "aVR": 131390, "aVL": 131391, "aVF": 131392,
    "V1": 131331, "V2": 131332, "V3": 131333, "V4": 131334, "V5": 131335, "V6": 131336,
}
_LEAD_NAME_CODES = {
    "I": 131073, "II": 131074, "III": 131133, "aVR": 131134, "aVL": 131135, "aVF": 131136,
    "V1": 131075, "V2": 131076, "V3": 131077, "V4": 131078, "V5": 131079, "V6": 131080,
}
assert set(_POTL_CODES) == set(STANDARD_LEADS) == set(_LEAD_NAME_CODES)

POTL_CODE_BY_LEAD: dict[str, str] = {lead: str(code) for lead, code in _POTL_CODES.items()}
LEAD_BY_MDC_CODE: dict[str, str] = {
    **{str(code): lead for lead, code in _POTL_CODES.items()},
    **{str(code): lead for lead, code in _LEAD_NAME_CODES.items()},
}
# Mnemonics, matched case-insensitively: some senders put them in `code` or `display`.
LEAD_BY_MNEMONIC: dict[str, str] = {
    **{f"mdc_ecg_elec_potl_{lead.lower()}": lead for lead in STANDARD_LEADS},
    **{f"mdc_ecg_lead_{lead.lower()}": lead for lead in STANDARD_LEADS},
}


def potl_mnemonic(lead: str) -> str:
    return "MDC_ECG_ELEC_POTL_" + lead.upper()


# --- LOINC
LOINC = "http://loinc.org"
LOINC_EKG_STUDY = "11524-6"
LOINC_EKG_IMPRESSION = "8601-7"

# --- SNOMED CT findings (docs/SPEC.md §3, PhysioNet/CinC 2021 mapping). Findings only: no code here names a diagnosis
# the engine cannot make (myocardial ischemia 164861001 is deliberately absent, see diagnostic_report.py).
SNOMED = "http://snomed.info/sct"
SNOMED_TWI = ("59931005", "T wave inversion")
SNOMED_BY_SECONDARY_CAUSE: dict[str, list[tuple[str, str]]] = {
    "lbbb": [("164909002", "Left bundle branch block")],
    "rbbb": [("59118001", "Right bundle branch block")],
    "rbbb-incomplete": [("713426002", "Incomplete right bundle branch block")],
    "lbbb-incomplete": [("251120003", "Incomplete left bundle branch block")],
    "lvh-strain": [("164873001", "Left ventricular hypertrophy"), ("370365005", "Left ventricular strain")],
    "lvh": [("164873001", "Left ventricular hypertrophy")],
    "ventricular-pacing": [("251266004", "Ventricular pacing pattern")],
    "wpw": [("74390002", "Wolff-Parkinson-White pattern")],
}
SNOMED_PACED_RHYTHM = ("10370003", "Pacing rhythm")

# --- HL7 terminology
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section
V2_0074_EC = ("EC", "Electrocardiac (e.g., EKG, EEC, Holter)")
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
UCUM = "http://unitsofmeasure.org"

# --- Research-only labelling (docs/SPEC.md §3): no standard "not for clinical use" code exists, so all of these
# together.
SECURITY_AIAST = {"system": V3_OBSERVATION_VALUE, "code": "AIAST", "display": "Artificial Intelligence asserted"}
SECURITY_HRESCH = {"system": V3_ACT_REASON, "code": "HRESCH", "display": "healthcare research"}
PROJECT_TAG_SYSTEM = "urn:twiwatch:tag"
TAG_RESEARCH_ONLY = {
    "system": PROJECT_TAG_SYSTEM, "code": "research-only", "display": "Research use only - not for clinical use",
}

DISCLAIMER = (
    "RESEARCH USE ONLY — NOT FOR CLINICAL USE. Automated, unverified ECG measurements from a research system: "
    "not a diagnosis, not reviewed by a clinician, not to be used for patient care."
)

# --- Project systems (URNs: no resolvable URL is claimed)
MEASURE_SYSTEM = "urn:twiwatch:measure"  # per-lead measure component codes
TRIAGE_SYSTEM = "urn:twiwatch:triage"  # triage classes ("ischemic-pattern", "secondary:lbbb", ...)
DEVICE_ID_SYSTEM = "urn:twiwatch:device"
SOURCE_ID_SYSTEM = "urn:twiwatch:source"  # docs/SPEC.md §10 source id (sender + control id, or Observation identifier)
DEFAULT_ECG_IDENTIFIER_SYSTEM = "urn:twiwatch:ecg"
DEFAULT_REPORT_IDENTIFIER_SYSTEM = "urn:twiwatch:report"  # matches stream.config fhir_identifier_system
