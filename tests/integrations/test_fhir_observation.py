"""FHIR Observation (SampledData) codec: R4B/R5 round trips on real recordings, hand-written messages, every error."""
from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from engine.record import STANDARD_LEADS, EcgRecord, make_record
from integrations.datasets.wfdb_io import read_wfdb
from integrations.errors import DecodeError
from integrations.fhir import codes
from integrations.fhir.observation import build_observation, decode_observation, encode_observation
from integrations.fhir.validation import InvalidFhir, validate_resource
from integrations.senders import SenderMatch, SenderRule

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
LUDB_DIR = "lobachevsky-university-electrocardiography-database-1.0.1"


@cache
def recording_path(dataset: str, record: str) -> Path | None:
    """WFDB record path (without extension): the project's samples/ first, then ../shared/data; None if neither has it.

    The project must not depend on ../shared at run time, so tests that need a recording skip when it is absent.
    """
    roots = [ROOT / "samples" / dataset, ROOT / "samples", SHARED_DATA / dataset]
    if dataset == "ludb":
        roots.append(SHARED_DATA / "ludb" / LUDB_DIR / "data")
    for root in roots:
        if not root.is_dir():
            continue
        direct = root / f"{record}.hea"
        if direct.is_file():
            return direct.with_suffix("")
        for header in root.rglob(f"{record}.hea"):
            return header.with_suffix("")
    return None


def read_recording(dataset: str, record: str) -> EcgRecord:
    path = recording_path(dataset, record)
    if path is None:
        pytest.skip(f"{dataset} record {record} not available")
    return read_wfdb(
        path, source_id=f"wfdb:{dataset}/{record}", patient_id=f"{dataset}-{record}",
        acquired_at=datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC),
    )


# Present in samples/ (the shipped set) and in ../shared/data: LUDB 11 has inverted T waves (NeuroKit2 #1138).
REAL = [("ludb", "1"), ("ludb", "11"), ("ptbxl", "00143_hr"), ("ptbxl", "00002_lr")]


# ------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fhir_version", ["R4B", "R5"])
@pytest.mark.parametrize("dataset,record", REAL)
def test_round_trip_real_recording_lossless_within_1uv(dataset, record, fhir_version):
    rec = read_recording(dataset, record)
    payload = encode_observation(rec, fhir_version=fhir_version)
    back = decode_observation(payload)

    assert back.leads == STANDARD_LEADS
    assert back.fs == pytest.approx(rec.fs, rel=1e-9)
    assert back.signal.dtype == np.float32 and back.signal.shape == rec.signal.shape
    order = [rec.leads.index(lead) for lead in back.leads]
    assert np.max(np.abs(back.signal.astype(np.float64) - rec.signal[order].astype(np.float64))) <= 0.001
    assert back.patient_id == rec.patient_id
    assert back.acquired_at == rec.acquired_at
    assert back.source_format == "fhir"
    assert back.source_id == f"fhir:{codes.DEFAULT_ECG_IDENTIFIER_SYSTEM}|wfdb:{dataset}/{record}"
    assert back.flagged is None


@pytest.mark.parametrize("fhir_version", ["R4B", "R5"])
def test_encoded_shape_per_version(fhir_version):
    rec = read_recording("ludb", "1")
    doc = json.loads(encode_observation(rec, fhir_version=fhir_version))
    sd = doc["component"][0]["valueSampledData"]
    if fhir_version == "R4B":
        assert sd["period"] == 2 and "interval" not in sd
    else:
        assert sd["interval"] == 2 and sd["intervalUnit"] == "ms" and "period" not in sd
    assert sd["origin"] == {"value": 0, "unit": "mV", "system": codes.UCUM, "code": "mV"}
    assert sd["factor"] == 0.001 and sd["dimensions"] == 1
    assert [c["code"]["coding"][0]["system"] for c in doc["component"]] == [codes.MDC_OID] * 12
    assert [c["code"]["text"] for c in doc["component"]] == list(STANDARD_LEADS)
    assert {c["code"] for c in doc["code"]["coding"]} == {"11524-6", "131328"}
    assert doc["category"][0]["coding"][0]["code"] == "procedure"
    other = "R5" if fhir_version == "R4B" else "R4B"
    with pytest.raises(InvalidFhir):  # the version's own shape, not a mixture valid for both
        validate_resource(doc, other)


def test_encode_is_fast_for_12_by_5000():
    rng = np.random.default_rng(0)
    rec = make_record(rng.normal(0, 1, (12, 5000)), STANDARD_LEADS, 500, "bench")
    encode_observation(rec)  # warm the model classes
    best = min(_timed(lambda: encode_observation(rec)) for _ in range(5))
    assert best < 0.050, f"encode took {best * 1e3:.1f} ms"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_demographics_travel_in_a_contained_patient():
    rec = make_record(np.zeros((2, 1500)), ["I", "II"], 500, "x", patient_id="p-9", sex="F",
                      birth_date=datetime(1950, 1, 2).date(), device_id="cart-7")
    doc = build_observation(rec)
    assert doc["subject"] == {"reference": "#patient"}
    back = decode_observation(encode_observation(rec))
    assert (back.patient_id, back.sex, back.birth_date, back.device_id) == ("p-9", "F", rec.birth_date, "cart-7")


def test_derived_and_extra_leads_are_not_encoded():
    rec = make_record(np.zeros((3, 1500)), ["I", "II", "vx"], 500, "x", derived_leads=frozenset())
    rec = rec.replace(derived_leads=frozenset({"II"}))
    doc = build_observation(rec)
    assert [c["code"]["text"] for c in doc["component"]] == ["I"]


# ------------------------------------------------------------------------------------- hand-written messages

def _ints(n: int, seed: int = 1) -> list[int]:
    return np.random.default_rng(seed).integers(-300, 300, n).tolist()


def _component(code: str | None, data: list | str, *, system: str = codes.MDC_OID, text: str | None = None,
               timing: dict | None = None, origin: dict | None = None, factor: float = 1.612) -> dict:
    concept: dict = {}
    if code is not None:
        concept["coding"] = [{"system": system, "code": code}]
    if text is not None:
        concept["text"] = text
    return {
        "code": concept,
        "valueSampledData": {
            "origin": origin if origin is not None else {"value": 2048, "unit": "uV", "system": codes.UCUM,
                                                         "code": "uV"},
            **(timing if timing is not None else {"period": 10}),
            "factor": factor,
            "lowerLimit": -3300,
            "upperLimit": 3300,
            "dimensions": 1,
            "data": data if isinstance(data, str) else " ".join(str(v) for v in data),
        },
    }


def example_observation(components: list[dict] | None = None, **overrides) -> dict:
    """Shaped like the FHIR R4 example `observation-example-sample-data` (MDC 131328, one component per lead),
    with units on origin and 300 samples at 100 Hz so that the strip is 3 s long."""
    doc = {
        "resourceType": "Observation",
        "id": "ekg",
        "identifier": [{"system": "urn:example:ecg", "value": "ecg-42"}],
        "status": "final",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "procedure"}]}],
        "code": {"coding": [{"system": codes.MDC_OID, "code": "131328", "display": "MDC_ECG_ELEC_POTL"}]},
        "subject": {"reference": "Patient/example-123"},
        "effectiveDateTime": "2015-02-19T09:30:35+01:00",
        "device": {"display": "12 lead EKG Device Metric"},
        "component": components if components is not None else [
            _component("131329", _ints(300, 1)),
            _component("131330", _ints(300, 2)),
            _component("131389", _ints(300, 3)),
        ],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}  # an override of None drops the element


def _bytes(doc: dict) -> bytes:
    return json.dumps(doc).encode("utf-8")


def test_r4_period_message():
    rec = decode_observation(_bytes(example_observation()))
    assert rec.leads == ("I", "II", "III")
    assert rec.fs == 100.0
    expected = (2048 + 1.612 * np.array(_ints(300, 2))) / 1000.0
    assert np.allclose(rec.lead("II"), expected, atol=1e-6)
    assert rec.patient_id == "example-123"
    assert rec.acquired_at == datetime(2015, 2, 19, 8, 30, 35, tzinfo=UTC)
    assert rec.device_id == "12 lead EKG Device Metric"
    assert rec.source_id == "fhir:urn:example:ecg|ecg-42"


@pytest.mark.parametrize("timing,fs", [({"interval": 10, "intervalUnit": "ms"}, 100.0),
                                       ({"interval": 0.002, "intervalUnit": "s"}, 500.0)])
def test_r5_interval_message(timing, fs):
    n = int(3 * fs)
    comps = [_component("131330", _ints(n), timing=timing), _component("131331", _ints(n, 5), timing=timing)]
    rec = decode_observation(_bytes(example_observation(comps)))
    assert rec.leads == ("II", "V1")
    assert rec.fs == pytest.approx(fs)


def test_oid_and_iso_urn_systems_both_accepted():
    oid = decode_observation(_bytes(example_observation()))
    doc = example_observation()
    for comp in doc["component"]:
        comp["code"]["coding"][0]["system"] = codes.MDC_ISO_URN
    urn = decode_observation(_bytes(doc))
    assert urn.leads == oid.leads and np.array_equal(urn.signal, oid.signal)


def test_lead_name_codes_mnemonics_and_text_accepted():
    comps = [
        _component("131074", _ints(300)),  # MDC_ECG_LEAD_II (lead-name code)
        _component("MDC_ECG_ELEC_POTL_V2", _ints(300), system="urn:example:local"),
        _component(None, _ints(300), text="Lead aVF"),
        _component(None, _ints(300), text="AVL"),
    ]
    rec = decode_observation(_bytes(example_observation(comps)))
    assert rec.leads == ("II", "V2", "aVF", "aVL")


@pytest.mark.parametrize("origin,scale", [
    ({"value": 0, "unit": "mV"}, 1.0),
    ({"value": 0, "code": "uV", "system": codes.UCUM}, 1e-3),
    ({"value": 0, "unit": "µV"}, 1e-3),
])
def test_units(origin, scale):
    comps = [_component("131330", [1000] * 300, origin=origin, factor=1.0)]
    rec = decode_observation(_bytes(example_observation(comps)))
    assert np.allclose(rec.signal, 1000 * scale)


def test_unitless_scale_is_configurable():
    doc = _bytes(example_observation([_component("131330", [10] * 300, origin={"value": 2048}, factor=1.612)]))
    rec = decode_observation(doc, sender=SenderRule(name="t", match=SenderMatch(fhir_source="x"), mv_per_count=0.001))
    assert np.allclose(rec.signal, (2048 + 16.12) / 1000)


def test_e_u_l_are_flags_not_errors():
    data = _ints(300)
    data[10], data[11], data[200] = "E", "U", "L"
    comps = [_component("131329", _ints(300, 7)), _component("131330", data)]
    rec = decode_observation(_bytes(example_observation(comps)))
    assert rec.flagged is not None and rec.flagged.shape == rec.signal.shape
    assert np.flatnonzero(rec.flagged[1]).tolist() == [10, 11, 200]
    assert not rec.flagged[0].any()
    assert np.isfinite(rec.signal).all()
    assert rec.signal[1, [10, 11, 200]].tolist() == [0.0, 0.0, 0.0]


def test_flags_survive_a_round_trip():
    rec = decode_observation(_bytes(example_observation([_component("131330", ["E"] + _ints(298) + ["L"])])))
    again = decode_observation(encode_observation(rec))
    assert np.array_equal(again.flagged, rec.flagged)
    nan_flagged = rec.replace(signal=np.where(rec.flagged, np.nan, rec.signal).astype(np.float32))
    assert np.array_equal(decode_observation(encode_observation(nan_flagged)).flagged, rec.flagged)


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"{", b'{"resourceType": "Bundle"}'])
def test_unreadable_payloads_are_refused(payload):
    with pytest.raises(DecodeError) as info:
        decode_observation(payload)
    assert info.value.ack_code == "AR"


def test_contained_patient_gives_sex_and_subject_url_forms():
    doc = example_observation(
        contained=[{"resourceType": "Patient", "id": "p1", "gender": "male", "identifier": [{"value": "MRN-1"}]}],
        subject={"reference": "#p1"},
    )
    rec = decode_observation(_bytes(doc))
    assert (rec.patient_id, rec.patient_system, rec.sex) == ("MRN-1", "", "M")  # an identifier, not a logical id
    doc = example_observation(subject={"reference": "https://ehr.example/fhir/Patient/77/_history/3"})
    assert (decode_observation(_bytes(doc)).patient_id, decode_observation(_bytes(doc)).patient_system) == ("77", None)
    doc = example_observation(subject={"identifier": {"system": "urn:oid:1.2.840.99", "value": "77"}})
    rec = decode_observation(_bytes(doc))
    assert (rec.patient_id, rec.patient_system) == ("77", "urn:oid:1.2.840.99")
    doc = example_observation(identifier=None)
    assert decode_observation(_bytes(doc)).source_id == "fhir:id|ekg"


# ------------------------------------------------------------------------------------------------------ errors

def _without(doc: dict, *path) -> dict:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


def _error_cases() -> list[tuple[str, bytes, str]]:
    base = example_observation()
    no_timing = _without(base, "component", 0, "valueSampledData", "period")
    for comp in no_timing["component"]:
        comp["valueSampledData"].pop("period", None)
    non_numeric = example_observation([_component("131330", "1 2 x 3 " + " ".join(["4"] * 296))])
    nan = example_observation([_component("131330", "1 nan " + " ".join(["4"] * 298))])
    trailing_e = example_observation([_component("131330", "1 3E " + " ".join(["4"] * 298))])
    unknown = example_observation([_component("131999", _ints(300))])
    duplicate = example_observation([_component("131330", _ints(300)), _component("131074", _ints(300))])
    unequal = example_observation([_component("131329", _ints(300)), _component("131330", _ints(299))])
    rates = example_observation([_component("131329", _ints(300)),
                                 _component("131330", _ints(300), timing={"period": 5})])
    no_unit = example_observation([_component("131330", _ints(300), origin={"value": 0})])
    two_units = example_observation([_component("131330", _ints(300), origin={"value": 0, "unit": "mV",
                                                                              "code": "uV"})])
    text_factor = example_observation([_component("131330", _ints(300))])
    text_factor["component"][0]["valueSampledData"]["factor"] = "0.001"
    huge_period = example_observation([_component("131330", _ints(300), timing={"period": 10 ** 400})])
    deep = b'{"resourceType": "Observation", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    too_short = example_observation([_component("131330", _ints(100))])
    return [
        ("json", b'{"resourceType": "Observation",', "invalid JSON"),
        ("encoding", b'{"resourceType": "Observation", "id": "\xff\xfe"}', "not UTF-8"),
        ("resource-type", _bytes({"resourceType": "Patient", "id": "x"}), "wrong resourceType"),
        ("sampled-data", _bytes(no_timing), "SampledData without period/interval"),
        ("non-numeric", _bytes(non_numeric), "non-numeric"),
        ("non-numeric", _bytes(nan), "non-numeric"),
        ("non-numeric", _bytes(trailing_e), "non-numeric"),
        ("unknown-lead", _bytes(unknown), "unknown lead"),
        ("duplicate-lead", _bytes(duplicate), "appears twice"),
        ("length-mismatch", _bytes(unequal), "unequal lengths"),
        ("sampling-rate", _bytes(rates), "different sampling"),
        ("unit", _bytes(no_unit), "no unit"),
        ("unit", _bytes(two_units), "different units"),
        ("sampled-data", _bytes(text_factor), "factor must be a JSON number"),
        ("sampling-rate", _bytes(huge_period), "out of range"),
        ("json", deep, "nested too deeply"),
        ("too-short", _bytes(too_short), "shorter"),
        ("identity", _bytes(example_observation(identifier=None, id=None)), "neither identifier nor id"),
        ("fhir-invalid", _bytes(_without(base, "status")), "status"),
        ("fhir-invalid", _bytes(example_observation(effectiveDateTime="SECRET-PATIENT-1")), "effectiveDateTime"),
        ("json", b"[1, 2]", "not an object"),
        ("no-data", _bytes(example_observation(component=[])), "no SampledData"),
        ("status", _bytes(example_observation(status="entered-in-error")), "not analysable"),
    ]


@pytest.mark.parametrize("code,payload,phrase", _error_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_decode_errors(code, payload, phrase):
    with pytest.raises(DecodeError) as info:
        decode_observation(payload)
    assert info.value.code == code
    assert phrase in info.value.reason
    # no patient data in the reason that goes to the dead-letter topic
    assert "example-123" not in info.value.reason and "SECRET" not in info.value.reason
