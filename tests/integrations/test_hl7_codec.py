"""HL7 v2 codec tests: decode == hl7apy, round trips on real recordings, units, codes, every refusal, ACKs.

The helpers at the top are shared with tests/test_mllp.py.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timezone
from pathlib import Path

import hl7  # python-hl7, third party
import numpy as np
import pytest
from hl7apy.parser import parse_message, parse_segment

from engine.record import EcgRecord
from integrations.datasets.wfdb_io import read_wfdb
from integrations.errors import DecodeError
from integrations.hl7 import codes
from integrations.hl7.ack import make_ack
from integrations.hl7.decode import decode_oru, decode_oru_detailed, parse_header
from integrations.hl7.encode import encode_oru
from integrations.hl7.numarray import SampleError, parse_na
from integrations.identity import hl7_source_id
from integrations.senders import SenderMatch, SenderRule

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
_SHARED_LAYOUT = {
    "ludb": SHARED / "ludb" / "lobachevsky-university-electrocardiography-database-1.0.1",
    "ptbxl": SHARED / "ptbxl",
}
PATIENT_MARK = "PAT-SECRET-4711"  # must never appear in a reason
BIRTH = date(1961, 3, 14)


def sample_path(name: str) -> Path:
    """A WFDB record path (no extension) such as 'ludb/data/1' or 'ptbxl/records100/00000/00593_lr':
    the project's samples/ when present, else the development copy in ../shared/data."""
    shipped = ROOT / "samples" / name
    if shipped.with_suffix(".hea").exists():
        return shipped
    dataset, _, rest = name.partition("/")
    dev = _SHARED_LAYOUT.get(dataset, SHARED / dataset) / rest
    if dev.with_suffix(".hea").exists():
        return dev
    pytest.skip(f"recording {name} not available")


def sample_record(name: str, **meta) -> EcgRecord:
    """A real recording as an EcgRecord, with test metadata that lets tests look for leaks."""
    defaults = dict(patient_id=PATIENT_MARK, sex="F", birth_date=BIRTH, bed="Bed 7",
                    acquired_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), device_id="0011223344556677")
    defaults.update(meta)
    return read_wfdb(sample_path(name), source_id=f"wfdb:{name}", **defaults)


def message(name: str = "ludb/data/1", control_id: str = "CTRL-1", **kw) -> bytes:
    return encode_oru(sample_record(name), control_id=control_id, **kw)


def segments(msg: bytes) -> list[bytes]:
    return [s for s in msg.split(b"\r") if s]


def join(segs: list[bytes]) -> bytes:
    return b"\r".join(segs) + b"\r"


def set_field(seg: bytes, n: int, value: bytes) -> bytes:
    f = seg.split(b"|")
    f += [b""] * (n + 1 - len(f))
    f[n] = value
    return b"|".join(f)


def get_field(seg: bytes, n: int) -> bytes:
    f = seg.split(b"|")
    return f[n] if n < len(f) else b""


def wave_indices(segs: list[bytes]) -> list[int]:
    return [i for i, s in enumerate(segs) if s.startswith(b"OBX|") and get_field(s, 2) == b"NA"]


def edit(msg: bytes, fn) -> bytes:
    segs = segments(msg)
    fn(segs)
    return join(segs)


def assert_close_to_resolution(a: np.ndarray, b: np.ndarray, resolution_mv: float = 0.001) -> None:
    """Equal within half the declared resolution (plus float32 rounding)."""
    assert a.shape == b.shape
    assert np.abs(a.astype(np.float64) - b.astype(np.float64)).max() <= resolution_mv / 2 + 1e-6


# ---------------------------------------------------------------------------------------------- tests


def rule(mv_per_count: float) -> SenderRule:
    """A sender rule that says what one raw count is worth (there is no global default any more)."""
    return SenderRule(name="test", match=SenderMatch(hl7_app="TWIWATCH-REPLAY"), mv_per_count=mv_per_count)

STANDARD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def test_decode_equals_hl7apy_full_parse_on_real_12_lead():
    """docs/SPEC.md §2: prove the numpy decode equal to a full hl7apy parse (one real 10-s 12-lead, ~5 s)."""
    msg = message("ludb/data/1", control_id="EQ-1")
    rec = decode_oru(msg, sender=None)
    parsed = parse_message(msg.decode(), find_groups=True)
    result = parsed.oru_r01_patient_result
    obs = result.oru_r01_order_observation.oru_r01_observation
    waves = [o.obx for o in obs if o.obx.obx_2.to_er7() == "NA"]
    assert len(waves) == 12
    for obx in waves:
        code = obx.obx_3.to_er7().split("^")[0]
        lead = codes.lead_from_code(code, "")
        reference = np.array([float(v) for v in obx.obx_5.to_er7().split("^")]) * 0.001  # µV -> mV
        assert obx.obx_6.to_er7().startswith("266419^")
        np.testing.assert_array_equal(rec.lead(lead), reference.astype(np.float32))
    rates = {o.obx.obx_5.to_er7() for o in obs if "MDC_ATTR_SAMP_RATE" in o.obx.obx_3.to_er7()}
    assert rates == {"500"} and rec.fs == 500.0
    # header values read by our splitter == hl7apy's
    msh = parsed.msh
    assert rec.source_id == hl7_source_id(msh.msh_3.to_er7(), msh.msh_4.to_er7(), msh.msh_10.to_er7())
    pid = result.oru_r01_patient.pid
    assert rec.patient_id == pid.pid_3.to_er7() == PATIENT_MARK
    assert rec.sex == pid.pid_8.to_er7() == "F"
    assert rec.birth_date.strftime("%Y%m%d") == pid.pid_7.to_er7()
    assert rec.bed == result.oru_r01_patient.oru_r01_visit.pv1.pv1_3.pl_3.to_er7() == "Bed 7"
    assert rec.device_id == waves[0].obx_18.ei_1.to_er7()


def test_decode_equals_python_hl7_on_millivolt_message():
    msg = message("ludb/data/3", unit="mV")
    rec = decode_oru(msg, sender=None)
    parsed = hl7.parse(msg.decode())
    for obx in parsed.segments("OBX"):
        if str(obx[2]) != "NA":
            continue
        lead = codes.lead_from_code(str(obx[3][0][0]), str(obx[3][0][1]))
        ref = np.array([float(v) for v in str(obx[5]).split("^")], dtype=np.float32)
        np.testing.assert_array_equal(rec.lead(lead), ref)


def test_header_fields_equal_hl7apy_segment_parse():
    msg = message(control_id="HDR-9")
    h = parse_header(msg)
    msh = parse_segment(segments(msg)[0].decode(), version="2.6")
    assert h["sending_app"] == msh.msh_3.to_er7()
    assert h["control_id"] == msh.msh_10.to_er7() == "HDR-9"
    assert h["message_type"] == "ORU^R01" and h["version"] == msh.msh_12.to_er7() == "2.6"


@pytest.mark.parametrize("name", ["ludb/data/1", "ludb/data/6", "ludb/data/90", "ptbxl/records100/00000/00593_lr"])
@pytest.mark.parametrize("unit", ["uV", "mV"])
def test_round_trip_real_recordings(name, unit):
    original = sample_record(name)
    rec = decode_oru(encode_oru(original, control_id=f"RT-{unit}", unit=unit), sender=None)
    assert rec.leads == STANDARD
    assert rec.fs == original.fs and rec.n_samples == original.n_samples
    assert_close_to_resolution(rec.signal, original.signal)
    assert (rec.patient_id, rec.sex, rec.birth_date, rec.bed, rec.device_id) == (
        original.patient_id, original.sex, original.birth_date, original.bed, original.device_id)
    assert rec.acquired_at == original.acquired_at
    assert rec.source_format == "hl7"
    assert rec.source_id == hl7_source_id("TWIWATCH-REPLAY", "TWIWATCH", f"RT-{unit}")


def test_special_characters_survive_escaping():
    original = sample_record("ludb/data/1", patient_id="A|B^C&D~E\\F", bed="ICU|3^b")
    rec = decode_oru(encode_oru(original, control_id="ESC|1^x"), sender=None)
    assert rec.patient_id == "A|B^C&D~E\\F" and rec.bed == "ICU|3^b"
    assert rec.source_id.endswith("|ESC|1^x")  # MSH-10 unescaped: the sender's control id itself


def test_raw_counts_use_configured_scale():
    msg = message()

    def strip_units(segs):
        for i in wave_indices(segs):
            segs[i] = set_field(segs[i], 6, b"")
        # a counts feed states no data range in µV either (that range would contradict a 2.5 µV count)
        segs[:] = [s for s in segs if b"MDC_ATTR_DATA_RANGE" not in s]

    counts = edit(msg, strip_units)  # the µV integers, now unit-less = raw counts
    ref = decode_oru(msg, sender=None)
    np.testing.assert_allclose(decode_oru(counts, sender=rule(0.001)).signal, ref.signal, rtol=0, atol=1e-7)
    np.testing.assert_allclose(decode_oru(counts, sender=rule(0.0025)).signal, ref.signal * 2.5, rtol=1e-6)


@pytest.mark.parametrize("unit_field, factor", [
    (b"266418^MDC_DIM_MILLI_VOLT^MDC", 1000.0), (b"MDC_DIM_MICRO_VOLT", 1.0), (b"uV^microvolt^UCUM", 1.0),
    (b"mV", 1000.0), (b"262656^MDC_DIM_DIMLESS^MDC", 1.0),
])
def test_unit_conversion(unit_field, factor):
    msg = message()

    def relabel(segs):
        for i, s in enumerate(segs):  # the waves and their data ranges: both in the same unit
            if i in wave_indices(segs) or b"MDC_ATTR_DATA_RANGE" in s:
                segs[i] = set_field(s, 6, unit_field)

    ref = decode_oru(msg, sender=None).signal.astype(np.float64)
    got = decode_oru(edit(msg, relabel), sender=rule(0.001)).signal.astype(np.float64)
    np.testing.assert_allclose(got, ref * factor, rtol=1e-6, atol=1e-7)


def _rate_obx(segs, fn):
    for i, s in enumerate(segs):
        if b"MDC_ATTR_SAMP_RATE" in s:
            segs[i] = fn(s)


@pytest.mark.parametrize("obx3, codes_cfg, ok", [
    (b"0^MDC_ATTR_SAMP_RATE^MDC", (0, 67980), True),       # what PCD-01 devices send
    (b"67980^MDC_ATTR_SAMP_RATE^MDC", (0,), True),          # mnemonic decides whatever the code
    (b"67980", (0, 67980), True),                           # bare configured code
    (b"12345", ("12345",), True),                           # vendor code from settings (string form)
    (b"0", (67980,), False),                                # bare code 0 not configured: names nothing
    (b"67980^MDC_ATTR_TIME_PD_OP_HRS^MDC", (0, 67980), False),  # another attribute's mnemonic wins
])
def test_sample_rate_attribute_matching(obx3, codes_cfg, ok):
    msg = edit(message(), lambda segs: _rate_obx(segs, lambda s: set_field(s, 3, obx3)))
    if ok:
        assert decode_oru(msg, samp_rate_codes=codes_cfg, sender=None).fs == 500.0
    else:
        with pytest.raises(DecodeError) as e:
            decode_oru(msg, samp_rate_codes=codes_cfg, sender=None)
        # an attribute named by nothing we know could be a scale: refused, not ignored
        assert e.value.code == ("unknown-attribute" if obx3 == b"0" else "sampling-rate")


def test_single_rate_obx_applies_to_all_leads():
    def keep_first_rate(segs):
        rate_rows = [i for i, s in enumerate(segs) if b"MDC_ATTR_SAMP_RATE" in s]
        for i in reversed(rate_rows[1:]):
            del segs[i]

    assert decode_oru(edit(message(), keep_first_rate), sender=None).fs == 500.0


@pytest.mark.parametrize("style", ["lead-codes", "lead-mnemonic-only", "plain-names"])
def test_lead_code_families(style):
    msg = message()

    def recode(segs):
        for i, lead in zip(wave_indices(segs), STANDARD, strict=True):
            potl, lead_code = codes.LEAD_CODES[lead]
            value = {
                "lead-codes": f"{lead_code}^MDC_ECG_LEAD_{lead.upper()}^MDC",
                "lead-mnemonic-only": f"MDC_ECG_LEAD_{lead.upper()}",
                "plain-names": f"^{lead}",
            }[style]
            segs[i] = set_field(segs[i], 3, value.encode())

    ref = decode_oru(msg, sender=None)
    got = decode_oru(edit(msg, recode), sender=None)
    assert got.leads == STANDARD
    np.testing.assert_array_equal(got.signal, ref.signal)


def test_shuffled_lead_order_gives_canonical_record():
    msg = message()
    segs = segments(msg)
    head, obx = segs[:4], segs[4:]
    groups = [obx[k:k + 3] for k in range(0, len(obx), 3)]  # wave + rate + range per lead
    rng = np.random.default_rng(7)
    order = rng.permutation(len(groups))
    shuffled = join(head + [s for g in order for s in groups[g]])
    a, b = decode_oru(msg, sender=None), decode_oru(shuffled, sender=None)
    assert b.leads == STANDARD
    np.testing.assert_array_equal(a.signal, b.signal)


@pytest.mark.parametrize("sep", [b"\n", b"\r\n"])
def test_line_endings_tolerated(sep):
    msg = message()
    assert decode_oru(msg.replace(b"\r", sep), sender=None).n_samples == 5000


def test_subset_of_leads_is_valid():
    def keep_two(segs):
        waves = wave_indices(segs)
        drop = [j for w in waves[2:] for j in (w, w + 1, w + 2)]
        for j in sorted(drop, reverse=True):
            del segs[j]

    rec = decode_oru(edit(message(), keep_two), sender=None)
    assert rec.leads == ("I", "II") and rec.absent_leads[0] == "III"


def test_non_ecg_waveforms_are_skipped_and_named():
    def add_pleth(segs):
        segs.append(b"OBX|99|NA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.1|1^2^3|262656^MDC_DIM_DIMLESS^MDC")
        # its own children go with it, even one that would be refused on an ECG lead
        segs.append(b"OBX|100|NM|0^MDC_ATTR_SCALE_SPECN_I16^MDC|1.2.1.1.1|7")

    msg = edit(message(), add_pleth)
    rec, skipped = decode_oru_detailed(msg, sender=None)
    assert rec.leads == STANDARD and skipped == ("MDC_PULS_OXIM_PLETH",)
    np.testing.assert_array_equal(rec.signal, decode_oru(message(), sender=None).signal)


# --- every refusal: (mutation, code, ack) ------------------------------------------------------------

def _waves(fn):
    def apply(msg):
        segs = segments(msg)
        fn(segs, wave_indices(segs))
        return join(segs)
    return apply


def _payload(k, fn):
    def mutate(segs, waves):
        segs[waves[k]] = set_field(segs[waves[k]], 5, fn(get_field(segs[waves[k]], 5)))
    return _waves(mutate)


def _set(seg_name, n, value):
    def apply(msg):
        segs = segments(msg)
        for i, s in enumerate(segs):
            if s.startswith(seg_name):
                segs[i] = set_field(s, n, value)
        return join(segs)
    return apply


def _drop(seg_name):
    return lambda msg: join([s for s in segments(msg) if not s.startswith(seg_name)])


def _rate(value):
    return lambda msg: edit(msg, lambda segs: _rate_obx(segs, lambda s: set_field(s, 5, value)))


def _drop_rates(msg):
    return join([s for s in segments(msg) if b"MDC_ATTR_SAMP_RATE" not in s])


def _short(msg):
    return edit(msg, lambda segs: [segs.__setitem__(i, set_field(segs[i], 5, b"^".join(
        get_field(segs[i], 5).split(b"^")[:1000]))) for i in wave_indices(segs)])


def _second_rate(msg):
    def apply(segs):
        rows = [i for i, s in enumerate(segs) if b"MDC_ATTR_SAMP_RATE" in s]
        segs[rows[3]] = set_field(segs[rows[3]], 5, b"250")
    return edit(msg, apply)


def _duplicate_lead(segs, waves):
    segs[waves[1]] = set_field(segs[waves[1]], 3, get_field(segs[waves[0]], 3))


def _unknown_lead(segs, waves):
    segs[waves[0]] = set_field(segs[waves[0]], 3, b"999999^MDC_ECG_ELEC_POTL_BOGUS^MDC")


def _conflicting_lead(segs, waves):
    segs[waves[0]] = set_field(segs[waves[0]], 3, b"131329^MDC_ECG_ELEC_POTL_II^MDC")


def _cut_in_rate_code(msg):
    # a message cut inside the last lead's rate OBX-3: the other leads carry their own rate, V6 has none
    segs = segments(msg)
    last = max(i for i, s in enumerate(segs) if b"MDC_ATTR_SAMP_RATE" in s)
    return b"\r".join(segs[:last]) + b"\r" + segs[last][:20]


ERROR_CASES = [
    ("empty", lambda m: b"", "not-hl7", "AR"),
    ("not-hl7", lambda m: b"this is not an HL7 message\r", "not-hl7", "AR"),
    ("json", lambda m: b'{"resourceType": "Observation"}', "not-hl7", "AR"),
    ("msh-delimiters", lambda m: b"MSH|^^\\&|A|B|C|D|20240101||ORU^R01|1|P|2.6\r", "msh", "AR"),
    ("msh-too-short", lambda m: b"MSH|^~\r", "msh", "AR"),
    ("no-message-type", _set(b"MSH", 8, b""), "msh", "AR"),  # field 8 of the split = MSH-9
    ("no-control-id", _set(b"MSH", 9, b""), "msh", "AR"),
    ("null-control-id", _set(b"MSH", 9, b'""'), "msh", "AR"),  # every such message would share one report id
    ("adt", _set(b"MSH", 8, b"ADT^A01^ADT_A01"), "message-type", "AR"),
    ("oru-w01", _set(b"MSH", 8, b"ORU^W01"), "message-type", "AR"),
    ("oru-r30", _set(b"MSH", 8, b"ORU^R30"), "event", "AR"),
    ("non-utf8", lambda m: m.replace(b"PID|", b"PID|\xff\xfe", 1), "encoding", "AE"),
    ("truncated-half", lambda m: m[: len(m) // 2], "truncated", "AE"),
    ("truncated-after-digit", lambda m: m[: m.index(b"^", len(m) // 2) - 1], "truncated", "AE"),
    ("truncated-after-separator", lambda m: m[: m.index(b"^", len(m) // 2) + 1], "truncated", "AE"),
    ("truncated-in-rate", _cut_in_rate_code, "sampling-rate", "AE"),
    ("missing-obr", _drop(b"OBR"), "structure", "AE"),
    ("no-obr-no-obx", lambda m: join(segments(m)[:3]), "structure", "AE"),
    ("no-waveform", _drop(b"OBX"), "no-waveform", "AE"),
    ("bad-segment", lambda m: m.replace(b"PV1|", b"pv1|", 1), "structure", "AE"),
    ("second-msh", lambda m: m + segments(m)[0] + b"\r", "structure", "AE"),
    ("non-numeric", _payload(0, lambda p: p.replace(b"^", b"^abc^", 1)), "samples", "AE"),
    ("empty-sample", _payload(0, lambda p: p.replace(b"^", b"^^", 1)), "samples", "AE"),
    ("empty-payload", _payload(2, lambda p: b""), "samples", "AE"),
    ("nan", _payload(1, lambda p: p.replace(b"^", b"^NaN^", 1)), "non-finite", "AE"),
    ("inf", _payload(2, lambda p: b"inf^" + p), "non-finite", "AE"),
    ("unequal-lengths", _payload(0, lambda p: b"^".join(p.split(b"^")[:-100])), "lead-lengths", "AE"),
    ("unknown-lead", _waves(_unknown_lead), "unknown-lead", "AE"),
    ("conflicting-lead", _waves(_conflicting_lead), "unknown-lead", "AE"),
    ("duplicate-lead", _waves(_duplicate_lead), "duplicate-lead", "AE"),
    ("bad-unit", _set(b"OBX|1|", 6, b"266016^MDC_DIM_MMHG^MDC"), "unit", "AE"),
    ("unit-code-text-conflict", _set(b"OBX|1|", 6, b"266418^MDC_DIM_MICRO_VOLT^MDC"), "unit", "AE"),
    ("no-unit-decimals", lambda m: _payload(0, lambda p: p.replace(b"^", b".5^", 1))(_set(b"OBX|1|", 6, b"")(m)),
     "no-scale", "AE"),  # no unit and no sender rule: the scale is unknown
    ("superscript-lead-code", _set(b"OBX|1|", 3, "131329\u00b2^^MDC".encode()), "unknown-lead", "AE"),
    ("multiplexed", _set(b"OBX|1|", 2, b"MA"), "unsupported-value-type", "AE"),
    ("no-rate", _drop_rates, "sampling-rate", "AE"),
    ("rate-zero", _rate(b"0"), "sampling-rate", "AE"),
    ("rate-negative", _rate(b"-500"), "sampling-rate", "AE"),
    ("rate-absurd", _rate(b"5000000"), "sampling-rate", "AE"),
    ("rate-text", _rate(b"fast"), "sampling-rate", "AE"),
    ("rate-unit", lambda m: edit(m, lambda segs: _rate_obx(segs, lambda s: set_field(s, 6, b"264320^MDC_DIM_SEC"))),
     "sampling-rate", "AE"),
    ("rates-differ", _second_rate, "sampling-rate", "AE"),
    ("too-short", _short, "too-short", "AE"),
    ("bad-msh-time", _set(b"MSH", 6, b"2024-01-01"), "timestamp", "AE"),
    ("bad-birth-date", _set(b"PID", 7, b"19611399"), "timestamp", "AE"),
]


@pytest.fixture(scope="module")
def good_message() -> bytes:
    return message("ludb/data/1", control_id="ERR-1")


@pytest.mark.parametrize("name, mutate, code, ack", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_refusals(good_message, name, mutate, code, ack):
    bad = mutate(good_message)
    with pytest.raises(DecodeError) as e:
        decode_oru(bad, sender=None)
    err = e.value
    assert (err.code, err.ack_code) == (code, ack), err.reason
    assert err.reason and PATIENT_MARK not in err.reason and "1961" not in err.reason
    # the ACK can always be built, with the reason in MSA-3 and ERR
    try:
        header = parse_header(bad)
    except DecodeError:
        header = None
    parsed = hl7.parse(make_ack(header, err.ack_code, err.reason, decode_code=err.code).decode())
    assert str(parsed.segment("MSA")[1]) == ack


def test_non_utf8_reason_gives_offset(good_message):
    bad = good_message.replace(b"PID|", b"PID|\xff", 1)
    offset = bad.index(b"\xff")
    with pytest.raises(DecodeError, match=f"offset {offset}$"):
        decode_oru(bad, sender=None)


def test_latin1_declared_in_msh18_is_accepted(good_message):
    msg = edit(good_message, lambda segs: segs.__setitem__(0, set_field(segs[0], 17, b"8859/1")))
    msg = msg.replace(b"Bed 7", "Bett Süd".encode("latin-1"))
    assert decode_oru(msg, sender=None).bed == "Bett Süd"


def test_parse_header_survives_a_broken_body(good_message):
    for bad in (good_message[:300], good_message.replace(b"PID|", b"PID|\xff", 1),
                good_message.replace(b"OBR", b"XXX")):
        h = parse_header(bad)
        assert h["control_id"] == "ERR-1" and h["message_type"] == "ORU^R01" and h["version"] == "2.6"
        assert h["sending_app"] == "TWIWATCH-REPLAY"


# --- ACKs ----------------------------------------------------------------------------------------------

def test_ack_accept_structure(good_message):
    parsed = hl7.parse(make_ack(parse_header(good_message), "AA").decode())
    assert [str(s[0]) for s in parsed] == ["MSH", "MSA"]
    msh, msa = parsed.segment("MSH"), parsed.segment("MSA")
    assert str(msh[9]) == "ACK^R01^ACK"
    assert str(msh[5]) == "TWIWATCH-REPLAY" and str(msh[6]) == "TWIWATCH"  # echoed sender
    assert len(str(msh[10])) <= 20 and str(msh[12]) == "2.6"
    assert str(msa[1]) == "AA" and str(msa[2]) == "ERR-1"


def test_ack_error_structure(good_message):
    reason = "lead V2: sample 17 is not a number"
    parsed = hl7.parse(make_ack(parse_header(good_message), "AE", reason, decode_code="samples").decode())
    msa, err = parsed.segment("MSA"), parsed.segment("ERR")
    assert (str(msa[1]), str(msa[2]), str(msa[3])) == ("AE", "ERR-1", reason)
    assert str(err[3][0][0]) == "102" and str(err[3][0][2]) == "HL70357"
    assert str(err[4]) == "E" and str(err[8]) == reason


@pytest.mark.parametrize("decode_code, hl7_code", [
    ("structure", "100"), ("msh", "101"), ("samples", "102"), ("unknown-lead", "103"),
    ("message-type", "200"), ("event", "201"), ("too-large", "207"), (None, "207"),
])
def test_ack_error_codes(decode_code, hl7_code):
    parsed = hl7.parse(make_ack(None, "AR", "x", decode_code=decode_code).decode())
    assert str(parsed.segment("ERR")[3][0][0]) == hl7_code


def test_ack_without_readable_msh_has_empty_msa2():
    text = make_ack(None, "AR", "not an HL7 v2 message").decode()
    parsed = hl7.parse(text)
    msa = parsed.segment("MSA")
    assert str(msa[1]) == "AR" and str(msa[2]) == "" and str(msa[3]) == "not an HL7 v2 message"
    assert "\rMSA|AR||" in text


def test_ack_reason_is_one_line_and_msa3_bounded():
    long_reason = "bad\r" + "x" * 300
    parsed = hl7.parse(make_ack(None, "AE", long_reason).decode())
    assert len(parsed.segments("MSA")) == 1 and len(str(parsed.segment("MSA")[3])) == 80


# --- the NA parser ------------------------------------------------------------------------------------

def test_na_parser_equals_float_on_random_decimals():
    rng = np.random.default_rng(3)
    values = rng.standard_normal(5000) * 3
    texts = [f"{v:.4f}" for v in values] + ["-.5", "5.", "+3", "-0", "007", "123456789012345"]
    got = parse_na("^".join(texts).encode())
    ref = np.array([float(t) for t in texts])
    assert np.array_equal(got, ref) and np.array_equal(np.signbit(got), np.signbit(ref))
    slow = [repr(float(v)) for v in values[:200]] + ["1e-3", " 2 "]  # exponents, blanks: the fallback path
    assert np.array_equal(parse_na("^".join(slow).encode()), np.array([float(t) for t in slow]))


def test_na_parser_integer_counts_equal_int():
    """Integer counts take numpy's text reader; what it reads differently from int() (a lone sign, an empty last
    sample, values past 2**53 or int64) must give int()'s values or the error naming the sample."""
    rng = np.random.default_rng(5)
    tokens = [b"", b"-", b"0", b"-0", b"007", b"-345", b"1-2", b"9" * 16, b"-" + b"9" * 17, b"9" * 20,
              b"9007199254740993", b"9223372036854775808"]
    for _ in range(2000):
        payload = b"^".join(tokens[i] for i in rng.integers(0, len(tokens), rng.integers(1, 7)))
        try:
            ref = np.array([float(int(t)) for t in payload.split(b"^")])
        except ValueError:
            with pytest.raises(SampleError):
                parse_na(payload)
            continue
        assert np.array_equal(parse_na(payload), ref), payload
    counts = rng.integers(-5000, 5000, 250)
    assert np.array_equal(parse_na(b"^".join(b"%d" % c for c in counts)), counts.astype(np.float64))


@pytest.mark.parametrize("payload, index", [(b"1^^2", 1), (b"1^2^", 2), (b"1^x^3", 1), (b"1^-^3", 1),
                                            (b"1.2.3", 0), (b"", 0), (b"1-2", 0)])
def test_na_parser_errors(payload, index):
    with pytest.raises(SampleError) as e:
        parse_na(payload)
    assert e.value.index == index


def test_hl7_times_without_an_offset_take_the_configured_site_zone():
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from integrations.decode import decode_message
    from integrations.senders import NO_RULES

    record = sample_record("ludb/data/1").replace(acquired_at=datetime(2024, 1, 15, 10, 30))  # no zone
    msg = encode_oru(record, control_id="CTRL-TZ")
    assert b"20240115103000|" in msg or b"20240115103000^" in msg or b"20240115103000\r" in msg
    utc = decode_message(msg, "hl7", NO_RULES, assume_tz=UTC).acquired_at
    berlin = decode_message(msg, "hl7", NO_RULES, assume_tz=ZoneInfo("Europe/Berlin")).acquired_at
    assert utc.tzinfo is not None and berlin.tzinfo is not None  # FHIR needs a zone on every time
    assert utc.replace(tzinfo=None) == berlin.replace(tzinfo=None)  # the same wall-clock time ...
    assert utc - berlin == berlin.utcoffset() != timedelta(0)  # ... read in the site's zone


def test_prior_order_is_by_instant_not_by_text():
    from datetime import timedelta

    from engine.record import iso_utc

    early = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))  # 08:00 UTC
    late = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    assert iso_utc(early) < iso_utc(late)


@pytest.mark.parametrize("pid3, system", [
    (b"123456^^^HOSP-A^MR", "HOSP-A"),
    (b"123456^^^&1.2.840.99&ISO^MR", "urn:oid:1.2.840.99"),
    (b"123456", ""),
])
def test_pid3_assigning_authority_names_the_identifier_system(pid3, system):
    from integrations.fhir.context import patient_reference
    from integrations.identity import patient_key

    msg = edit(message(), lambda segs: [segs.__setitem__(i, set_field(s, 3, pid3))
                                        for i, s in enumerate(segs) if s.startswith(b"PID|")])
    rec = decode_oru(msg, sender=None)
    assert (rec.patient_id, rec.patient_system) == ("123456", system)
    # an MRN is never sent to the EHR as a literal Patient/<id> reference
    want = {"system": system, "value": "123456"} if system else {"value": "123456"}
    assert patient_reference(rec.patient_id, rec.patient_system) == {"type": "Patient", "identifier": want}
    again = decode_oru(encode_oru(rec, control_id="RT"), sender=None)  # the authority survives our own encoder
    assert (again.patient_id, again.patient_system) == ("123456", system)
    # the same MRN from another issuer, or as a FHIR logical id, is another patient
    key = patient_key(rec.patient_id, "s", system=rec.patient_system)
    assert key != patient_key("123456", "s", system="OTHER-HOSP") and key != patient_key("123456", "s")


def test_unit_less_decimals_are_millivolts_only_where_the_site_says_so():
    mv = edit(message(unit="mV"), lambda segs: [segs.__setitem__(i, set_field(segs[i], 6, b""))
                                                 for i in wave_indices(segs)])
    with pytest.raises(DecodeError) as e:
        decode_oru(mv, sender=None)  # no unit, no resolution, no sender rule: no scale (no global default)
    assert e.value.code == "no-scale"
    with pytest.raises(DecodeError, match="not integer counts"):
        decode_oru(mv, sender=rule(0.001))  # decimals cannot be counts
    as_mv = decode_oru(message(unit="mV"), sender=None).signal
    np.testing.assert_allclose(decode_oru(mv, sender=rule(1.0)).signal, as_mv, atol=1e-6)
