"""One entry point from message bytes to what the worker analyses (docs/SPEC.md §10, §11).

Strip or chunk is decided by the sender, never by the duration:
- HL7 ORU^R01: a PCD-01 chunk when the sender's rule says `kind: chunk`, else a strip (under 2.5 s: dead letter);
- HL7 ORU^W01: a chunk when its rule says so, else a strip (one continuous segment: a TIM gap is refused);
- FHIR (JSON or XML): a PoCD SampleArrayObservation (meta.profile) is a chunk, so is an Observation whose sender
  rule (meta.source or device) says `chunk`; everything else is a strip.
Errors are DecodeError with a machine code and a reason that never quotes patient data.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Literal

from engine.errors import InvalidRecord
from engine.record import EcgRecord, validate
from integrations.chunk import Chunk
from integrations.errors import DecodeError
from integrations.fhir.observation import decode_observation_detailed, load_observation
from integrations.fhir.sample_array import decode_sample_array_doc, fhir_sender, is_pocd_sample_array
from integrations.hl7 import codes
from integrations.hl7.decode import _record, _scan, hl7_source_id, parse_header
from integrations.hl7.pcd01 import assemble
from integrations.hl7.w01 import decode_w01
from integrations.senders import SenderRule, SenderRules, find_sender_rule

Format = Literal["hl7", "fhir"]
KindChoice = Literal["auto", "strip", "chunk"]


def decode_message(
    data: bytes,
    fmt: Format,
    rules: SenderRules,
    *,
    assume_tz: tzinfo | None = None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    kind: KindChoice = "auto",
) -> EcgRecord | Chunk:
    """Decode one message as the worker does: an EcgRecord (kind "strip") or a Chunk.

    kind: "auto" (the sender decides, as in the worker) or a forced reading for the operator tool."""
    return decode_message_detailed(data, fmt, rules, assume_tz=assume_tz, samp_rate_codes=samp_rate_codes,
                                   kind=kind)[0]


def decode_message_detailed(
    data: bytes,
    fmt: Format,
    rules: SenderRules,
    *,
    assume_tz: tzinfo | None = None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
    kind: KindChoice = "auto",
) -> tuple[EcgRecord | Chunk, tuple[str, ...]]:
    """decode_message, plus the non-ECG signals skipped (a Chunk also carries them)."""
    if fmt == "hl7":
        return _hl7(data, rules, assume_tz, samp_rate_codes, kind)
    if fmt == "fhir":
        return _fhir(data, rules, kind)
    raise ValueError("fmt must be 'hl7' or 'fhir'")


def _hl7(data: bytes, rules: SenderRules, assume_tz: tzinfo | None, samp_rate_codes: Iterable[int | str],
         kind: KindChoice) -> tuple[EcgRecord | Chunk, tuple[str, ...]]:
    header = parse_header(data)
    app, facility = header["sending_app"], header["sending_facility"]
    if (header["message_code"].upper(), header["trigger_event"].upper()) == ("ORU", "W01"):
        sender = find_sender_rule(rules, hl7_app=app, hl7_facility=facility)
        chunk = decode_w01(data, sender=sender, assume_tz=assume_tz)
        if _wants(kind, sender) == "chunk":
            return chunk, chunk.skipped
        if len(chunk.segments) != 1:
            raise DecodeError(f"ORU^W01 strip has {len(chunk.segments)} segments (a TIM gap); a strip is one "
                              "continuous recording", "gap", "AE")
        return _as_strip(chunk.segments[0]), chunk.skipped
    scanned = _scan(data, samp_rate_codes, assume_tz, header)
    devices = [_device(s.fields, scanned) for s in scanned.signals]
    sender = find_sender_rule(rules, hl7_app=app, hl7_facility=facility, devices=[d for d in devices if d])
    if _wants(kind, sender) == "chunk":
        parts = assemble(scanned, sender, allow_no_ecg=True)
        segments = (_record(scanned, parts, sender, "chunk"),) if parts.leads else ()
        chunk = Chunk(segments=segments, skipped=parts.skipped, sender=f"hl7:{app}|{facility}",
                      device_id=parts.device or None, bed=scanned.bed_components,
                      source_id=hl7_source_id(app, facility, header["control_id"]))
        return chunk, chunk.skipped
    parts = assemble(scanned, sender)
    return _record(scanned, parts, sender, "strip"), parts.skipped


def _device(fields: list[bytes], scanned) -> str:
    from integrations.hl7 import er7

    return scanned.memo.device(er7.field(fields, 18))


def _fhir(data: bytes, rules: SenderRules, kind: KindChoice) -> tuple[EcgRecord | Chunk, tuple[str, ...]]:
    doc = load_observation(data)
    source, device = fhir_sender(doc)
    sender = find_sender_rule(rules, fhir_source=source or None, devices=[device] if device else [])
    chunked = kind == "chunk" or (kind == "auto" and (is_pocd_sample_array(doc) or (
        sender is not None and sender.kind == "chunk")))
    if chunked:
        chunk = decode_sample_array_doc(doc, sender=sender)
        return chunk, chunk.skipped
    return decode_observation_detailed(doc, sender=sender)


def _wants(kind: KindChoice, sender: SenderRule | None) -> str:
    if kind != "auto":
        return kind
    return sender.kind if sender is not None else "strip"


def _as_strip(record: EcgRecord) -> EcgRecord:
    strip = record.replace(kind="strip")
    try:
        validate(strip)
    except InvalidRecord as e:
        raise DecodeError(e.reason, e.code, "AE") from None
    return strip
