"""The analysis message encoder (docs/SPEC.md §13.1) on real records from samples/: the signal decodes back to the
record, fiducials lie inside it, the prior is named by its report id, the bytes are deterministic; the report's
Provenance names the same prior and stays valid; HL7 PV1-3.1 travels as the unit."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from engine.analyze import analyze
from engine.monitor.episodes import EpisodeEvent
from engine.record import STANDARD_LEADS, make_record
from integrations.decode import decode_message
from integrations.fhir.report import build_report_bundle
from integrations.hl7.encode import encode_oru
from integrations.identity import report_id
from integrations.review import analysis_message as am
from integrations.senders import parse_sender_rules
from tests.support.records import load_wfdb, ptbxl_path

ISSUED = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ptbxl():
    rec = load_wfdb(ptbxl_path(298, "hr"), "ptbxl/00298")
    return rec.replace(patient_id="340", patient_system="urn:ptbxl:patient", bed="12", unit="CCU",
                       device_id="cart-7", acquired_at=datetime(1986, 9, 10, 9, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def prior():
    rec = load_wfdb(ptbxl_path(273, "lr"), "ptbxl/00273")
    return analyze(rec.replace(acquired_at=datetime(1986, 9, 6, 9, 0, tzinfo=UTC))).summary


def _fiducials(message: dict) -> list[int]:
    return [v for lead in message["analysis"]["leads"].values() for beat in lead["beats"] for k, v in beat.items()
            if v is not None and k in am._BEAT_FIELDS]


def test_signal_decodes_back_to_the_record_and_fiducials_lie_inside(ptbxl, prior):
    analysis = analyze(ptbxl, [prior])
    msg = am.ecg_message(analysis, ptbxl, [prior], report_id=report_id(ptbxl.source_id), version=1,
                         status="preliminary", issued=ISSUED)
    raw = am.message_bytes(msg)
    back = json.loads(raw)
    assert back["schema"] == "twiwatch.analysis/1" and back["kind"] == "ecg" and back["research_only"] is True
    sig = back["signal"]
    assert sig["fs"] == ptbxl.fs == 500.0 and sig["units"] == "uV" and sig["dtype"] == "int16"
    decoded = am.decode_signal(sig)
    assert set(decoded) == set(STANDARD_LEADS) and sig["derived"] == []
    for lead, values in decoded.items():
        mv = ptbxl.lead(lead).astype(np.float64)
        inside = np.abs(mv) < 32.767
        assert values.size == sig["n_samples"] == ptbxl.n_samples
        assert np.max(np.abs(values[inside] - mv[inside] * 1000.0)) <= 0.5 + 1e-6  # within 1 µV
    fid = _fiducials(back)
    assert fid and min(fid) >= 0 and max(fid) < sig["n_samples"]
    assert back["prior"] == {"source_id": "ptbxl/00273", "acquired_at": prior.acquired_at,
                             "report_id": report_id("ptbxl/00273")}
    assert back["patient"] == {"mrn": "340", "system": "urn:ptbxl:patient"}
    assert back["location"] == {"unit": "CCU", "bed": "12", "device": "cart-7"}
    assert back["acquired_at"] == "1986-09-10T09:00:00+00:00" and back["issued"] == "2024-05-01T10:00:00+00:00"
    assert back["analysis"]["triage"]["cls"] == analysis.triage.cls
    # Deterministic: the same inputs give the same bytes; about 160 KB for 12 leads x 10 s x 500 Hz.
    again = am.ecg_message(analyze(ptbxl, [prior]), ptbxl, [prior], report_id=report_id(ptbxl.source_id),
                           version=1, status="preliminary", issued=ISSUED)
    assert am.message_bytes(again) == raw
    assert 150_000 < len(raw) < 400_000


def test_a_long_strip_sends_its_analysed_span_with_fiducials_relative_to_it(ptbxl):
    long = ptbxl.replace(signal=np.tile(ptbxl.signal, 7))  # 70 s of a real ECG: the last 60 s are analysed
    analysis = analyze(long)
    assert analysis.truncated and analysis.analysed_from_sample == 5000
    msg = json.loads(am.message_bytes(am.ecg_message(analysis, long, [], report_id="r", version=1,
                                                     status="preliminary", issued=ISSUED)))
    decoded = am.decode_signal(msg["signal"])
    assert msg["signal"]["n_samples"] == 30_000 and decoded["II"].size == 30_000
    assert np.array_equal(decoded["II"], np.rint(long.lead("II")[5000:].astype(np.float64) * 1000).astype(np.int16))
    fid = _fiducials(msg)
    assert min(fid) >= 0 and max(fid) < 30_000
    first = analysis.leads["II"].beats[0].r_peak
    assert msg["analysis"]["leads"]["II"]["beats"][0]["r_peak"] == first - 5000
    assert msg["prior"] is None and msg["analysis"]["analysed_from_sample"] == 5000


def test_derived_limb_leads_clipping_and_flagged_samples(ptbxl):
    two = make_record(ptbxl.signal[:2].copy(), ["I", "II"], ptbxl.fs, "two-leads")
    block = am.signal_block(two, derive=True)
    assert block["derived"] == ["III", "aVR", "aVL", "aVF"] and set(block["leads"]) == {"I", "II", "III", "aVR",
                                                                                          "aVL", "aVF"}
    iii = am.decode_signal(block)["III"].astype(np.float64)
    want = (two.lead("II").astype(np.float64) - two.lead("I")) * 1000
    assert np.max(np.abs(iii - want)) <= 1.0
    signal = ptbxl.signal[:2].copy()
    signal[0, 100:110] = 40.0  # beyond int16 µV: clipped
    flagged = np.zeros_like(signal, dtype=bool)
    flagged[1, 200:250] = True
    signal[1, 200:250] = np.nan  # FHIR "E" samples arrive as NaN, flagged
    rec = make_record(signal, ["I", "II"], ptbxl.fs, "faults", flagged=flagged)
    block = am.signal_block(rec)
    values = am.decode_signal(block)
    assert values["I"][100:110].tolist() == [32767] * 10
    assert values["II"][200:250].tolist() == [0] * 50
    assert block["flagged"] == {"II": [[200, 250]]}


def test_the_report_names_the_prior_in_its_provenance_and_stays_valid(ptbxl, prior):
    analysis = analyze(ptbxl, [prior])
    prior_rid = report_id(prior.source_id)
    for version in ("R4B", "R5"):
        bundle = build_report_bundle(analysis, ptbxl, report_id=report_id(ptbxl.source_id), version=1,
                                     status="preliminary", issued=ISSUED, fhir_version=version,
                                     prior_acquired_at=prior.acquired_at, prior_report_id=prior_rid)
        provenance = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
        named = [e for e in provenance["entity"] if e["what"].get("type") == "DiagnosticReport"]
        assert len(named) == 1 and named[0]["role"] == "source"
        assert named[0]["what"]["identifier"]["value"] == prior_rid
        without = build_report_bundle(analysis, ptbxl, report_id="x", version=1, status="preliminary",
                                      issued=ISSUED, fhir_version=version)
        prov = next(e["resource"] for e in without["entry"] if e["resource"]["resourceType"] == "Provenance")
        assert len(prov["entity"]) == 1


def test_hl7_point_of_care_arrives_as_the_unit(ptbxl):
    raw = encode_oru(ptbxl, control_id="unit-1", message_time=ISSUED)
    assert b"PV1||I|CCU^^12" in raw
    record = decode_message(raw, "hl7", parse_sender_rules(""))
    assert (record.unit, record.bed) == ("CCU", "12")


def test_episode_message_carries_its_trend_and_windows(ptbxl):
    window = make_record(ptbxl.signal[[0, 1, 7]].copy(), ["I", "II", "V2"], ptbxl.fs, "w", kind="chunk")
    t0 = 1_700_000_000.0
    n = 2000  # more windows than the message may carry: thinned evenly to 720, first and last kept
    trend = {"t_s": [t0 + 10 * i for i in range(n)],
             "leads": {"V2": [[0.2 - i * 1e-4, 0.01, True] for i in range(n)], "II": [None] * n}}
    ev = EpisodeEvent(kind="opened", episode_start_s=t0 + 300, at_s=t0 + 360, leads=("V2",), depth_mv={"V2": 0.3},
                      baseline_source="monitoring (first 5 min)", baseline_mv={"V2": 0.2}, reason="test", version=1)
    msg = json.loads(am.message_bytes(am.episode_message(
        ev, report_id="ep", stream="s", stream_source="hl7:GW|ICU|dev|ICU^07", patient_id="M1", patient_system="",
        unit="ICU", bed="07", device="dev", baseline={"V2": {"t": 0.2, "st": 0.01, "source": "monitoring"}},
        trend=trend, opened=window, closed=None)))
    ep = msg["episode"]
    assert msg["kind"] == "episode" and ep["state"] == "open" and ep["end"] is None
    assert len(ep["trend"]) == am.MAX_TREND_POINTS
    assert ep["trend"][0]["t"] == "2023-11-14T22:13:20+00:00" and ep["trend"][0]["lead"] == {
        "V2": {"t_mv": 0.2, "st_j60_mv": 0.01, "quality": "ok"}}
    assert ep["windows"]["closed"] is None
    opened = am.decode_signal(ep["windows"]["opened"])
    assert set(opened) == {"I", "II", "V2"} and opened["V2"].size == window.n_samples
