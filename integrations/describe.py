"""`twiwatch decode FILE`: what the worker would make of one message file, as a plain dict (docs/SPEC.md §11).

The CLI command (stream/) reads the file, calls describe_message and prints or writes the dict; exit codes are its
own. The decode is integrations.decode.decode_message, the worker's, so the answer is the worker's answer.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

import numpy as np

from engine.record import EcgRecord
from integrations.chunk import Chunk
from integrations.decode import KindChoice, decode_message_detailed
from integrations.errors import DecodeError
from integrations.fhir.xml import is_xml
from integrations.hl7 import codes
from integrations.senders import NO_RULES, SenderRules


def detect_format(data: bytes) -> str:
    """HL7 when the bytes start with MSH (after a BOM or blank lines), else FHIR (JSON or XML)."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "hl7" if head.startswith(b"MSH") else "fhir" if head[:1] in (b"{", b"[") or is_xml(head) else "hl7"


def describe_message(
    data: bytes,
    *,
    kind: KindChoice = "auto",
    rules: SenderRules = NO_RULES,
    assume_tz: tzinfo | None = None,
    samp_rate_codes: Iterable[int | str] = codes.DEFAULT_SAMP_RATE_CODES,
) -> dict[str, Any]:
    """{kind, fs, start, n_samples, segments: [{start, n_samples}], leads: {lead: {min_mv, max_mv}}, skipped,
    error: {code, reason} | None}. HL7 files may end segments with \\r or \\n (the decoder accepts both)."""
    fmt = detect_format(data)
    out: dict[str, Any] = {"format": fmt, "kind": None, "fs": None, "start": None, "n_samples": 0, "segments": [],
                           "leads": {}, "lead_marks": {}, "skipped": [], "error": None}
    try:
        decoded, skipped = decode_message_detailed(data, fmt, rules, assume_tz=assume_tz,  # type: ignore[arg-type]
                                                   samp_rate_codes=samp_rate_codes, kind=kind)
    except DecodeError as e:
        out["error"] = {"code": e.code, "reason": e.reason}
        return out
    segments = decoded.segments if isinstance(decoded, Chunk) else (decoded,)
    out["kind"] = "chunk" if isinstance(decoded, Chunk) else "strip"
    out["skipped"] = list(skipped)
    out["segments"] = [{"start": _iso(s), "n_samples": s.n_samples} for s in segments]
    out["n_samples"] = sum(s.n_samples for s in segments)
    if segments:
        out["fs"] = segments[0].fs
        out["start"] = _iso(segments[0])
        out["lead_marks"] = dict(segments[0].lead_marks)
        for lead in segments[0].leads:
            values = np.concatenate([_good(s, lead) for s in segments if lead in s.leads])
            out["leads"][lead] = ({"min_mv": round(float(values.min()), 4), "max_mv": round(float(values.max()), 4)}
                                  if values.size else {"min_mv": None, "max_mv": None})
    return out


def _good(rec: EcgRecord, lead: str) -> np.ndarray:
    row = rec.lead(lead)
    if rec.flagged is None:
        return row
    return row[~rec.flagged[rec.leads.index(lead)]]


def _iso(rec: EcgRecord) -> str | None:
    return rec.acquired_at.isoformat() if rec.acquired_at is not None else None
