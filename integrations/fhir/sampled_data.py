"""SampledData `data` strings <-> numpy, units and sampling rates (docs/SPEC.md §3).

The arrays are parsed here with numpy rather than through fhir.resources: a 12-lead, 10-s strip is 60,000 numbers and
the model layer would only hand them back as one string anyway.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from integrations.errors import DecodeError

# E (error), U (above) and L (below detection limit) are legal sample values: quality flags, never a rejection.
FLAG_TOKENS = ("E", "U", "L")
# Characters a FHIR decimal or a flag can contain. Python's float() also takes "nan", "inf" and "1_0", which FHIR does
# not: screening the characters first keeps those out at C speed.
_ALLOWED = re.compile(r"[0-9eE+\-.UL\s]*")

# Voltage units as they appear in origin.code (UCUM, MDC) or origin.unit (free text) -> factor to mV.
# Symbols match exactly: UCUM is case-sensitive and "MV" would be megavolt. Lower-case "mv"/"uv" have no other meaning.
_MV_PER_SYMBOL: dict[str, float] = {
    "mV": 1.0, "mv": 1.0, "266418": 1.0, "MDC_DIM_MILLI_VOLT": 1.0,
    "uV": 1e-3, "uv": 1e-3, "µV": 1e-3, "μV": 1e-3, "266419": 1e-3, "MDC_DIM_MICRO_VOLT": 1e-3,
    "V": 1e3,
}
_MV_PER_WORD: dict[str, float] = {
    "millivolt": 1.0, "millivolts": 1.0, "microvolt": 1e-3, "microvolts": 1e-3, "volt": 1e3, "volts": 1e3,
}
_MS_PER_TIME_UNIT: dict[str, float] = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


def mv_per_unit(origin: dict[str, Any], unitless_mv: float | None = None) -> float:
    """mV per unit of origin and data, from origin.code, else origin.unit; `unitless_mv` (configured per sender)
    when neither is given, else DecodeError: guessing a scale would silently break every amplitude."""
    scales = []
    for key in ("code", "unit"):
        raw = origin.get(key)
        if not isinstance(raw, str) or not raw.strip():
            continue
        text = raw.strip()
        scale = _MV_PER_SYMBOL.get(text, _MV_PER_WORD.get(text.lower()))
        if scale is None:
            raise DecodeError(f"unsupported SampledData unit {text[:20]!r} (expected mV, uV or V)", "unit")
        scales.append(scale)
    if len(set(scales)) > 1:  # either reading would scale the signal by 1000
        raise DecodeError("SampledData origin code and unit name different units", "unit")
    if scales:
        return scales[0]
    if unitless_mv is not None:
        return unitless_mv
    raise DecodeError("SampledData origin has no unit (expected mV, uV or V)", "unit")


def sampling_rate_hz(sd: dict[str, Any], fhir_version: str) -> float:
    """R4/R4B: 1000 / period (ms). R5: interval in intervalUnit (UCUM ms, s or us)."""
    if fhir_version == "R5":
        interval, unit = sd.get("interval"), sd.get("intervalUnit")
        ms_per = _MS_PER_TIME_UNIT.get(unit) if isinstance(unit, str) else None
        if ms_per is None:
            raise DecodeError(f"unsupported SampledData intervalUnit {str(unit)[:20]!r}", "sampling-rate")
        step_ms = _positive(interval, "interval") * ms_per
    else:
        step_ms = _positive(sd.get("period"), "period")
    return 1000.0 / step_ms


def _positive(value: Any, name: str) -> float:
    number = json_number(value, f"SampledData {name}", "sampling-rate")
    if number <= 0:
        raise DecodeError(f"SampledData {name} must be a positive number", "sampling-rate")
    return number


def json_number(value: Any, name: str, code: str) -> float:
    """A JSON number as a finite float; strings, booleans and numbers beyond float range are refused by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(f"{name} must be a JSON number", code)
    try:
        number = float(value)  # an int beyond float range (10**400) overflows here
    except OverflowError:
        raise DecodeError(f"{name} is out of range", code) from None
    if not np.isfinite(number):
        raise DecodeError(f"{name} must be finite", code)
    return number


def parse_data(text: Any, lead: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Numbers of one `data` string as float64, and a mask of E/U/L samples (None when there are none).

    Flagged positions hold 0.0 in the returned values. Any other non-number raises DecodeError; the reason gives the
    lead and the position, never the value.
    """
    if not isinstance(text, str) or not text.strip():
        raise DecodeError(f"lead {lead}: SampledData has no data", "no-data")
    if _ALLOWED.fullmatch(text) is None:
        raise DecodeError(f"lead {lead}: non-numeric sample (character outside a decimal)", "non-numeric")
    tokens = text.split()
    try:
        return np.array(tokens, dtype=np.float64), None
    except ValueError:
        pass  # flags or garbage: the slower path below tells which
    arr = np.array(tokens)
    flagged = np.isin(arr, FLAG_TOKENS)
    arr[flagged] = "0"
    try:
        values = arr.astype(np.float64)
    except ValueError:
        position = _first_bad(tokens)
        raise DecodeError(f"lead {lead}: non-numeric sample at position {position}", "non-numeric") from None
    return values, (flagged if flagged.any() else None)


def _first_bad(tokens: list[str]) -> int:
    for i, tok in enumerate(tokens):
        if tok in FLAG_TOKENS:
            continue
        try:
            float(tok)
        except ValueError:
            return i
    return -1


def format_microvolts(values_mv: np.ndarray, flagged: np.ndarray | None = None) -> str:
    """Space-separated integer microvolts (lossless within 0.5 µV of the float32 mV input); flagged samples as "E"
    (E, U and L all read back as flags; which of the three it was is not kept)."""
    values = values_mv.astype(np.float64)
    if flagged is not None:
        values = np.where(flagged, 0.0, values)  # flagged samples may be NaN under the record contract
    ints = np.rint(values * 1000.0).astype(np.int64)
    if flagged is None or not flagged.any():
        # %-formatting a tuple is about 3x faster than " ".join(map(str, ...)) for 5,000 ints.
        return ("%d " * ints.size % tuple(ints.tolist()))[:-1]
    tokens = [str(v) for v in ints.tolist()]
    for i in np.flatnonzero(flagged).tolist():
        tokens[i] = "E"
    return " ".join(tokens)
