"""PCD-01 gateway chunks in the documented Mindray eGateway layout (docs/SPEC.md §11), built from a real PTB-XL
recording: NA counts, `.1` rate (code 0), `.2` 67917^MDC_ATTR_NU_MSMT_RES = 0.02 mV, `.3` MDC_EVT_INOP."""
from __future__ import annotations

import numpy as np
import pytest

from engine.record import MARK_UNKNOWN_POSITION
from integrations.chunk import Chunk
from integrations.decode import decode_message
from integrations.errors import DecodeError
from integrations.hl7.encode_chunks import encode_pcd01_chunk
from integrations.senders import NO_RULES, SenderMatch, SenderRule, SenderRules
from tests.support.chunks import CHUNK_RULES, GATEWAY, START, monitoring_piece

COUNT_MV = 0.02


def _within_one_count(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.shape == original.shape
    # rounding to the nearest count loses at most half a count; float32 adds far less
    assert np.abs(decoded.astype(np.float64) - original.astype(np.float64)).max() <= COUNT_MV / 2 + 1e-5


@pytest.mark.parametrize("seconds", [1.0, 10.0])
def test_gateway_chunk_amplitudes_honour_the_resolution(seconds):
    piece = monitoring_piece(seconds)
    msg = encode_pcd01_chunk(piece, control_id="C1")
    chunk = decode_message(msg, "hl7", CHUNK_RULES)
    assert isinstance(chunk, Chunk) and len(chunk.segments) == 1
    rec = chunk.segments[0]
    assert rec.kind == "chunk" and rec.leads == ("I", "II", "III", "V") and rec.fs == 500.0
    assert rec.n_samples == int(seconds * 500)
    _within_one_count(rec.signal, piece.signal)
    # the 20x trap: the peak-to-peak amplitude is the recording's, not a twentieth of it
    assert np.ptp(rec.lead("II")) == pytest.approx(float(np.ptp(piece.lead("II"))), abs=COUNT_MV)
    assert rec.lead_marks == {"V": MARK_UNKNOWN_POSITION} and rec.standard_leads == ("I", "II", "III")
    assert rec.acquired_at == START and rec.bed == "07" and chunk.bed == ("ICU", "07")
    assert chunk.sender == "hl7:EGATEWAY|ICU" and chunk.device_id == "0011223344556677"
    assert chunk.stream_key == "hl7:EGATEWAY|ICU|0011223344556677|ICU^07"


def test_resolution_is_honoured_in_a_ten_second_strip_too():
    piece = monitoring_piece(10.0, leads=("I", "II", "III", "V2"), names=("I", "II", "III", "V2"), kind="strip")
    rec = decode_message(encode_pcd01_chunk(piece, control_id="S1"), "hl7", NO_RULES)  # no rule: a strip
    assert not isinstance(rec, Chunk) and rec.kind == "strip"
    _within_one_count(rec.signal, piece.signal)


def test_a_one_second_message_from_a_strip_sender_is_still_a_dead_letter():
    with pytest.raises(DecodeError) as e:
        decode_message(encode_pcd01_chunk(monitoring_piece(1.0), control_id="S2"), "hl7", NO_RULES)
    assert e.value.code == "too-short" and "shorter than 2.5 s" in e.value.reason


@pytest.mark.parametrize("style", ["mnemonic", "mixed", "bare"])
def test_lead_code_styles(style):
    piece = monitoring_piece(1.0, leads=("I", "II", "V1"), names=("I", "II", "V1"))
    chunk = decode_message(encode_pcd01_chunk(piece, control_id="L", lead_style=style), "hl7", CHUNK_RULES)
    assert chunk.segments[0].leads == ("I", "II", "V1")
    _within_one_count(chunk.segments[0].signal, piece.signal)


def test_bare_stream_ids_take_rate_and_scale_from_the_sender_rule():
    piece = monitoring_piece(1.0, leads=("II",), names=("II",))
    msg = encode_pcd01_chunk(piece, control_id="B", resolution_mv=None, lead_style="bare", send_rate=False,
                             sending_app="DATACAPTOR", sending_facility="H1")
    rule = SenderRule(name="captor", match=SenderMatch(hl7_app="DATACAPTOR"), kind="chunk", mv_per_count=0.001,
                      sample_rate_hz=500)
    rec = decode_message(msg, "hl7", SenderRules(senders=(rule,))).segments[0]
    assert rec.fs == 500.0
    assert np.abs(rec.signal - piece.signal).max() <= 0.0005 + 1e-6  # 1 uV counts
    with pytest.raises(DecodeError) as e:  # the same feed without its rule: no scale, no guess
        decode_message(msg, "hl7", SenderRules(senders=(rule.model_copy(update={"mv_per_count": None}),)))
    assert e.value.code == "no-scale"


def test_inop_flags_the_lead_and_pleth_is_skipped_and_named():
    piece = monitoring_piece(1.0)
    pleth = np.arange(piece.n_samples) % 100
    msg = encode_pcd01_chunk(piece, control_id="P", inop_leads=("III",),
                             extra_signals=[("MDC_PULS_OXIM_PLETH", pleth)])
    chunk = decode_message(msg, "hl7", CHUNK_RULES)
    rec = chunk.segments[0]
    assert chunk.skipped == ("MDC_PULS_OXIM_PLETH",)
    assert rec.flagged is not None and rec.flagged[rec.leads.index("III")].all()
    assert not rec.flagged[rec.leads.index("II")].any()


def test_a_chunk_of_only_non_ecg_signals_is_empty_not_an_error():
    piece = monitoring_piece(1.0, leads=("II",), names=("II",))
    msg = encode_pcd01_chunk(piece, control_id="E", extra_signals=[("MDC_PRESS_BLD_ART_ABP", np.zeros(500, int))])
    only_abp = b"\r".join(s for s in msg.split(b"\r") if b"1.1.1.1" not in s)
    chunk = decode_message(only_abp, "hl7", CHUNK_RULES)
    assert chunk.segments == () and chunk.skipped == ("MDC_PRESS_BLD_ART_ABP",)


def test_monitoring_leads_mlii_and_mcl1_map_with_a_mark():
    piece = monitoring_piece(1.0, leads=("II", "V1"), names=("MLII", "MCL1"))
    rec = decode_message(encode_pcd01_chunk(piece, control_id="M"), "hl7", CHUNK_RULES).segments[0]
    assert rec.leads == ("II", "V1") and rec.approximated_leads == ("II", "V1")


def _edit(msg: bytes, needle: bytes, field: int, value: bytes) -> bytes:
    out = []
    for seg in msg.split(b"\r"):
        if needle in seg:
            f = seg.split(b"|")
            f += [b""] * (field + 1 - len(f))
            f[field] = value
            seg = b"|".join(f)
        out.append(seg)
    return b"\r".join(out)


@pytest.mark.parametrize("name, mutate, code", [
    # a voltage unit on the samples and a resolution that says they are counts: refused
    ("unit-and-resolution", lambda m: _edit(m, b"|NA|", 6, b"266418^MDC_DIM_MILLI_VOLT^MDC"), "scale-conflict"),
    ("resolution-not-voltage", lambda m: _edit(m, b"MDC_ATTR_NU_MSMT_RES", 6, b"266016^MDC_DIM_MMHG^MDC"),
     "scale-unit"),
    ("resolution-without-unit", lambda m: _edit(m, b"MDC_ATTR_NU_MSMT_RES", 6, b""), "scale-unit"),
    ("resolution-zero", lambda m: _edit(m, b"MDC_ATTR_NU_MSMT_RES", 5, b"0"), "scale-attribute"),
    ("unknown-scaling-attribute", lambda m: _edit(m, b"MDC_ATTR_NU_MSMT_RES", 3, b"0^MDC_ATTR_SCALE_SPECN_I16^MDC"),
     "scale-attribute"),
    ("unidentified-attribute", lambda m: _edit(m, b"MDC_ATTR_NU_MSMT_RES", 3, b"68000"), "unknown-attribute"),
    ("no-resolution-no-rule", lambda m: b"\r".join(s for s in m.split(b"\r") if b"MSMT_RES" not in s),
     "no-scale"),
    ("na-unit-mmhg", lambda m: _edit(m, b"|NA|", 6, b"266016^MDC_DIM_MMHG^MDC"), "unit"),
])
def test_scale_statements(name, mutate, code):
    msg = mutate(encode_pcd01_chunk(monitoring_piece(1.0), control_id="X"))
    with pytest.raises(DecodeError) as e:
        decode_message(msg, "hl7", CHUNK_RULES)
    assert e.value.code == code, e.value.reason
    assert "MRN-77" not in e.value.reason


def test_resolution_in_microvolts_and_a_consistent_data_range():
    piece = monitoring_piece(1.0)
    msg = encode_pcd01_chunk(piece, control_id="U")
    micro = _edit(_edit(msg, b"MDC_ATTR_NU_MSMT_RES", 6, b"266419^MDC_DIM_MICRO_VOLT^MDC"),
                  b"MDC_ATTR_NU_MSMT_RES", 5, b"20")
    _within_one_count(decode_message(micro, "hl7", CHUNK_RULES).segments[0].signal, piece.signal)
    # a data range in mV that the scaled samples respect passes; one they exceed 20-fold is refused
    lo, hi = float(piece.signal.min()) - 0.05, float(piece.signal.max()) + 0.05
    rng = f"OBX|99|NR|0^MDC_ATTR_DATA_RANGE^MDC|1.1.1.1.4|{lo:.3f}^{hi:.3f}|266418^MDC_DIM_MILLI_VOLT^MDC".encode()
    with_range = msg.replace(b"\rOBX|2|", b"\r" + rng + b"\rOBX|2|", 1)
    assert decode_message(with_range, "hl7", CHUNK_RULES).segments[0].leads[0] == "I"
    narrow = with_range.replace(f"{lo:.3f}^{hi:.3f}".encode(), f"{lo / 20:.4f}^{hi / 20:.4f}".encode())
    with pytest.raises(DecodeError) as e:
        decode_message(narrow, "hl7", CHUNK_RULES)
    assert e.value.code == "scale-conflict"


def test_sender_rule_scale_never_overrides_the_message():
    piece = monitoring_piece(1.0)
    wrong = GATEWAY.model_copy(update={"mv_per_count": 0.001})
    rec = decode_message(encode_pcd01_chunk(piece, control_id="W"), "hl7", SenderRules(senders=(wrong,)))
    _within_one_count(rec.segments[0].signal, piece.signal)  # the 0.02 mV resolution in the message wins
