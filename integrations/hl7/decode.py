"""HL7 v2 ORU^R01 (IHE PCD-01 style) bytes → EcgRecord, as a pure function (docs/SPEC.md §2, §10).

Errors are DecodeError with a machine `code`, a readable reason that never quotes patient data, and the HL7
answer an MLLP edge gives: AR for what is refused outright (not HL7, unreadable MSH, unsupported message type),
AE for content that cannot be used (samples, leads, rates, structure).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.errors import InvalidRecord
from engine.record import STANDARD_LEADS, EcgRecord, make_record
from integrations.errors import DecodeError
from integrations.hl7 import codes, er7
from integrations.hl7.numarray import SampleError, parse_na
from integrations.identity import hl7_source_id

SUPPORTED_TYPE = ("ORU", "R01")
DEFAULT_COUNTS_SCALE_MV = 0.001
_BOM = b"\xef\xbb\xbf"
_MAX_ECHO = 40  # codes and types quoted in reasons are clipped: a reason is not a place for arbitrary input


def _clip(s: str) -> str:
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= _MAX_ECHO else s[:_MAX_ECHO] + "…"


def parse_header(data: bytes) -> dict[str, Any]:
    """The MSH fields an ACK needs, readable even when the body is broken.

    Keys: field_sep, encoding_chars, sending_app, sending_facility, receiving_app, receiving_facility, time,
    message_type (e.g. "ORU^R01"), message_code, trigger_event, message_structure, control_id, processing_id,
    version, charset. Values are strings ('' when absent). Raises DecodeError(AR) when the bytes are not HL7
    (no leading MSH) or the MSH delimiters are unreadable.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data.strip():
        raise DecodeError("empty message", "not-hl7", "AR")
    if not data.startswith(b"MSH"):
        raise DecodeError("not an HL7 v2 message: it does not start with an MSH segment", "not-hl7", "AR")
    cut = min((i for i in (data.find(b"\r"), data.find(b"\n")) if i != -1), default=len(data))
    first = data[:cut]
    d = er7.read_delimiters(first)
    parts = er7.fields(first, d.field.encode("latin-1"))
    charset = er7.text(er7.field(parts, 18), d, "latin-1").strip()
    try:
        first.decode("utf-8")
        enc = "utf-8"
    except UnicodeDecodeError:
        enc = "latin-1"  # only to echo the header in the NAK; the body check reports the bad bytes

    def raw(n: int) -> str:
        return er7.field(parts, n).decode(enc)

    msh9 = er7.components(er7.field(parts, 9), d, enc)
    msh9 += [""] * (3 - len(msh9))
    return {
        "field_sep": d.field,
        "encoding_chars": d.msh2,
        "sending_app": raw(3),
        "sending_facility": raw(4),
        "receiving_app": raw(5),
        "receiving_facility": raw(6),
        "time": raw(7),
        "message_type": f"{msh9[0]}^{msh9[1]}".strip("^"),
        "message_code": msh9[0].strip(),
        "trigger_event": msh9[1].strip(),
        "message_structure": msh9[2].strip(),
        "control_id": er7.text(er7.field(parts, 10), d, enc).strip(),
        "processing_id": er7.component(er7.field(parts, 11), 1, d, enc).strip(),
        "version": er7.component(er7.field(parts, 12), 1, d, enc).strip(),
        "charset": charset,
    }


def check_supported(header: dict[str, Any]) -> None:
    """Refuse (AR) what this decoder does not take: wrong message type, or no control id to answer to."""
    code, event = header["message_code"].upper(), header["trigger_event"].upper()
    if not code:
        raise DecodeError("MSH-9 message type is missing", "msh", "AR")
    if (code, event) == ("ORU", "W01"):
        raise DecodeError("ORU^W01 (classic v2 waveform form) is not supported; send ORU^R01 (IHE PCD-01)",
                          "message-type", "AR")
    if code != SUPPORTED_TYPE[0]:
        raise DecodeError(f"unsupported message type {_clip(header['message_type'])} (only ORU^R01)",
                          "message-type", "AR")
    if event != SUPPORTED_TYPE[1]:
        raise DecodeError(f"unsupported trigger event {_clip(header['message_type'])} (only ORU^R01)", "event", "AR")
    if not header["control_id"] or header["control_id"] == '""':  # "" is HL7's explicit null
        raise DecodeError("MSH-10 message control id is missing", "msh", "AR")


@dataclass
class _Wave:
    lead: str
    samples: np.ndarray
    sub_id: str
    obr: int
    segment: int
    device: str
    time: str


def decode_oru(
    data: bytes,
    *,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    counts_scale_mv: float = DEFAULT_COUNTS_SCALE_MV,
    assume_tz: tzinfo | None = None,
    skip_unknown_waveforms: bool = False,
) -> EcgRecord:
    """Decode one ORU^R01 into an EcgRecord (mV, canonical lead order, the message's own sampling rate).

    samp_rate_codes: OBX-3 codes (ints or digit strings) accepted for the sample-rate attribute when OBX-3 has
        no mnemonic; the mnemonic MDC_ATTR_SAMP_RATE is always accepted.
    counts_scale_mv: mV per raw count for waveforms whose OBX-6 gives no unit.
    assume_tz: zone for timestamps that carry no offset (else they stay naive: the sender's local time).
    skip_unknown_waveforms: ignore NA OBXs that are not a standard ECG lead (e.g. pleth) instead of refusing.
    """
    header = parse_header(data)
    check_supported(header)
    rate_codes = _rate_codes(samp_rate_codes)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    charset = _body_charset(header["charset"], data)
    d = er7.Delimiters(header["field_sep"], *header["encoding_chars"][:4])
    fs = d.field.encode("latin-1")
    comp = d.component.encode("latin-1")
    msh_time = er7.parse_dtm(header["time"], "MSH-7 message time", assume_tz)

    pid: list[bytes] | None = None
    pv1: list[bytes] | None = None
    obr: list[bytes] | None = None
    n_obr = 0
    waves: list[_Wave] = []
    rates: list[tuple[int, str, float]] = []  # (segment index, OBX-4 sub-id, value)
    segs = er7.split_segments(data)
    # A message cut in transit ends inside its last segment, without the segment terminator.
    cut_at = len(segs) - 1 if not data.endswith((b"\r", b"\n")) else -1
    for i, seg in enumerate(segs):
        name = er7.segment_name(seg, fs)
        if name is None:
            raise DecodeError(f"segment {i + 1} does not start with a segment name", "structure", "AE")
        if name == "MSH":
            if i:
                raise DecodeError("more than one MSH: batches and concatenated messages are not supported",
                                  "structure", "AE")
        elif name == "PID":
            pid = pid or er7.fields(seg, fs)
        elif name == "PV1":
            pv1 = pv1 or er7.fields(seg, fs)
        elif name == "OBR":
            n_obr += 1
            obr = obr or er7.fields(seg, fs)
        elif name == "OBX":
            if not n_obr:
                raise DecodeError(f"OBX (segment {i + 1}) comes before any OBR", "structure", "AE")
            f = er7.fields(seg, fs)
            try:
                _read_obx(f, i, n_obr, d, charset, comp, rate_codes, counts_scale_mv, skip_unknown_waveforms,
                          waves, rates)
            except DecodeError as e:
                if i == cut_at and e.code == "samples":
                    raise _truncated(f"its last segment (OBX {i + 1}) ends inside a sample array") from None
                raise

    if not n_obr:
        raise DecodeError("no OBR segment: the message holds no observation request", "structure", "AE")
    if not waves:
        raise DecodeError("no waveform OBX (value type NA with an ECG lead code) in the message", "no-waveform", "AE")
    if len({w.obr for w in waves}) > 1:
        raise DecodeError("waveforms under more than one OBR: one ECG per message expected", "structure", "AE")
    lengths = {w.samples.size for w in waves}
    if len(lengths) > 1 and waves[-1].segment == cut_at and waves[-1].samples.size < max(lengths):
        raise _truncated(f"lead {waves[-1].lead} in its last segment has {waves[-1].samples.size} of "
                         f"{max(lengths)} samples")
    if len(lengths) > 1:
        sizes = [w.samples.size for w in waves]
        usual = max(set(sizes), key=sizes.count)
        odd = [w for w in waves if w.samples.size != usual]
        detail = ", ".join(f"{w.lead}: {w.samples.size}" for w in odd) + f", the other leads: {usual}"
        raise DecodeError(f"leads have unequal lengths ({detail} samples); the message may be truncated",
                          "lead-lengths", "AE")
    fs_hz = _sampling_rate(waves, rates)

    order = sorted(waves, key=lambda w: STANDARD_LEADS.index(w.lead))
    signal = np.vstack([w.samples for w in order])
    first = min(waves, key=lambda w: w.segment)
    acquired = None
    if obr is not None:
        acquired = er7.parse_dtm(er7.text(er7.field(obr, 7), d, charset), "OBR-7 observation time", assume_tz)
    if acquired is None:
        acquired = er7.parse_dtm(first.time, "OBX-14 observation time", assume_tz) or msh_time
    meta = _patient_meta(pid, pv1, d, charset)
    try:
        return make_record(
            signal,
            [w.lead for w in order],
            fs_hz,
            hl7_source_id(header["sending_app"], header["sending_facility"], header["control_id"]),
            acquired_at=acquired,
            device_id=first.device or None,
            source_format="hl7",
            **meta,
        )
    except DecodeError:
        raise
    except InvalidRecord as e:
        raise DecodeError(e.reason, e.code, "AE") from None


def _truncated(detail: str) -> DecodeError:
    return DecodeError(f"message truncated: {detail} and no segment terminator follows", "truncated", "AE")


def _rate_codes(values: Iterable[int | str]) -> frozenset[int]:
    try:
        return frozenset(int(str(v).strip()) for v in values if str(v).strip())
    except ValueError:
        raise ValueError("samp_rate_codes must be integers (MDC codes)") from None


def _body_charset(declared: str, data: bytes) -> str:
    """UTF-8 unless MSH-18 declares ISO 8859-1; bytes that do not decode are refused with their offset."""
    charset = "latin-1" if declared.upper().replace(" ", "") in ("8859/1", "ISO-8859-1", "ISOIR100") else "utf-8"
    if charset == "utf-8" and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"non-UTF-8 bytes at offset {e.start}", "encoding", "AE") from None
    return charset


def _read_obx(
    f: list[bytes], i: int, obr_no: int, d: er7.Delimiters, charset: str, comp: bytes,
    samp_rate_codes: frozenset[int], counts_scale_mv: float, skip_unknown: bool,
    waves: list[_Wave], rates: list[tuple[int, str, float]],
) -> None:
    """One OBX: a waveform (NA) is appended to `waves`, a sample-rate attribute to `rates`; others are ignored."""
    vtype = er7.text(er7.field(f, 2), d, charset).strip().upper()
    obs = er7.components(er7.field(f, 3), d, charset)
    ident, label = (obs + ["", ""])[:2]
    sub_id = er7.text(er7.field(f, 4), d, charset).strip()
    if vtype == "NA":
        try:
            lead = codes.lead_from_code(ident, label)
        except codes.LeadConflict as e:
            raise DecodeError(str(e), "unknown-lead", "AE") from None
        if lead is None:
            if skip_unknown:
                return
            raise DecodeError(f"unknown lead code {_clip(ident)}^{_clip(label)} in OBX (segment {i + 1})",
                              "unknown-lead", "AE")
        dup = next((w for w in waves if w.lead == lead), None)
        if dup is not None:
            raise DecodeError(f"lead {lead} appears twice (segments {dup.segment + 1} and {i + 1})",
                              "duplicate-lead", "AE")
        units = er7.components(er7.field(f, 6), d, charset)
        ucode, utext = (units + ["", ""])[:2]
        try:
            scale = codes.mv_per_unit(ucode, utext, counts_scale_mv)
        except codes.UnknownUnit:
            raise DecodeError(f"lead {lead}: unit {_clip(ucode or utext)} is not a voltage unit",
                              "unit", "AE") from None
        try:
            samples = parse_na(er7.field(f, 5), comp)
        except SampleError as e:
            raise DecodeError(f"lead {lead}: {e}", "samples", "AE") from None
        if not np.isfinite(samples).all():
            bad = int(np.flatnonzero(~np.isfinite(samples))[0])
            raise DecodeError(f"lead {lead}: sample {bad + 1} is not finite (NaN/inf)", "non-finite", "AE")
        if codes.is_counts(ucode, utext) and counts_scale_mv != 1.0 and not np.array_equal(samples, np.round(samples)):
            # Decimals are a voltage, not ADC counts: scaling them as counts would shrink the signal 1000-fold
            # (a site whose unit-less values are millivolts sets TWIWATCH_HL7_COUNTS_SCALE_MV=1).
            raise DecodeError(f"lead {lead}: OBX-6 gives no unit and the samples are not integer counts; send the "
                              "unit (mV or uV)", "unit", "AE")
        if scale != 1.0:
            samples = samples * scale
        equipment = er7.components(er7.field(f, 18), d, charset)
        device = equipment[0] or (equipment[2] if len(equipment) > 2 else "")
        waves.append(_Wave(lead, samples, sub_id, obr_no, i, device.strip(),
                           er7.text(er7.field(f, 14), d, charset)))
    elif vtype == "MA":
        raise DecodeError("OBX value type MA (multiplexed array) is not supported; send one NA OBX per lead",
                          "unsupported-value-type", "AE")
    elif codes.is_samp_rate(ident, label, samp_rate_codes):
        value = er7.text(er7.field(f, 5), d, charset).strip()
        units = er7.components(er7.field(f, 6), d, charset)
        ucode, utext = (units + ["", ""])[:2]
        try:
            rate = float(value)
        except ValueError:
            raise DecodeError(f"sampling rate in segment {i + 1} is missing or not a number", "sampling-rate",
                              "AE") from None
        if not codes.is_per_second(ucode, utext):
            raise DecodeError(f"sampling rate unit {_clip(ucode or utext)} is not per second", "sampling-rate", "AE")
        rates.append((i, sub_id, rate))


def _sampling_rate(waves: list[_Wave], rates: list[tuple[int, str, float]]) -> float:
    """One rate for the record. A rate OBX belongs to the lead whose OBX-4 is its parent containment path
    (1.1.1.1001.1 → 1.1.1.1001), else to the lead just before it; all leads must share one rate."""
    by_sub = {w.sub_id: w for w in waves if w.sub_id}
    per_lead: dict[str, float] = {}
    loose: list[float] = []
    for seg, sub_id, rate in rates:
        parent = sub_id.rsplit(".", 1)[0] if "." in sub_id else None
        owner = by_sub.get(parent) if parent else None
        owner = owner or by_sub.get(sub_id)
        if owner is None:
            before = [w for w in waves if w.segment < seg]
            owner = before[-1] if before else None
        if owner is None:
            loose.append(rate)
        else:
            per_lead[owner.lead] = rate
    if len(per_lead) > 1 and len(per_lead) < len(waves):
        # Rates come per lead, yet some lead has none: its rate OBX is missing, the usual sign of a cut message.
        missing = ", ".join(w.lead for w in waves if w.lead not in per_lead)
        raise DecodeError(f"no sampling rate for lead(s) {missing} while the other leads have one; "
                          "the message may be truncated", "sampling-rate", "AE")
    values = sorted(set(per_lead.values()) | set(loose))
    if not values:
        raise DecodeError("no sampling rate: no MDC_ATTR_SAMP_RATE child OBX for the waveforms", "sampling-rate", "AE")
    if len(values) > 1:
        listed = ", ".join(f"{v:g}" for v in values)
        raise DecodeError(f"leads sampled at different rates ({listed} /s) are not supported", "sampling-rate", "AE")
    rate = values[0]
    if not np.isfinite(rate) or rate <= 0:
        raise DecodeError(f"sampling rate {rate:g} /s is not positive", "sampling-rate", "AE")
    return rate


def _assigning_authority(hd: str, d: er7.Delimiters) -> str:
    """PID-3.4 (HD: namespace id & universal id & its type) as an identifier system: urn:oid:... for an ISO
    universal id, else the namespace id, else "" (an MRN whose issuer the sender did not name)."""
    namespace, universal, kind = ([p.strip() for p in hd.split(d.subcomponent)] + ["", "", ""])[:3]
    if universal and kind.upper() == "ISO":
        return "urn:oid:" + universal
    return namespace or universal


def _patient_meta(pid: list[bytes] | None, pv1: list[bytes] | None, d: er7.Delimiters,
                  charset: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"patient_id": None, "patient_system": None, "sex": None, "birth_date": None, "bed": None}
    if pid is not None:
        meta["patient_id"] = er7.component(er7.field(pid, 3), 1, d, charset).strip() or None
        if meta["patient_id"]:
            meta["patient_system"] = _assigning_authority(er7.component(er7.field(pid, 3), 4, d, charset), d)
        sex = er7.text(er7.field(pid, 8), d, charset).strip().upper()
        meta["sex"] = sex if sex in ("M", "F") else None
        meta["birth_date"] = er7.parse_birth_date(er7.text(er7.field(pid, 7), d, charset))
    if pv1 is not None:
        meta["bed"] = er7.component(er7.field(pv1, 3), 3, d, charset).strip() or None
    return meta
