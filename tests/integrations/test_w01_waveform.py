"""HL7 v2.3 ORU^W01 generic waveform (docs/SPEC.md §11): CHN with sticky defaults, TIM gaps, MA and NA WAVs split
over several OBXs, physical = (raw - baseline) x sensitivity x correction; a real PTB-XL recording."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from integrations.chunk import Chunk
from integrations.decode import decode_message
from integrations.errors import DecodeError
from integrations.hl7.encode_chunks import encode_w01
from integrations.hl7.w01 import decode_w01
from integrations.senders import NO_RULES, SenderMatch, SenderRule, SenderRules
from tests.support.chunks import START, monitoring_piece

OLDCART = SenderRules(senders=(SenderRule(name="cart", match=SenderMatch(hl7_app="OLDCART"), kind="chunk"),))


def _two_segments():
    """Two pieces of one recording with a 3-s hole between them (the TIM of the second says so)."""
    a = monitoring_piece(2.0, offset_s=0.0)
    b = monitoring_piece(1.5, offset_s=5.0).replace(acquired_at=START + timedelta(seconds=5))
    return a, b


@pytest.mark.parametrize("multiplexed", [True, False])
def test_tim_gap_makes_two_segments_and_amplitudes_are_right(multiplexed):
    a, b = _two_segments()
    msg = encode_w01([a, b], control_id="W1", sensitivity_mv=0.0025, baseline=100, correction=0.8,
                     multiplexed=multiplexed, wav_split=3)
    chunk = decode_message(msg, "hl7", OLDCART)  # the sender's rule says it streams
    assert isinstance(chunk, Chunk) and [s.n_samples for s in chunk.segments] == [1000, 750]
    assert [s.acquired_at for s in chunk.segments] == [START, START + timedelta(seconds=5)]
    count = 0.0025 * 0.8
    for got, want in zip(chunk.segments, (a, b), strict=True):
        assert got.leads == ("I", "II", "III", "V") and got.fs == 500.0
        assert np.abs(got.signal.astype(np.float64) - want.signal).max() <= count / 2 + 1e-5
    assert chunk.bed == ("W3", "12", "B") and chunk.segments[0].bed == "B"


def test_sensitivity_in_millivolts_and_non_ecg_channel_skipped():
    a = monitoring_piece(1.0, leads=("II",), names=("II",))
    resp = np.arange(a.n_samples) % 50
    msg = encode_w01([a], control_id="W2", sensitivity_mv=0.005, sensitivity_unit="mV",
                     extra_channels=[("RESP", resp)])
    chunk = decode_w01(msg, sender=None)
    assert chunk.skipped == ("RESP",) and chunk.segments[0].leads == ("II",)
    assert np.abs(chunk.segments[0].signal - a.signal).max() <= 0.0025 + 1e-5


def _chn(msg: bytes, new: bytes) -> bytes:
    segs = msg.split(b"\r")
    for i, s in enumerate(segs):
        if b"&CHN" in s:
            f = s.split(b"|")
            f[5] = new
            segs[i] = b"|".join(f)
    return b"\r".join(segs)


def test_sticky_defaults_each_channel_may_override():
    a = monitoring_piece(1.0, leads=("I", "II"), names=("I", "II"))
    raw_i = np.rint(a.signal[0] / 0.001).astype(int)
    raw_ii = np.rint(a.signal[1] / 0.002).astype(int) + 50
    msg = encode_w01([a], control_id="W3", sensitivity_mv=0.001, baseline=0, channel_range=None)
    # channel 2 overrides sensitivity (2 uV) and baseline (50); the rate is inherited from channel 1
    msg = _chn(msg, b"1&I^^1&uV^1&0&0^500~2&II^^2&uV^1&50")
    block = "~".join(f"{x}^{y}" for x, y in zip(raw_i.tolist(), raw_ii.tolist(), strict=True)).encode()
    segs = msg.split(b"\r")
    wav = [i for i, s in enumerate(segs) if b"&WAV" in s][0]
    f = segs[wav].split(b"|")
    f[5] = block
    segs[wav] = b"|".join(f)
    rec = decode_w01(b"\r".join(segs), sender=None).segments[0]
    np.testing.assert_allclose(rec.lead("I"), raw_i * 0.001, atol=1e-6)
    np.testing.assert_allclose(rec.lead("II"), (raw_ii - 50) * 0.002, atol=1e-6)


@pytest.mark.parametrize("chn, rules, code", [
    (b"1&I^^0.5&mmHg^^500~2&II~3&III~4&V", NO_RULES, "scale-unit"),      # an ECG channel in mmHg
    (b"1&I^^0.5^^500~2&II~3&III~4&V", NO_RULES, "scale-unit"),           # sensitivity without units
    (b"1&I^^^^500~2&II~3&III~4&V", NO_RULES, "no-scale"),                # no sensitivity, no rule
    (b"1&I^^2.5&uV^^^-10&10~2&II~3&III~4&V", NO_RULES, "scale-conflict"),  # samples beyond min&max
    (b"1&I^^2.5&uV~2&II~3&III~4&V", NO_RULES, "sampling-rate"),          # no frequency, no rule
])
def test_refusals(chn, rules, code):
    msg = _chn(encode_w01([monitoring_piece(1.0)], control_id="W4"), chn)
    with pytest.raises(DecodeError) as e:
        decode_message(msg, "hl7", rules)
    assert e.value.code == code, e.value.reason


def test_sender_rule_supplies_scale_and_rate_when_chn_has_none():
    a = monitoring_piece(1.0)
    msg = _chn(encode_w01([a], control_id="W5", sensitivity_mv=0.0025, channel_range=None),
               b"1&I~2&II~3&III~4&V")
    rule = SenderRule(name="cart", match=SenderMatch(hl7_app="OLDCART"), kind="chunk", mv_per_count=0.0025,
                      sample_rate_hz=500)
    rec = decode_message(msg, "hl7", SenderRules(senders=(rule,))).segments[0]
    assert rec.fs == 500.0 and np.abs(rec.signal - a.signal).max() <= 0.00125 + 1e-5


def test_w01_strip_sender_with_a_gap_is_refused_and_without_one_is_a_strip():
    strip_rule = SenderRules(senders=(SenderRule(name="cart", match=SenderMatch(hl7_app="OLDCART")),))
    a, b = _two_segments()
    with pytest.raises(DecodeError) as e:
        decode_message(encode_w01([a, b], control_id="W6"), "hl7", strip_rule)
    assert e.value.code == "gap"
    long = monitoring_piece(5.0, kind="strip")
    rec = decode_message(encode_w01([long], control_id="W7"), "hl7", strip_rule)
    assert rec.kind == "strip" and rec.n_samples == 2500
