"""The bad-input corpus: real messages broken the ways real feeds break (issue 2, item 9).

Each case says which raw topic it goes to and which dead-letter code the worker must give it; the e2e run and the
tests use the same list. Cases are made from a real recording, so only the fault differs from a good message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from engine.record import EcgRecord
from integrations.fhir.observation import encode_observation
from integrations.hl7.encode import encode_oru


@dataclass(frozen=True)
class BadCase:
    name: str
    fmt: str  # "hl7" | "fhir"
    value: bytes
    at_edge: bool = False  # refused by the producer edge (too large), never reaches a raw topic


def _segments(msg: bytes) -> list[bytes]:
    return [s for s in msg.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r") if s]


def _join(segs: list[bytes]) -> bytes:
    return b"\r".join(segs) + b"\r"


def _obx_indices(segs: list[bytes]) -> list[int]:
    return [i for i, s in enumerate(segs) if s.startswith(b"OBX") and b"|NA|" in s]


def _set_na_payload(seg: bytes, fn) -> bytes:
    fields = seg.split(b"|")
    fields[5] = fn(fields[5])
    return b"|".join(fields)


def hl7_cases(record: EcgRecord, control_prefix: str, max_message_bytes: int) -> list[BadCase]:
    def good(tag: str, rec: EcgRecord = record) -> bytes:
        return encode_oru(rec, control_id=f"{control_prefix}-{tag}", sending_app="TWIWATCH-BAD",
                          sending_facility="CORPUS")

    cases: list[BadCase] = []
    msg = good("trunc")
    cases.append(BadCase("hl7-truncated", "hl7", msg[: len(msg) // 2]))
    segs = _segments(good("noobr"))
    cases.append(BadCase("hl7-missing-obr", "hl7", _join([s for s in segs if not s.startswith(b"OBR")])))
    segs = _segments(good("noobx"))
    cases.append(BadCase("hl7-missing-obx", "hl7", _join([s for s in segs if not s.startswith(b"OBX")])))
    segs = _segments(good("nonnum"))
    i = _obx_indices(segs)[0]
    segs[i] = _set_na_payload(segs[i], lambda p: p.replace(b"^", b"^abc^", 1))
    cases.append(BadCase("hl7-non-numeric-sample", "hl7", _join(segs)))
    segs = _segments(good("nan"))
    i = _obx_indices(segs)[1]
    segs[i] = _set_na_payload(segs[i], lambda p: p.replace(b"^", b"^NaN^", 1))
    cases.append(BadCase("hl7-nan-sample", "hl7", _join(segs)))
    segs = _segments(good("inf"))
    i = _obx_indices(segs)[2]
    segs[i] = _set_na_payload(segs[i], lambda p: b"inf^" + p)
    cases.append(BadCase("hl7-inf-sample", "hl7", _join(segs)))
    segs = _segments(good("unequal"))
    i = _obx_indices(segs)[0]
    segs[i] = _set_na_payload(segs[i], lambda p: b"^".join(p.split(b"^")[:-100]))
    cases.append(BadCase("hl7-unequal-lengths", "hl7", _join(segs)))
    segs = _segments(good("unknownlead"))
    i = _obx_indices(segs)[0]
    fields = segs[i].split(b"|")
    fields[3] = b"999999^MDC_ECG_ELEC_POTL_BOGUS^MDC"
    segs[i] = b"|".join(fields)
    cases.append(BadCase("hl7-unknown-lead", "hl7", _join(segs)))
    segs = _segments(good("duplead"))
    idx = _obx_indices(segs)
    fields0, fields1 = segs[idx[0]].split(b"|"), segs[idx[1]].split(b"|")
    fields1[3] = fields0[3]
    segs[idx[1]] = b"|".join(fields1)
    cases.append(BadCase("hl7-duplicate-lead", "hl7", _join(segs)))
    cases.append(BadCase("hl7-sampling-rate-zero", "hl7", _rate(good("fs0"), b"0")))
    cases.append(BadCase("hl7-sampling-rate-absurd", "hl7", _rate(good("fsabsurd"), b"5000000")))
    short = record.replace(signal=record.signal[:, : int(record.fs * 2.0)])
    cases.append(BadCase("hl7-strip-too-short", "hl7", _short_strip(short, good)))
    msg = good("latin1")
    cases.append(BadCase("hl7-non-utf8", "hl7", msg.replace(b"PID|", b"PID|\xff\xfe", 1)))
    cases.append(BadCase("hl7-not-hl7", "hl7", b"this is not an HL7 message\r"))
    big = good("toolarge")
    reps = max_message_bytes // max(1, len(big)) + 2
    cases.append(BadCase("hl7-over-size-limit", "hl7", big * reps, at_edge=True))
    return cases


def _rate(msg: bytes, value: bytes) -> bytes:
    segs = _segments(msg)
    for i, seg in enumerate(segs):
        if seg.startswith(b"OBX") and b"MDC_ATTR_SAMP_RATE" in seg:
            fields = seg.split(b"|")
            fields[5] = value
            segs[i] = b"|".join(fields)
    return _join(segs)


def _short_strip(short: EcgRecord, good) -> bytes:
    # make_record refuses a 2 s strip, so build the message from a valid one and cut its payloads.
    msg = _segments(good("short"))
    n = short.n_samples
    for i in _obx_indices(msg):
        msg[i] = _set_na_payload(msg[i], lambda p: b"^".join(p.split(b"^")[:n]))
    return _join(msg)


def fhir_cases(record: EcgRecord, control_prefix: str, fhir_version: str) -> list[BadCase]:
    def good(tag: str) -> dict:
        return json.loads(encode_observation(record, fhir_version=fhir_version,
                                             identifier_system="urn:twiwatch:bad",
                                             identifier_value=f"{control_prefix}-{tag}"))

    cases = [BadCase("fhir-invalid-json", "fhir", b'{"resourceType": "Observation", "component": [')]
    obs = good("wrongtype")
    obs["resourceType"] = "Patient"
    cases.append(BadCase("fhir-wrong-resource-type", "fhir", json.dumps(obs).encode()))
    obs = good("noperiod")
    for comp in obs["component"]:
        sd = comp["valueSampledData"]
        for k in ("period", "interval", "intervalUnit"):
            sd.pop(k, None)
    cases.append(BadCase("fhir-sampleddata-without-period", "fhir", json.dumps(obs).encode()))
    obs = good("nonnum")
    data = obs["component"][0]["valueSampledData"]["data"].split(" ")
    data[10] = "x1"
    obs["component"][0]["valueSampledData"]["data"] = " ".join(data)
    cases.append(BadCase("fhir-non-numeric-sample", "fhir", json.dumps(obs).encode()))
    obs = good("unequal")
    data = obs["component"][1]["valueSampledData"]["data"].split(" ")
    obs["component"][1]["valueSampledData"]["data"] = " ".join(data[:-50])
    cases.append(BadCase("fhir-unequal-lengths", "fhir", json.dumps(obs).encode()))
    obs = good("dup")
    obs["component"][1]["code"] = obs["component"][0]["code"]
    cases.append(BadCase("fhir-duplicate-lead", "fhir", json.dumps(obs).encode()))
    latin1 = json.dumps(good("latin1")).encode().replace(b'"Observation"', b'"Obs\xe9rvation"', 1)
    cases.append(BadCase("fhir-non-utf8", "fhir", latin1))
    return cases


def corpus(record: EcgRecord, control_prefix: str, max_message_bytes: int, fhir_version: str) -> list[BadCase]:
    return hl7_cases(record, control_prefix, max_message_bytes) + fhir_cases(record, control_prefix, fhir_version)
