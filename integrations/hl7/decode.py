"""HL7 v2 ORU^R01 (IHE PCD-01 style) bytes → EcgRecord (a strip) or a PCD-01 chunk, pure functions
(docs/SPEC.md §2, §10, §11). The OBX walk and the scale rule live in pcd01.py; this module holds the header,
the message-type check and the two entry points.

Errors are DecodeError with a machine `code`, a readable reason that never quotes patient data, and the HL7
answer an MLLP edge gives: AR for what is refused outright (not HL7, unreadable MSH, unsupported message type),
AE for content that cannot be used (samples, leads, rates, structure).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from engine.errors import InvalidRecord
from engine.record import EcgRecord, make_record
from integrations.chunk import Chunk
from integrations.errors import DecodeError
from integrations.hl7 import codes, er7
from integrations.hl7.pcd01 import Parts, ScannedOru, assemble, scan_oru
from integrations.identity import hl7_source_id
from integrations.senders import SenderRule

SUPPORTED_TYPE = ("ORU", "R01")
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
    """Refuse (AR) what this decoder does not take: wrong message type, or no control id to answer to.
    ORU^W01 has its own decoder (w01.py); integrations.decode.decode_message routes it there."""
    code, event = header["message_code"].upper(), header["trigger_event"].upper()
    if not code:
        raise DecodeError("MSH-9 message type is missing", "msh", "AR")
    if (code, event) == ("ORU", "W01"):
        raise DecodeError("ORU^W01 (classic v2 waveform form) goes to the W01 decoder, not the ORU^R01 one",
                          "message-type", "AR")
    if code != SUPPORTED_TYPE[0]:
        raise DecodeError(f"unsupported message type {_clip(header['message_type'])} (only ORU^R01)",
                          "message-type", "AR")
    if event != SUPPORTED_TYPE[1]:
        raise DecodeError(f"unsupported trigger event {_clip(header['message_type'])} (only ORU^R01)", "event", "AR")
    check_control_id(header)


def check_control_id(header: dict[str, Any]) -> None:
    if not header["control_id"] or header["control_id"] == '""':  # "" is HL7's explicit null
        raise DecodeError("MSH-10 message control id is missing", "msh", "AR")


def decode_oru(
    data: bytes,
    *,
    sender: SenderRule | None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    assume_tz: tzinfo | None = None,
) -> EcgRecord:
    """Decode one ORU^R01 as a strip: an EcgRecord (mV, canonical lead order, the message's own sampling rate).

    sender: the sender's rule (integrations.senders) or None. Its `mv_per_count` scales waveforms whose message
        states no scale (no OBX-6 unit, no MDC_ATTR_NU_MSMT_RES child); without it such a waveform is a dead letter.
        There is no global default: a 20x scale error hides every T-wave inversion (docs/SPEC.md §11).
    samp_rate_codes: OBX-3 codes (ints or digit strings) accepted for the sample-rate attribute when OBX-3 has
        no mnemonic; the mnemonic MDC_ATTR_SAMP_RATE is always accepted.
    assume_tz: zone for timestamps that carry no offset (else they stay naive: the sender's local time).
    Non-ECG waveforms (pleth, ABP, respiration) are skipped; decode_oru_detailed names them.
    """
    return decode_oru_detailed(data, sender=sender, samp_rate_codes=samp_rate_codes, assume_tz=assume_tz)[0]


def decode_oru_detailed(
    data: bytes,
    *,
    sender: SenderRule | None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    assume_tz: tzinfo | None = None,
) -> tuple[EcgRecord, tuple[str, ...]]:
    """decode_oru, plus the names of the non-ECG signals it skipped."""
    scanned = _scan(data, samp_rate_codes, assume_tz)
    parts = assemble(scanned, sender)
    return _record(scanned, parts, sender, "strip"), parts.skipped


def decode_pcd01_chunk(
    data: bytes,
    *,
    sender: SenderRule | None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    assume_tz: tzinfo | None = None,
) -> Chunk:
    """One PCD-01 gateway chunk (typically 1 s of one bed): the same wire form as a strip, the chunk rules of
    docs/SPEC.md §11 (no minimum duration; monitoring leads alone are enough). Non-ECG signals are skipped and
    named; a message that carries none but them gives a Chunk without segments."""
    scanned = _scan(data, samp_rate_codes, assume_tz)
    parts = assemble(scanned, sender, allow_no_ecg=True)
    header = scanned.header
    sender_id = f"hl7:{header['sending_app']}|{header['sending_facility']}"
    bed = scanned.bed_components
    segments = (_record(scanned, parts, sender, "chunk"),) if parts.leads else ()
    return Chunk(
        segments=segments,
        skipped=parts.skipped,
        sender=sender_id,
        device_id=parts.device or None,
        bed=bed,
        source_id=hl7_source_id(header["sending_app"], header["sending_facility"], header["control_id"]),
    )


def _scan(data: bytes, samp_rate_codes: Iterable[int | str], assume_tz: tzinfo | None,
          header: dict[str, Any] | None = None) -> ScannedOru:
    header = header or parse_header(data)
    check_supported(header)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    charset = _body_charset(header["charset"], data)
    return scan_oru(data, header, charset, _rate_codes(samp_rate_codes), assume_tz)


def _record(scanned: ScannedOru, parts: Parts, sender: SenderRule | None, kind: str) -> EcgRecord:
    d, charset = scanned.delimiters, scanned.charset
    obr_time = None
    if scanned.obr is not None:
        obr_time = er7.parse_dtm(er7.text(er7.field(scanned.obr, 7), d, charset), "OBR-7 observation time",
                                 scanned.assume_tz)
    # A chunk's first sample is the NA OBX's own OBX-14 where sent (gateways stamp each signal), else OBR-7;
    # a strip keeps OBR-7 (the ECG's start) first.
    times = (parts.first_time, obr_time) if kind == "chunk" else (obr_time, parts.first_time)
    acquired = times[0] or times[1] or scanned.msh_time
    meta = _patient_meta(scanned.pid, scanned.pv1, d, charset, sender.bed_component if sender else 3)
    header = scanned.header
    try:
        return make_record(
            parts.signal,
            list(parts.leads),
            parts.fs,
            hl7_source_id(header["sending_app"], header["sending_facility"], header["control_id"]),
            flagged=parts.flagged,
            acquired_at=acquired,
            device_id=parts.device or None,
            source_format="hl7",
            kind=kind,
            **meta,
        )
    except DecodeError:
        raise
    except InvalidRecord as e:
        raise DecodeError(e.reason, e.code, "AE") from None


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


def _assigning_authority(hd: str, d: er7.Delimiters) -> str:
    """PID-3.4 (HD: namespace id & universal id & its type) as an identifier system: urn:oid:... for an ISO
    universal id, else the namespace id, else "" (an MRN whose issuer the sender did not name)."""
    namespace, universal, kind = ([p.strip() for p in hd.split(d.subcomponent)] + ["", "", ""])[:3]
    if universal and kind.upper() == "ISO":
        return "urn:oid:" + universal
    return namespace or universal


def _patient_meta(pid: list[bytes] | None, pv1: list[bytes] | None, d: er7.Delimiters,
                  charset: str, bed_component: int = 3) -> dict[str, Any]:
    meta: dict[str, Any] = {"patient_id": None, "patient_system": None, "sex": None, "birth_date": None, "bed": None,
                            "unit": None}
    if pid is not None:
        meta["patient_id"] = er7.component(er7.field(pid, 3), 1, d, charset).strip() or None
        if meta["patient_id"]:
            meta["patient_system"] = _assigning_authority(er7.component(er7.field(pid, 3), 4, d, charset), d)
        sex = er7.text(er7.field(pid, 8), d, charset).strip().upper()
        meta["sex"] = sex if sex in ("M", "F") else None
        meta["birth_date"] = er7.parse_birth_date(er7.text(er7.field(pid, 7), d, charset))
    if pv1 is not None:
        meta["bed"] = er7.component(er7.field(pv1, 3), bed_component, d, charset).strip() or None
        # PV1-3.1 is the point of care (the unit or ward) in both layouts, point of care^room^bed and ward^bed.
        meta["unit"] = er7.component(er7.field(pv1, 3), 1, d, charset).strip() or None
    return meta
