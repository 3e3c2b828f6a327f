"""HL7 ACKs built with hl7apy: MSH + MSA (+ ERR when not AA), docs/SPEC.md §2.

MSA-3 carries the readable reason, ERR-3 the HL7 error code (table 0357), ERR-4 the severity, ERR-8 the reason
again for receivers that read only ERR. With an unreadable MSH there is nothing to echo: MSA-2 stays empty.
The MSH is built by hl7apy once per sender and reused (its time and control id set per ACK): ~2 ms saved per ACK.
"""
from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from hl7apy.core import Segment

from integrations.hl7.er7 import format_dtm

AckCode = Literal["AA", "AE", "AR"]
ACK_VERSION = "2.6"  # ERR-3 (HL7 error code) exists from 2.5 on; older senders get a 2.6 ACK (they read MSA)
RECEIVER_APP = "TWIWATCH"
RECEIVER_FACILITY = "TWIWATCH"

# HL7 table 0357 (message error condition codes) and the decoder codes that map onto them.
ERROR_CODES: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    203: "Unsupported version id",
    207: "Application internal error",
}
_BY_DECODE_CODE: dict[str, int] = {
    "structure": 100,
    "truncated": 100,
    "msh": 101,
    "no-waveform": 101,
    "sampling-rate": 101,
    "samples": 102,
    "non-finite": 102,
    "timestamp": 102,
    "encoding": 102,
    "lead-lengths": 102,
    "unknown-lead": 103,
    "unit": 103,
    "duplicate-lead": 100,
    "message-type": 200,
    "not-hl7": 200,
    "unsupported-value-type": 102,
    "event": 201,
}


def hl7_error_code(decode_code: str | None) -> int:
    """Table 0357 code for a DecodeError/InvalidRecord code; anything else is 207 (application internal error)."""
    return _BY_DECODE_CODE.get(decode_code or "", 207)


_counter = itertools.count(1)
_PID_TAG = f"{os.getpid() % 1000:03d}"


def _control_id() -> str:
    """Unique per process and time, at most 20 characters (MSH-10 is ST(20) before v2.7)."""
    return f"TW{int(time.time() * 1000) % 10**11:011d}{_PID_TAG}{next(_counter) % 10000:04d}"


def make_ack(
    header: dict[str, Any] | None,
    code: AckCode,
    reason: str | None = None,
    *,
    error_code: int | None = None,
    decode_code: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The ACK for a message whose parsed header is `header` (decode.parse_header), or None when unreadable.

    error_code: HL7 table 0357 code for ERR-3 (default: from decode_code, else 207). Returns ER7 bytes
    (segments ending in CR), without MLLP framing.
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"ACK code must be AA, AE or AR, not {code!r}")
    h = header or {}
    msh = _msh_fields(
        h.get("receiving_app") or RECEIVER_APP, h.get("receiving_facility") or RECEIVER_FACILITY,
        h.get("sending_app") or "", h.get("sending_facility") or "", h.get("trigger_event") or "",
        h.get("processing_id") or "P",
    )
    msh[6], msh[9] = format_dtm(now or datetime.now(UTC)), _control_id()  # MSH-7, MSH-10: ours, no escaping

    msa = Segment("MSA", version=ACK_VERSION)
    msa.msa_1 = code
    if h.get("control_id"):
        msa.msa_2.value = h["control_id"]
    else:
        msa.msa_2 = ""
    segments: list[Segment] = [msa]
    if code != "AA":
        text = _one_line(reason or ("application error" if code == "AE" else "message rejected"))
        msa.msa_3.value = text[:80]  # MSA-3 is ST(80) in v2.5/2.6
        err = Segment("ERR", version=ACK_VERSION)
        n = error_code if error_code is not None else hl7_error_code(decode_code)
        err.err_3.cwe_1 = str(n)
        err.err_3.cwe_2.value = ERROR_CODES.get(n, "Application internal error")
        err.err_3.cwe_3 = "HL70357"
        err.err_4 = "E"
        err.err_8.value = text
        segments.append(err)
    er7 = "\r".join(["|".join(msh)] + [s.to_er7() for s in segments]) + "\r"
    if not h.get("control_id"):
        # hl7apy drops an empty trailing field; MSA-2 must be present (empty) so receivers find MSA-1 in place.
        er7 = er7.replace(f"\rMSA|{code}\r", f"\rMSA|{code}|\r")
    return er7.encode("utf-8")


@lru_cache(maxsize=1024)
def _msh_template(our_app: str, our_facility: str, their_app: str, their_facility: str, trigger: str,
                  processing_id: str) -> tuple[str, ...]:
    """The ACK's MSH built by hl7apy once per sender (~2 ms each time otherwise), as ER7 fields."""
    msh = Segment("MSH", version=ACK_VERSION)
    msh.msh_1 = "|"
    msh.msh_2 = "^~\\&"
    # Our identity as the receiver the sender addressed, if it named one; then theirs echoed back.
    msh.msh_3 = our_app
    msh.msh_4 = our_facility
    if their_app:
        msh.msh_5 = their_app
    if their_facility:
        msh.msh_6 = their_facility
    msh.msh_7 = "19700101"  # stand-ins, replaced per ACK
    msh.msh_9 = f"ACK^{trigger}^ACK" if trigger else "ACK"
    msh.msh_10 = "0"
    msh.msh_11 = processing_id
    msh.msh_12 = ACK_VERSION
    msh.msh_18 = "UNICODE UTF-8"
    return tuple(msh.to_er7().split("|"))


def _msh_fields(*key: str) -> list[str]:
    return list(_msh_template(*key))


def _one_line(s: str) -> str:
    return " ".join(s.split())
