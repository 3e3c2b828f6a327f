"""The operator tool's pure function (integrations/describe.py): the worker's decode, summarised."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from integrations.describe import describe_message
from integrations.hl7.encode_chunks import encode_pcd01_chunk, encode_w01
from integrations.senders import SenderMatch, SenderRule, SenderRules
from tests.support.chunks import CHUNK_RULES, START, monitoring_piece

EXAMPLE = Path(__file__).parent / "data" / "Observation-ECGSampleArrayObservation.xml"


def test_pcd01_chunk_with_newline_segment_ends():
    piece = monitoring_piece(1.0)
    msg = encode_pcd01_chunk(piece, control_id="D1").replace(b"\r", b"\n")
    out = describe_message(msg, rules=CHUNK_RULES)
    assert out["error"] is None and (out["kind"], out["fs"], out["n_samples"]) == ("chunk", 500.0, 500)
    assert out["start"] == START.isoformat() and out["lead_marks"] == {"V": "unknown-position"}
    assert abs(out["leads"]["II"]["max_mv"] - float(piece.lead("II").max())) <= 0.01 + 1e-4


def test_same_file_as_strip_is_a_dead_letter_and_forced_chunk_is_not():
    msg = encode_pcd01_chunk(monitoring_piece(1.0), control_id="D2")
    strip = describe_message(msg)
    assert strip["kind"] is None and strip["error"]["code"] == "too-short"
    assert describe_message(msg, kind="chunk")["kind"] == "chunk"


def test_w01_gap_splits_segments():
    a = monitoring_piece(1.0)
    b = monitoring_piece(1.0, offset_s=3.0).replace(acquired_at=START + timedelta(seconds=3))
    rules = SenderRules(senders=(SenderRule(name="c", match=SenderMatch(hl7_app="OLDCART"), kind="chunk"),))
    out = describe_message(encode_w01([a, b], control_id="D3"), rules=rules)
    assert [s["n_samples"] for s in out["segments"]] == [500, 500] and out["n_samples"] == 1000
    assert out["segments"][1]["start"] == (START + timedelta(seconds=3)).isoformat()


def test_fhir_xml_example():
    out = describe_message(EXAMPLE.read_bytes())
    assert (out["format"], out["kind"], out["fs"], out["n_samples"]) == ("fhir", "chunk", 125.0, 125)
    assert out["leads"]["II"] == {"min_mv": -0.2, "max_mv": 1.0}


def test_error_carries_code_and_reason_without_patient_data():
    msg = encode_pcd01_chunk(monitoring_piece(1.0), control_id="D4", resolution_mv=None)
    out = describe_message(msg, rules=CHUNK_RULES)
    assert out["error"]["code"] == "no-scale" and "MRN-77" not in out["error"]["reason"]
