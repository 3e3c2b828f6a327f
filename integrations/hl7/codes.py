"""MDC (ISO/IEEE 11073-10101) codes the HL7 codec reads and writes (docs/SPEC.md §2, §11).

Codes are 32-bit: partition << 16 | term code. Leads come in two families, both accepted on input:
MDC_ECG_ELEC_POTL_* (the waveform's electric potential, what IHE PCD-01 sends) and MDC_ECG_LEAD_* (lead names).
The encoder emits MDC_ECG_ELEC_POTL_* only.
"""
from __future__ import annotations

from engine.record import STANDARD_LEADS

CODING_SYSTEM = "MDC"

# canonical lead -> (MDC_ECG_ELEC_POTL_* code, MDC_ECG_LEAD_* code); table of docs/SPEC.md §2.
LEAD_CODES: dict[str, tuple[int, int]] = {
    "I": (131329, 131073),
    "II": (131330, 131074),
    "III": (131389, 131133),
    "aVR": (131390, 131134),
    "aVL": (131391, 131135),
    "aVF": (131392, 131136),
    "V1": (131331, 131075),
    "V2": (131332, 131076),
    "V3": (131333, 131077),
    "V4": (131334, 131078),
    "V5": (131335, 131079),
    "V6": (131336, 131080),
}
assert tuple(LEAD_CODES) == STANDARD_LEADS

ECG_ELEC_POTL_BASE = (131328, "MDC_ECG_ELEC_POTL")  # multi-lead ECG; used as OBR-4


def mnemonic_suffix(lead: str) -> str:
    """MDC reference ids spell augmented leads upper-case: MDC_ECG_ELEC_POTL_AVR."""
    return lead.upper()


def elec_potl(lead: str) -> tuple[int, str]:
    """(code, mnemonic) the encoder writes in OBX-3 for a standard lead."""
    return LEAD_CODES[lead][0], f"MDC_ECG_ELEC_POTL_{mnemonic_suffix(lead)}"


_LEAD_BY_CODE: dict[int, str] = {}
_LEAD_BY_NAME: dict[str, str] = {}
for _lead, (_potl, _name_code) in LEAD_CODES.items():
    _LEAD_BY_CODE[_potl] = _lead
    _LEAD_BY_CODE[_name_code] = _lead
    _sfx = mnemonic_suffix(_lead)
    _LEAD_BY_NAME[f"MDC_ECG_ELEC_POTL_{_sfx}"] = _lead
    _LEAD_BY_NAME[f"MDC_ECG_LEAD_{_sfx}"] = _lead
    _LEAD_BY_NAME[_sfx] = _lead  # plain "I", "aVR" (matched upper-cased, so "AVR"/"avr" too)
    _LEAD_BY_NAME[f"LEAD {_sfx}"] = _lead


class LeadConflict(ValueError):
    """OBX-3's code and its text name different leads."""


def lead_from_code(identifier: str, text: str) -> str | None:
    """Canonical lead for an OBX-3 (identifier, text), or None when neither names a standard lead.

    The numeric code wins only if the text agrees or names nothing: a disagreement is a sender bug that would
    put one lead's samples under another's name, so it is refused (LeadConflict).
    """
    by_code = None
    ident = identifier.strip()
    if ident.isascii() and ident.isdigit():  # str.isdigit also accepts "²" and other digits int() refuses
        by_code = _LEAD_BY_CODE.get(int(ident))
    else:  # some senders put the mnemonic or the lead name in OBX-3.1
        by_code = _LEAD_BY_NAME.get(ident.upper())
    by_text = _LEAD_BY_NAME.get(text.strip().upper()) if text.strip() else None
    if by_code and by_text and by_code != by_text:
        raise LeadConflict(f"OBX-3 code {ident} is lead {by_code} but its text names lead {by_text}")
    return by_code or by_text


# Monitoring leads (docs/SPEC.md §11): names as sent, mapped and marked by engine.record.lead_and_mark. 131328
# (MDC_ECG_ELEC_POTL, "ECG, unspecified lead") is one channel of unknown position.
_MONITORING_NAMES = {"MLI", "MLII", "MLIII", "MCL1", "MCL2", "MCL3", "MCL4", "MCL5", "MCL6", "V", "ECG"}
_PREFIXES = ("MDC_ECG_ELEC_POTL_", "MDC_ECG_LEAD_", "LEAD ")


def monitoring_lead(identifier: str, text: str) -> str | None:
    """A monitoring lead name (MLII, MCL1, V, ECG) from OBX-3's code or text, else None."""
    for value in (identifier.strip(), text.strip()):
        upper = value.upper()
        if upper in (str(ECG_ELEC_POTL_BASE[0]), ECG_ELEC_POTL_BASE[1]):
            return "ECG"
        for prefix in _PREFIXES:
            if upper.startswith(prefix):
                upper = upper[len(prefix):]
                break
        if upper in _MONITORING_NAMES:
            return upper
    return None


def is_ecg_code(identifier: str, text: str) -> bool:
    """True for anything in the ECG potential/lead families, known to us or not (used to word errors)."""
    ident = identifier.strip()
    if ident.isascii() and ident.isdigit() and 131072 <= int(ident) <= 131583:
        return True
    return text.strip().upper().startswith(("MDC_ECG_ELEC_POTL", "MDC_ECG_LEAD"))


# --- units (partition 4, MDC_DIM_*); SI prefixes are offsets on the base unit code (milli +18, micro +19) ---
VOLT = 266400
UNIT_MILLI_VOLT = (266418, "MDC_DIM_MILLI_VOLT")
UNIT_MICRO_VOLT = (266419, "MDC_DIM_MICRO_VOLT")
UNIT_PER_SEC = (264608, "MDC_DIM_PER_SEC")

# mV per unit. Keys are OBX-6.1 codes or mnemonics, plus the UCUM spellings some senders use.
_MV_PER_UNIT: dict[str, float] = {
    str(VOLT): 1000.0, "MDC_DIM_VOLT": 1000.0, "V": 1000.0,
    "266418": 1.0, "MDC_DIM_MILLI_VOLT": 1.0, "MV": 1.0,
    "266419": 0.001, "MDC_DIM_MICRO_VOLT": 0.001, "UV": 0.001, "µV".upper(): 0.001,  # micro sign upper-cases to Μ
    "266420": 1e-6, "MDC_DIM_NANO_VOLT": 1e-6, "NV": 1e-6,
}
# "No unit" means raw ADC counts; MDC_DIM_DIMLESS says the same thing explicitly.
_COUNT_UNITS = {"", "262656", "MDC_DIM_DIMLESS", "1", "{COUNTS}", "COUNTS"}


class UnknownUnit(ValueError):
    pass


def mv_per_unit(code: str, text: str, counts_scale_mv: float) -> float:
    """Multiplier from the OBX-6 unit to mV; raw counts use the configured scale (vendors differ, docs/SPEC.md §2).
    A code and a text naming different voltage units are refused: either reading scales the signal by 1000."""
    by_code, by_text = _MV_PER_UNIT.get(code.strip().upper()), _MV_PER_UNIT.get(text.strip().upper())
    if by_code is not None and by_text is not None and by_code != by_text:
        raise UnknownUnit(f"unit code {code.strip()[:24]!r} and text {text.strip()[:24]!r} name different units")
    if by_code is not None or by_text is not None:
        return by_code if by_code is not None else by_text  # type: ignore[return-value]
    if is_counts(code, text):
        return counts_scale_mv
    raise UnknownUnit(f"unit {code or text!r} is not a voltage unit")


def is_counts(code: str, text: str) -> bool:
    """No unit (or MDC_DIM_DIMLESS): the samples are raw ADC counts."""
    return code.strip().upper() in _COUNT_UNITS and text.strip().upper() in _COUNT_UNITS


_PER_SEC_UNITS = {"", "264608", "MDC_DIM_PER_SEC", "/S", "1/S", "HZ", "264640", "MDC_DIM_HZ", "S-1"}


def is_per_second(code: str, text: str) -> bool:
    return code.strip().upper() in _PER_SEC_UNITS and text.strip().upper() in _PER_SEC_UNITS


# --- attributes carried in child OBXs ---
SAMP_RATE_MNEMONIC = "MDC_ATTR_SAMP_RATE"
DATA_RANGE_MNEMONIC = "MDC_ATTR_DATA_RANGE"
# Real PCD-01 messages send 0 with the mnemonic (docs/SPEC.md §2). No numeric code is assumed by default: in
# ISO/IEEE 11073-10101:2004 partition 1 term 2444 (67980) is MDC_ATTR_TIME_PD_OP_HRS, not a sample rate, so a
# vendor's numeric code is configured (TWIWATCH_HL7_SAMP_RATE_CODES), and a present mnemonic always decides.
DEFAULT_SAMP_RATE_CODES: tuple[int, ...] = (0,)


def is_samp_rate(identifier: str, text: str, codes: tuple[int, ...] | frozenset[int]) -> bool:
    """Match the sample-rate attribute by mnemonic, else by configured code.

    When OBX-3 carries a mnemonic, it decides: code 0 is shared by every attribute a sender could not code
    (data range, resolution ...), so the code alone is trusted only when no mnemonic came.
    """
    ident, name = identifier.strip(), text.strip().upper()
    if ident.upper() == SAMP_RATE_MNEMONIC or name == SAMP_RATE_MNEMONIC:
        return True
    if name:
        return False
    digits = ident.lstrip("-")
    return digits.isascii() and digits.isdigit() and int(ident) in codes


def is_data_range(identifier: str, text: str) -> bool:
    return DATA_RANGE_MNEMONIC in (identifier.strip().upper(), text.strip().upper())


def voltage_or_counts(code: str, text: str) -> float | None:
    """mV per unit for a voltage unit, None for counts (no unit, MDC_DIM_DIMLESS); UnknownUnit otherwise."""
    if is_counts(code, text):
        return None
    return mv_per_unit(code, text, 1.0)


# Child attributes of a waveform (docs/SPEC.md §11). The Mindray eGateway layout sends the resolution with its code,
# INOP as an event code; 67917 and 196660 are those codes (partition 1 and 3 of ISO/IEEE 11073-10101).
RESOLUTION = (67917, "MDC_ATTR_NU_MSMT_RES")
INOP = (196660, "MDC_EVT_INOP")
# Words in an attribute mnemonic that say it changes the scale or offset of the samples: an attribute with one of
# these that the decoder does not read is refused rather than ignored (a missed scale hides every T wave).
_SCALING_WORDS = ("SCALE", "CALIB", "GAIN", "SENSITIV", "OFFSET", "BASELINE", "FACTOR", "RESOL", "_RES", "UNIT",
                  "ZERO", "AMPL")


def attribute_kind(identifier: str, text: str, samp_rate_codes: tuple[int, ...] | frozenset[int]) -> str:
    """What a child OBX (anything but a waveform) is: 'rate', 'resolution', 'range', 'inop', 'scaling' (a scale
    statement not understood), 'unidentified' (no mnemonic and an unknown code) or 'other' (named, not scaling)."""
    ident, name = identifier.strip().upper(), text.strip().upper()
    if is_samp_rate(identifier, text, samp_rate_codes):
        return "rate"
    mnemonic = name or (ident if not ident.lstrip("-").isdigit() else "")
    code = int(ident) if ident.isascii() and ident.isdigit() else None
    if mnemonic:
        if mnemonic == RESOLUTION[1]:
            return "resolution"
        if mnemonic == DATA_RANGE_MNEMONIC:
            return "range"
        if mnemonic == INOP[1]:
            return "inop"
        return "scaling" if any(w in mnemonic for w in _SCALING_WORDS) else "other"
    if code == RESOLUTION[0]:
        return "resolution"
    if code == INOP[0]:
        return "inop"
    return "unidentified"


__all__ = [
    "CODING_SYSTEM", "LEAD_CODES", "ECG_ELEC_POTL_BASE", "elec_potl", "lead_from_code", "is_ecg_code",
    "LeadConflict", "UNIT_MILLI_VOLT", "UNIT_MICRO_VOLT", "UNIT_PER_SEC", "mv_per_unit", "UnknownUnit",
    "is_per_second", "SAMP_RATE_MNEMONIC", "DATA_RANGE_MNEMONIC", "DEFAULT_SAMP_RATE_CODES", "is_samp_rate",
    "is_data_range", "monitoring_lead", "voltage_or_counts", "RESOLUTION", "INOP", "attribute_kind",
]
