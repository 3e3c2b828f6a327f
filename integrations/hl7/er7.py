"""Minimal ER7 (pipe-and-hat) reading: the MSH delimiters, segment and field splitting, unescaping, timestamps.

Why not hl7apy here: parsing one MSH with hl7apy.parser.parse_segment costs ~2.3 ms, PID ~1 ms; the whole
numeric decode of a 12-lead ECG costs ~4 ms. The hot path splits fields itself; tests prove the values equal
hl7apy's (tests/test_hl7_codec.py). hl7apy builds every message we write (encode.py, ack.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from integrations.errors import DecodeError


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


def read_delimiters(first_segment: bytes) -> Delimiters:
    """MSH-1 and MSH-2 of a message that starts with MSH. Raises DecodeError(AR, 'msh') when unreadable."""
    if len(first_segment) < 8:
        raise DecodeError("MSH segment is too short to hold its delimiters", "msh", "AR")
    fs = chr(first_segment[3])
    if fs.isalnum() or fs.isspace():
        raise DecodeError("MSH-1 field separator is missing or invalid", "msh", "AR")
    end = first_segment.find(first_segment[3:4], 4)
    enc = first_segment[4:end if end != -1 else len(first_segment)].decode("latin-1")
    # HL7 2.7 adds a fifth (truncation) character; it plays no part in reading.
    if len(enc) not in (4, 5) or len(set(enc)) != len(enc) or fs in enc or any(c.isalnum() or c.isspace() for c in enc):
        raise DecodeError("MSH-2 encoding characters are invalid (expected 4 distinct delimiters)", "msh", "AR")
    return Delimiters(fs, enc[0], enc[1], enc[2], enc[3])


def split_segments(data: bytes) -> list[bytes]:
    """Segments end with CR; tolerate LF and CRLF from hand-made or file-transferred messages. Blank lines dropped."""
    if b"\n" in data:
        data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return [s for s in data.split(b"\r") if s]


_SEGMENT_NAME = re.compile(rb"[A-Z][A-Z0-9]{2}")


def segment_name(segment: bytes, fs: bytes) -> str | None:
    """The 3-letter name, or None if the segment does not start with one followed by the field separator."""
    if _SEGMENT_NAME.fullmatch(segment[:3]) and (len(segment) == 3 or segment[3:4] == fs):
        return segment[:3].decode("ascii")
    return None


def fields(segment: bytes, fs: bytes) -> list[bytes]:
    """Fields numbered as in the standard: result[n] is SEG-n (for MSH, result[1] is MSH-1 itself)."""
    parts = segment.split(fs)
    if segment[:3] == b"MSH":
        return [parts[0], fs] + parts[1:]
    return parts


def field(parts: list[bytes], n: int) -> bytes:
    return parts[n] if n < len(parts) else b""


def text(value: bytes, d: Delimiters, charset: str = "utf-8") -> str:
    """A primitive value as text, HL7 escapes resolved (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\; others dropped)."""
    s = value.decode(charset, errors="replace")
    return unescape(s, d) if d.escape in s else s


def components(value: bytes, d: Delimiters, charset: str = "utf-8") -> list[str]:
    """Components of the first repetition, each unescaped."""
    first = value.split(d.repetition.encode("latin-1"), 1)[0]
    return [text(c, d, charset) for c in first.split(d.component.encode("latin-1"))]


def component(value: bytes, n: int, d: Delimiters, charset: str = "utf-8") -> str:
    comps = components(value, d, charset)
    return comps[n - 1] if n - 1 < len(comps) else ""


def unescape(s: str, d: Delimiters) -> str:
    e = re.escape(d.escape)
    mapping = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape}

    def repl(m: re.Match) -> str:
        code = m.group(1)
        if code in mapping:
            return mapping[code]
        if code.startswith("X") and len(code) > 1:
            try:
                return bytes.fromhex(code[1:]).decode("latin-1")
            except ValueError:
                return ""
        return ""  # formatting escapes (\.br\, \H\ ...) carry no data we keep

    return re.sub(f"{e}([^{e}]*){e}", repl, s)


_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?"
    r"(?P<tz>[+-]\d{4})?"
)


def parse_dtm(value: str, what: str, assume_tz: tzinfo | None = None) -> datetime | None:
    """HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]) → datetime; '' → None.

    With an offset the result is aware; without one it is the sender's local time, naive unless assume_tz is
    given. The value itself never enters the error (times of care are personal data).
    """
    value = value.split("^", 1)[0].strip()  # v2.3 TS may carry a degree-of-precision component
    if not value:
        return None
    try:
        return _dtm(value, assume_tz)
    except _BadTime as e:
        raise DecodeError(f"{what} {e}", "timestamp", "AE") from None


class _BadTime(ValueError):
    pass


@lru_cache(maxsize=64)
def _dtm(value: str, assume_tz: tzinfo | None) -> datetime:
    """parse_dtm of a non-empty value; a message usually repeats one time in MSH-7, OBR-7 and OBX-14, so it is read
    once (datetimes are immutable). Errors are _BadTime with the end of the reason (never cached)."""
    m = _DTM.fullmatch(value)
    if not m:
        raise _BadTime("is not an HL7 timestamp (YYYYMMDDHHMMSS[.S][+/-ZZZZ])")
    g = m.groupdict()
    try:
        frac = g["f"] or ""
        dt = datetime(
            int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1), int(g["h"] or 0), int(g["mi"] or 0), int(g["s"] or 0),
            int(frac.ljust(6, "0")) if frac else 0,
        )
        if g["tz"]:
            sign = -1 if g["tz"][0] == "-" else 1
            hh, mm = int(g["tz"][1:3]), int(g["tz"][3:5])
            dt = dt.replace(tzinfo=timezone(sign * timedelta(hours=hh, minutes=mm)))
        elif assume_tz is not None:
            dt = dt.replace(tzinfo=assume_tz)
    except ValueError:
        raise _BadTime("is not a valid date/time") from None
    return dt


def parse_birth_date(value: str) -> date | None:
    """PID-7 as a date when it gives at least the day; a year- or month-only birth date is not invented to a day."""
    value = value.split("^", 1)[0].strip()
    if len(value) < 8:
        if value and not value.isdigit():
            raise DecodeError("PID-7 birth date is not an HL7 date", "timestamp", "AE")
        return None
    dt = parse_dtm(value, "PID-7 birth date")
    return dt.date() if dt else None


def format_dtm(dt: datetime) -> str:
    """datetime → HL7 DTM with seconds, fraction only when present, and the offset when aware."""
    out = dt.strftime("%Y%m%d%H%M%S")
    if dt.microsecond:
        out += "." + f"{dt.microsecond:06d}"[:4]
    if dt.tzinfo is not None and dt.utcoffset() is not None:
        minutes = int(dt.utcoffset().total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        out += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return out
