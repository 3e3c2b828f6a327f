"""FHIR PoCD SampleArrayObservation chunks (docs/SPEC.md §3, §11), starting with the IG's own ECG example as
published (tests/integrations/data/README.md): 1 s, leads I/II/III, 125 Hz, origin -0.5 mV, factor 0.001."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from integrations.chunk import Chunk
from integrations.decode import decode_message
from integrations.errors import DecodeError
from integrations.fhir.sample_array import encode_sample_array
from integrations.senders import NO_RULES, SenderMatch, SenderRule, SenderRules
from tests.support.chunks import monitoring_piece

EXAMPLE = Path(__file__).parent / "data" / "Observation-ECGSampleArrayObservation.xml"


def _example_json() -> dict:
    from integrations.fhir.xml import load_xml

    return load_xml(EXAMPLE.read_bytes())


def test_the_ig_example_as_published_is_a_chunk_with_the_right_millivolts():
    chunk = decode_message(EXAMPLE.read_bytes(), "fhir", NO_RULES)
    assert isinstance(chunk, Chunk) and chunk.skipped == ()
    rec = chunk.segments[0]
    assert rec.kind == "chunk" and rec.leads == ("I", "II", "III") and rec.fs == 125.0 and rec.n_samples == 125
    assert rec.acquired_at == datetime(2021, 7, 9, 11, 33, 23, tzinfo=timezone(timedelta(hours=2)))
    # physical = origin + factor x data: 500 -> 0.0 mV, lead I's 1100 -> 0.6 mV, lead II's 1500 -> 1.0 mV
    assert rec.lead("I")[0] == pytest.approx(0.0, abs=1e-6)
    assert float(rec.lead("I").max()) == pytest.approx(0.6, abs=1e-6)
    assert float(rec.lead("II").max()) == pytest.approx(1.0, abs=1e-6)
    assert float(rec.lead("II").min()) == pytest.approx(-0.2, abs=1e-6)
    assert chunk.device_id == "DeviceMetric/ECGSampleArrayDeviceMetric" and rec.patient_id == "SomePatient"


def test_json_and_xml_forms_decode_alike():
    from_json = decode_message(json.dumps(_example_json()).encode(), "fhir", NO_RULES).segments[0]
    from_xml = decode_message(EXAMPLE.read_bytes(), "fhir", NO_RULES).segments[0]
    np.testing.assert_array_equal(from_json.signal, from_xml.signal)


def test_without_the_profile_the_same_second_is_a_strip_and_a_dead_letter():
    doc = _example_json()
    del doc["meta"]
    with pytest.raises(DecodeError) as e:
        decode_message(json.dumps(doc).encode(), "fhir", NO_RULES)
    assert e.value.code == "too-short"
    # ... unless the sender's rule names the source as a chunk feed
    doc["meta"] = {"source": "urn:example:gateway"}
    rules = SenderRules(senders=(SenderRule(name="gw", match=SenderMatch(fhir_source="urn:example:gateway"),
                                            kind="chunk"),))
    chunk = decode_message(json.dumps(doc).encode(), "fhir", rules)
    assert chunk.sender == "fhir:urn:example:gateway" and chunk.segments[0].n_samples == 125


def test_e_u_l_samples_are_flags():
    doc = _example_json()
    data = doc["component"][1]["valueSampledData"]["data"].split()
    data[3], data[4], data[60] = "E", "U", "L"
    doc["component"][1]["valueSampledData"]["data"] = " ".join(data)
    rec = decode_message(json.dumps(doc).encode(), "fhir", NO_RULES).segments[0]
    assert np.flatnonzero(rec.flagged[rec.leads.index("II")]).tolist() == [3, 4, 60]
    assert not rec.flagged[rec.leads.index("I")].any()


def test_non_ecg_components_are_skipped_and_named():
    doc = _example_json()
    cvp = json.loads(json.dumps(doc["component"][0]))
    cvp["code"]["coding"][0].update(code="150084", display="MDC_PRESS_BLD_VEN_CENT")
    cvp["valueSampledData"]["origin"] = {"value": 0, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                         "code": "mm[Hg]"}
    doc["component"].append(cvp)
    chunk = decode_message(json.dumps(doc).encode(), "fhir", NO_RULES)
    assert chunk.skipped == ("MDC_PRESS_BLD_VEN_CENT",) and chunk.segments[0].leads == ("I", "II", "III")


@pytest.mark.parametrize("origin, rules, code, expect_mv", [
    ({"value": -500, "unit": "uV"}, NO_RULES, None, -0.4995),  # all in uV: (-500 + 0.001 x 500) x 0.001 mV
    ({"value": -0.5, "code": "mV", "unit": "uV"}, NO_RULES, "unit", None),  # code and unit disagree
    ({"value": -0.5, "unit": "mmHg"}, NO_RULES, "unit", None),  # an ECG lead in mmHg
    ({"value": -0.5}, NO_RULES, "unit", None),  # no unit and no sender rule
])
def test_units_and_scale(origin, rules, code, expect_mv):
    doc = _example_json()
    for comp in doc["component"]:
        comp["valueSampledData"]["origin"] = origin
    if code is None:
        rec = decode_message(json.dumps(doc).encode(), "fhir", rules).segments[0]
        assert rec.lead("I")[0] == pytest.approx(expect_mv, abs=1e-6)
    else:
        with pytest.raises(DecodeError) as e:
            decode_message(json.dumps(doc).encode(), "fhir", rules)
        assert e.value.code == code


def test_period_contradicting_effective_period_is_refused():
    doc = _example_json()
    for comp in doc["component"]:
        comp["valueSampledData"]["period"] = 0.008  # seconds written where milliseconds belong
    with pytest.raises(DecodeError) as e:
        decode_message(json.dumps(doc).encode(), "fhir", NO_RULES)
    assert e.value.code in ("sampling-rate", "too-short", "too-long")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_encoder_round_trip_on_a_real_recording(fmt):
    piece = monitoring_piece(1.0)
    msg = encode_sample_array(piece, fmt=fmt, origin_mv=-0.5, factor=0.001, source="urn:example:gw")
    rec = decode_message(msg, "fhir", NO_RULES).segments[0]
    assert rec.leads == piece.leads and rec.lead_marks == piece.lead_marks
    assert np.abs(rec.signal.astype(np.float64) - piece.signal).max() <= 0.0005 + 1e-6


def test_xml_with_a_doctype_is_refused():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY a "aaaaaaaaaa">]>'
            b'<Observation xmlns="http://hl7.org/fhir"><status value="&a;"/></Observation>')
    with pytest.raises(DecodeError) as e:
        decode_message(bomb, "fhir", NO_RULES)
    assert (e.value.code, e.value.ack_code) == ("xml", "AR")


def test_a_fhir_strip_skips_non_ecg_components_too():
    doc = _example_json()
    del doc["meta"], doc["effectivePeriod"]
    for comp in doc["component"]:  # three seconds: a valid strip
        comp["valueSampledData"]["data"] = " ".join([comp["valueSampledData"]["data"]] * 3)
    resp = json.loads(json.dumps(doc["component"][0]))
    resp["code"] = {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "151562",
                                "display": "MDC_RESP_RATE"}]}
    doc["component"].append(resp)
    from integrations.decode import decode_message_detailed

    rec, skipped = decode_message_detailed(json.dumps(doc).encode(), "fhir", NO_RULES)
    assert rec.kind == "strip" and rec.leads == ("I", "II", "III") and rec.n_samples == 375
    assert skipped == ("MDC_RESP_RATE",)
