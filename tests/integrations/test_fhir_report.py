"""Report bundle builder: validity under R4B and R5, research-only labels, lifecycle, codes, determinism."""
from __future__ import annotations

import copy
import importlib
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from engine.record import make_record
from engine.result import Analysis, LeadResult, PriorSummary, SecondaryFinding, Triage, TwiGroup
from integrations.fhir import codes
from integrations.fhir.report import build_report_bundle, bundle_bytes, is_research_flagged, report_resource
from integrations.fhir.validation import InvalidFhir, validate_bundle

VERSIONS = ["R4B", "R5"]
ISSUED = datetime(2024, 5, 1, 10, 1, 2, tzinfo=UTC)
ACQUIRED = datetime(2024, 5, 1, 11, 0, 0, tzinfo=timezone(timedelta(hours=1)))
INFERIOR = ("II", "III", "aVF")


def _lead(name: str, inverted: bool) -> LeadResult:
    return LeadResult(
        lead=name, quality="ok", t_polarity="negative" if inverted else "positive",
        t_amplitude_mv=-0.254 if inverted else 0.31, t_symmetry=1.08 if inverted else 0.7, t_peak_ms=300.0,
        st_j60_mv=-0.021, r_amplitude_mv=0.9, s_amplitude_mv=-0.2, qrs_duration_ms=92.4, qrs_mostly_positive=True,
    )


def make_analysis(twi: bool) -> Analysis:
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V2", "V3", "V4", "V5", "V6"]  # V1 absent
    leads = {n: _lead(n, twi and n in INFERIOR) for n in names}
    leads["V6"] = LeadResult(lead="V6", quality="not-analysable", quality_reasons=["baseline wander > 1 mV"])
    groups = [TwiGroup(name="inferior", leads=list(INFERIOR), depths_mv={"II": 0.254, "III": 0.2, "aVF": 0.22},
                       rule="T depth > 0.1 mV in >= 2 contiguous leads with R >= 0.3 mV", novelty="new")] if twi else []
    secondary = [SecondaryFinding("lvh-strain", True, ["Sokolow-Lyon SV1+RV5 3.8 mV > 3.5 mV"]),
                 SecondaryFinding("lbbb", False, ["QRS 92 ms < 120 ms"])] if twi else []
    triage = (Triage("ischemic-pattern", ["symmetric TWI (II 1.08) in II, III, aVF", "R/S > 1 in II & aVF"]) if twi
              else Triage("no-twi", ["no lead with T depth > 0.1 mV"]))
    return Analysis(
        engine_version="0.1.0", fs=500.0, duration_s=10.0, truncated=False, heart_rate_bpm=71.6, rr_irregularity=0.04,
        rhythm="sinus", leads=leads, absent_leads=["V1"], derived_leads=[], twi=groups,
        novelty="new" if twi else "none", secondary=secondary, triage=triage,
        summary=PriorSummary(1, "hl7:ADT|WARD|MSG1", ACQUIRED.isoformat(), {}, [list(INFERIOR)] if twi else []),
    )


def make_ecg(patient_id: str = "123"):
    return make_record(np.zeros((11, 5000)), ["I", "II", "III", "aVR", "aVL", "aVF", "V2", "V3", "V4", "V5", "V6"],
                       500.0, "hl7:MONITOR|ICU|MSG-0001", patient_id=patient_id, acquired_at=ACQUIRED,
                       source_format="hl7")


def build(twi: bool = True, **kw) -> dict:
    args = dict(report_id="0123456789abcdef0123456789abcdef", version=1, status="partial", issued=ISSUED,
                model_versions={"encoder": "ecg-coca-e20", "reasoning": "ECG-R1-8B-RL@abc"})
    args.update(kw)
    return build_report_bundle(make_analysis(twi), make_ecg(), **args)


def resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def by_url(bundle: dict) -> dict[str, dict]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


# -------------------------------------------------------------------------------------------------- validity

@pytest.mark.parametrize("bundle_type", ["collection", "transaction"])
@pytest.mark.parametrize("fhir_version", VERSIONS)
@pytest.mark.parametrize("twi", [True, False])
def test_valid_under_each_version(fhir_version, bundle_type, twi):
    reasoning = {"model": "ECG-R1-8B-RL", "answer": ["sinus rhythm", "T wave inversion"]} if twi else None
    bundle = build(twi, fhir_version=fhir_version, bundle_type=bundle_type, reasoning=reasoning,
                   status="preliminary", version=2)
    validate_bundle(bundle, fhir_version)
    package = "fhir.resources.R4B" if fhir_version == "R4B" else "fhir.resources"
    for entry in bundle["entry"]:  # independently of our helper: each resource through its fhir.resources model
        rtype = entry["resource"]["resourceType"]
        getattr(importlib.import_module(f"{package}.{rtype.lower()}"), rtype).model_validate(entry["resource"])
    assert bundle["type"] == bundle_type
    assert is_research_flagged(bundle)


def test_resource_set():
    bundle = build()
    assert [r["resourceType"] for r in (e["resource"] for e in bundle["entry"])] == (
        ["DiagnosticReport"] + ["Observation"] * 11 + ["Device", "Provenance"])
    report = report_resource(bundle)
    assert report["code"]["coding"][0]["code"] == codes.LOINC_EKG_STUDY
    assert report["category"][0]["coding"][0] == {"system": codes.V2_0074, "code": "EC",
                                                  "display": codes.V2_0074_EC[1]}
    assert report["subject"] == {"reference": "Patient/123"}
    assert report["effectiveDateTime"] == "2024-05-01T11:00:00+01:00"
    assert report["issued"] == "2024-05-01T10:01:02Z"
    urls = by_url(bundle)
    assert all(ref["reference"] in urls for ref in report["result"])


# ---------------------------------------------------------------------------------------- research labels

def test_research_labels_on_report_and_observations():
    bundle = build()
    for res in resources(bundle, "DiagnosticReport") + resources(bundle, "Observation"):
        security = {(c["system"], c["code"]) for c in res["meta"]["security"]}
        assert security == {(codes.V3_OBSERVATION_VALUE, "AIAST"), (codes.V3_ACT_REASON, "HRESCH")}
        assert codes.TAG_RESEARCH_ONLY in res["meta"]["tag"]
        assert "HTEST" not in str(res["meta"])
    report = report_resource(bundle)
    assert report["conclusion"].startswith("RESEARCH USE ONLY — NOT FOR CLINICAL USE.")
    assert report["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml"><p><b>RESEARCH USE ONLY')
    assert is_research_flagged(report)


@pytest.mark.parametrize("breaker", [
    lambda r: r["meta"]["security"].pop(0),                      # AIAST gone
    lambda r: r["meta"]["security"].pop(1),                      # HRESCH gone
    lambda r: r["meta"].pop("tag"),
    lambda r: r.update(conclusion="Measured T-wave inversion. " + r["conclusion"]),
    lambda r: r["text"].update(div='<div xmlns="http://www.w3.org/1999/xhtml"><p>Findings</p></div>'),
])
def test_is_research_flagged_detects_missing_markers(breaker):
    report = copy.deepcopy(report_resource(build()))
    breaker(report)
    assert not is_research_flagged(report)


# --------------------------------------------------------------------------------------- lifecycle, version

@pytest.mark.parametrize("status,version", [("partial", 1), ("preliminary", 2), ("preliminary", 1)])
def test_status_and_version_id(status, version):
    bundle = build(status=status, version=version)
    report = report_resource(bundle)
    assert report["status"] == status
    assert report["meta"]["versionId"] == str(version)
    assert all(o["meta"]["versionId"] == str(version) and o["status"] == "preliminary"
               for o in resources(bundle, "Observation"))
    assert ("Reasoning review pending." in report["conclusion"]) == (status == "partial")
    provenance = resources(bundle, "Provenance")[0]
    assert provenance["activity"]["coding"][0]["code"] == ("CREATE" if version == 1 else "UPDATE")


@pytest.mark.parametrize("bad", [{"status": "final"}, {"status": "amended"}, {"version": 0},
                                 {"fhir_version": "R4"}, {"bundle_type": "batch"}])
def test_rejects_verified_statuses_and_bad_arguments(bad):
    with pytest.raises(ValueError):
        build(**bad)


# -------------------------------------------------------------------------------- conclusion and codes

def test_twi_conclusion_is_a_measured_finding():
    report = report_resource(build(prior_acquired_at="2024-04-02T08:00:00Z"))
    text = report["conclusion"]
    assert ("Measured T-wave inversion in II, III, aVF (inferior group, new vs prior ECG of 2024-04-02; "
            "depth below isoelectric II 0.25 mV, III 0.20 mV, aVF 0.22 mV;") in text
    assert "Pattern: ischemic-pattern (criteria-based triage, unverified)." in text
    assert "LVH voltage with strain pattern" in text
    assert "Absent leads, criteria not applied there: V1." in text
    assert "diagnos" not in text.replace("not a diagnosis", "")
    coded = [c["coding"][0] for c in report["conclusionCode"]]
    assert all(c["system"] == codes.SNOMED for c in coded)
    assert [c["code"] for c in coded] == ["59931005", "164873001", "370365005"]
    assert "164861001" not in str(report)  # myocardial ischemia is a diagnosis: never coded


def test_no_twi_report():
    bundle = build(twi=False, status="preliminary")
    report = report_resource(bundle)
    assert "No T-wave inversion meeting the contiguous-lead criteria" in report["conclusion"]
    assert "Pattern: no-twi" in report["conclusion"]
    assert "conclusionCode" not in report
    assert "59931005" not in str(bundle)
    assert is_research_flagged(report)


def test_narrative_lists_measures_and_evidence_verbatim():
    div = report_resource(build())["text"]["div"]
    assert "<td>II</td><td>ok</td><td>negative</td><td>-0.254</td>" in div
    assert "baseline wander &gt; 1 mV" in div  # not-analysable lead with its reason, escaped
    assert "<li>symmetric TWI (II 1.08) in II, III, aVF</li>" in div
    assert "<li>R/S &gt; 1 in II &amp; aVF</li>" in div
    assert "Sokolow-Lyon SV1+RV5 3.8 mV &gt; 3.5 mV" in div


# ----------------------------------------------------------------------------------------- observations

def test_per_lead_observations():
    bundle = build()
    leads = [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["system"] == codes.MDC_OID]
    assert [o["code"]["text"] for o in leads] == [f"T-wave measures, lead {n}" for n in
                                                   ["I", "II", "III", "aVR", "aVL", "aVF", "V2", "V3", "V4", "V5"]]
    ii = next(o for o in leads if o["code"]["coding"][0]["code"] == codes.POTL_CODE_BY_LEAD["II"])
    comps = {c["code"]["coding"][0]["code"]: c for c in ii["component"]}
    assert comps["t-amplitude"]["valueQuantity"] == {"value": -0.254, "unit": "mV", "system": codes.UCUM, "code": "mV"}
    assert comps["t-polarity"]["valueCodeableConcept"] == {"text": "negative"}
    assert comps["qrs-duration"]["valueQuantity"]["code"] == "ms"
    assert comps["st-j60"]["valueQuantity"]["value"] == -0.021
    assert "t-symmetry" in comps
    assert ii["identifier"][0]["value"] == "0123456789abcdef0123456789abcdef/t/II"


def test_impression_observation():
    bundle = build(reasoning={"model": "ECG-R1-8B-RL", "answer": "sinus rhythm; T wave inversion",
                              "cross_check": ["model says TWI in II: measured -0.254 mV, agrees"]})
    impression = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "8601-7")
    assert impression["code"]["coding"][0]["system"] == codes.LOINC
    assert impression["valueCodeableConcept"]["coding"][0] == {"system": codes.TRIAGE_SYSTEM,
                                                               "code": "ischemic-pattern"}
    notes = [n["text"] for n in impression["note"]]
    assert notes[0] == codes.DISCLAIMER
    assert "symmetric TWI (II 1.08) in II, III, aVF" in notes
    assert "Reasoning model output (ECG-R1-8B-RL, unverified): sinus rhythm; T wave inversion" in notes


# ------------------------------------------------------------------------------------- device, provenance

def test_device_and_provenance():
    bundle = build(reasoning={"model": "ECG-R1-8B-RL", "answer": "x"})
    urls = by_url(bundle)
    devices = resources(bundle, "Device")
    assert len(devices) == 2
    software = devices[0]
    assert software["deviceName"][0]["name"] == "twiwatch"  # R4B shape
    assert {(v["type"]["text"], v["value"]) for v in software["version"]} == {
        ("software", "0.1.0"), ("model encoder", "ecg-coca-e20"), ("model reasoning", "ECG-R1-8B-RL@abc")}
    assert any(n["text"].startswith("Model card:") for n in software["note"])
    prov = resources(bundle, "Provenance")[0]
    report_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert prov["target"][0]["reference"] == report_url
    assert prov["recorded"] == "2024-05-01T10:01:02Z"
    agents = [urls[a["who"]["reference"]] for a in prov["agent"]]
    assert [d["resourceType"] for d in agents] == ["Device", "Device"]
    assert agents[0] is software
    assert prov["entity"] == [{"role": "source", "what": {
        "identifier": {"system": codes.SOURCE_ID_SYSTEM, "value": "hl7:MONITOR|ICU|MSG-0001"},
        "display": "source HL7 v2 ORU^R01 message"}}]


def test_r5_device_shape():
    software = resources(build(fhir_version="R5"), "Device")[0]
    assert software["name"][0]["value"] == "twiwatch" and isinstance(software["type"], list)


def test_fhir_source_entity_uses_sender_identifier():
    rec = make_ecg().replace(source_id="fhir:urn:example:ecg|ecg-42", source_format="fhir")
    bundle = build_report_bundle(make_analysis(True), rec, report_id="r1", version=1, status="preliminary",
                                 issued=ISSUED)
    entity = resources(bundle, "Provenance")[0]["entity"][0]
    assert entity["what"]["identifier"] == {"system": "urn:example:ecg", "value": "ecg-42"}
    assert entity["what"]["type"] == "Observation"


# -------------------------------------------------------------------------------------- determinism, ids

def test_same_inputs_give_same_bytes():
    assert bundle_bytes(build()) == bundle_bytes(build())
    r = {"model": "ECG-R1-8B-RL", "answer": ["a", "b"]}
    assert bundle_bytes(build(reasoning=r, fhir_version="R5")) == bundle_bytes(build(reasoning=r, fhir_version="R5"))


def test_ids_are_deterministic_from_report_id():
    v1, v2 = build(version=1), build(version=2, status="preliminary")
    other = build(report_id="fedcba9876543210fedcba9876543210")
    assert report_resource(v1)["id"] == "twi-0123456789abcdef0123456789abcdef"
    assert report_resource(v1)["identifier"] == [{"system": codes.DEFAULT_REPORT_IDENTIFIER_SYSTEM,
                                                 "value": "0123456789abcdef0123456789abcdef"}]
    assert _urls_and_ids(v1) == _urls_and_ids(v2)  # a new version lands on the same resources
    assert resources(v1, "Provenance")[0]["id"] != resources(v2, "Provenance")[0]["id"]  # one per version
    # another report shares only the Device (same software configuration)
    shared = set(_urls_and_ids(v1)) & set(_urls_and_ids(other))
    assert {rid for _, rid in shared} == {resources(v1, "Device")[0]["id"]}


def _urls_and_ids(bundle: dict) -> list[tuple[str, str]]:
    return [(e["fullUrl"], e["resource"]["id"]) for e in bundle["entry"]
            if e["resource"]["resourceType"] != "Provenance"]


def test_odd_report_id_and_patient_id_stay_valid():
    rec = make_ecg(patient_id="12345 ^^^HOSP^MR")
    bundle = build_report_bundle(make_analysis(True), rec, report_id="hl7:a|b|c/with spaces", version=1,
                                 status="partial", issued=ISSUED)
    report = report_resource(bundle)
    assert report["subject"] == {"type": "Patient", "identifier": {"value": "12345 ^^^HOSP^MR"}}
    assert report["identifier"][0]["value"] == "hl7:a|b|c/with spaces"
    validate_bundle(bundle, "R4B")


# ------------------------------------------------------------------------------------------ transaction

def test_transaction_requests():
    bundle = build(bundle_type="transaction")
    requests = {e["resource"]["resourceType"] + ("/impression" if "impression" in e["resource"]["id"] else ""):
                e["request"] for e in bundle["entry"]}
    assert requests["DiagnosticReport"] == {
        "method": "PUT", "url": "DiagnosticReport?identifier=urn:twiwatch:report|0123456789abcdef0123456789abcdef"}
    assert requests["Device"]["method"] == "POST" and requests["Device"]["ifNoneExist"].startswith(
        "identifier=urn:twiwatch:device|twi-device-")
    assert requests["Provenance"]["url"].startswith("Provenance/twi-")


# ------------------------------------------------------------------------------------------ validate_bundle

def test_validate_bundle_raises_on_invalid():
    bundle = build()
    broken = copy.deepcopy(bundle)
    report_resource(broken)["status"] = "bogus"
    with pytest.raises(InvalidFhir):
        validate_bundle(broken, "R4B")
    dangling = copy.deepcopy(bundle)
    report_resource(dangling)["result"].append({"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"})
    with pytest.raises(InvalidFhir, match="does not resolve"):
        validate_bundle(dangling, "R4B")
    with pytest.raises(InvalidFhir):  # an R4B bundle is not R5 (Device shape differs)
        validate_bundle(bundle, "R5")


def test_subject_is_literal_only_for_a_fhir_logical_id():
    report = report_resource(build())
    assert report["subject"] == {"reference": "Patient/123"}  # from a FHIR literal reference
    mrn = make_ecg().replace(patient_system="urn:oid:1.2.840.99")  # from HL7 PID-3 or a FHIR identifier
    bundle = build_report_bundle(make_analysis(True), mrn, report_id="0123456789abcdef0123456789abcdef", version=1,
                                 status="preliminary", issued=ISSUED)
    assert report_resource(bundle)["subject"] == {
        "type": "Patient", "identifier": {"system": "urn:oid:1.2.840.99", "value": "123"}}
