"""The OBX walk of an ORU^R01 in the IHE PCD-01 shape, shared by strips and gateway chunks (docs/SPEC.md §2, §11).

One NA OBX per signal; child OBXs one level deeper in OBX-4 (`1.7.6.131329` -> `.1`, `.2`, ...) carry its
attributes: sample rate, resolution (MDC_ATTR_NU_MSMT_RES: the value of one count), data range, INOP. Attributes
are matched by mnemonic as well as by code (gateways send code 0). Non-ECG signals (pleth, ABP, respiration) are
skipped and named, their children with them. The scale rule is integrations/scale.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

import numpy as np

from engine.record import lead_and_mark, lead_order
from integrations.errors import DecodeError
from integrations.hl7 import codes, er7
from integrations.hl7.numarray import SampleError, parse_na
from integrations.scale import check_range, counts_scale, scale_number
from integrations.senders import SenderRule

_MAX_ECHO = 40


def clip(s: str) -> str:
    """Codes and names quoted in reasons are clipped and made printable: a reason is no place for arbitrary input."""
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= _MAX_ECHO else s[:_MAX_ECHO] + "…"


@dataclass
class _Signal:
    lead: str | None  # name as sent for an ECG lead (II, MLII, ECG), None for a non-ECG signal
    sent: tuple[str, str]  # OBX-3 identifier and text as sent
    fields: list[bytes]
    sub_id: str
    obr: int
    segment: int
    attrs: list[_Attr] = field(default_factory=list)

    @property
    def name(self) -> str:
        """What the sender called it (for skipped signals and reasons); built only when needed (clip is slow)."""
        ident, label = self.sent
        return clip(label.strip() or ident.strip() or "unnamed")


@dataclass
class _Attr:
    kind: str  # codes.attribute_kind
    sent: tuple[str, str]
    sub_id: str
    segment: int
    fields: list[bytes]

    @property
    def name(self) -> str:
        ident, label = self.sent
        return clip(label.strip() or ident.strip())


@dataclass
class ScannedOru:
    header: dict[str, Any]
    delimiters: er7.Delimiters
    charset: str
    assume_tz: tzinfo | None
    msh_time: datetime | None
    pid: list[bytes] | None
    pv1: list[bytes] | None
    obr: list[bytes] | None
    signals: list[_Signal]
    loose: list[_Attr]  # attributes before any waveform and with no owner by sub-id
    cut_at: int  # index of a segment cut in transit (no terminator), else -1
    samp_rate_codes: frozenset[int]
    memo: _Memo

    @property
    def bed_components(self) -> tuple[str, ...]:
        if self.pv1 is None:
            return ()
        comps = er7.components(er7.field(self.pv1, 3), self.delimiters, self.charset)
        return tuple(c.strip() for c in comps) if any(c.strip() for c in comps) else ()


@dataclass
class Parts:
    leads: tuple[str, ...]
    signal: np.ndarray | None
    fs: float
    flagged: np.ndarray | None
    device: str
    first_time: datetime | None  # OBX-14 of the first ECG waveform
    skipped: tuple[str, ...]


def scan_oru(data: bytes, header: dict[str, Any], charset: str, rate_codes: frozenset[int],
             assume_tz: tzinfo | None) -> ScannedOru:
    d = er7.Delimiters(header["field_sep"], *header["encoding_chars"][:4])
    memo = _memo(d, charset)
    fs = d.field.encode("latin-1")
    known = {n.encode("ascii") + fs: n for n in _NAMES}
    msh_time = er7.parse_dtm(header["time"], "MSH-7 message time", assume_tz)
    pid = pv1 = obr = None
    n_obr = 0
    signals: list[_Signal] = []
    loose: list[_Attr] = []
    segs = er7.split_segments(data)
    # A message cut in transit ends inside its last segment, without the segment terminator.
    cut_at = len(segs) - 1 if not data.endswith((b"\r", b"\n")) else -1
    by_sub: dict[str, _Signal] = {}
    for i, seg in enumerate(segs):
        name = known.get(seg[:4]) or er7.segment_name(seg, fs)
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
            # The hot loop of a chunk decode (16+ OBXs a second per bed): what OBX-2, -3 and -4 say is looked up.
            vtype, ident, label, sub_id, kind, parent = memo.obx(f, rate_codes)
            if vtype == b"NA":
                sig = _Signal(_lead_name(ident, label, i), (ident, label), f, sub_id, n_obr, i)
                signals.append(sig)
                if sub_id:
                    by_sub[sub_id] = sig
            elif vtype == b"MA":
                raise DecodeError("OBX value type MA (multiplexed array) is not supported in ORU^R01; send one NA "
                                  "OBX per lead", "unsupported-value-type", "AE")
            else:
                attr = _Attr(kind, (ident, label), sub_id, i, f)
                # A child belongs to the signal whose OBX-4 is its parent path (1.1.1.1001.1 -> 1.1.1.1001),
                # else to the signal just before it.
                owner = (by_sub.get(parent) if parent else None) or by_sub.get(sub_id) or (
                    signals[-1] if signals else None)
                (owner.attrs if owner is not None else loose).append(attr)
    if not n_obr:
        raise DecodeError("no OBR segment: the message holds no observation request", "structure", "AE")
    return ScannedOru(header, d, charset, assume_tz, msh_time, pid, pv1, obr, signals, loose, cut_at, rate_codes,
                      memo)


_NAMES = ("MSH", "PID", "PV1", "OBR", "OBX")  # looked up by their first four bytes before the general check
# A gateway repeats the same few OBX-3, OBX-4 and OBX-6 values in every chunk of every bed: what they say is worked
# out once (pure functions of the field's bytes, or text) and looked up afterwards. Bounded, so odd input only evicts.
_CACHED = 4096


@dataclass
class _Memo:
    """Field values already read, for one set of delimiters and one charset (a plain dict lookup by the bytes)."""

    d: er7.Delimiters
    charset: str
    ids: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    units: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    texts: dict[bytes, str] = field(default_factory=dict)
    obxs: dict[tuple, tuple] = field(default_factory=dict)

    def obx(self, f: list[bytes], rate_codes: frozenset[int]) -> tuple[bytes, str, str, str, str, str | None]:
        """OBX-2 (upper-cased bytes), OBX-3's identifier and text, OBX-4 stripped, and for an attribute (not NA or
        MA) its kind (codes.attribute_kind) and its parent's OBX-4 path."""
        key = (er7.field(f, 2), er7.field(f, 3), er7.field(f, 4), rate_codes)
        hit = self.obxs.get(key)
        if hit is None:
            vtype = key[0].strip().upper()
            ident, label = self.identifier(key[1])
            sub_id = self.stripped(key[2])
            kind, parent = "", None
            if vtype not in (b"NA", b"MA"):
                kind = _attribute_kind(ident, label, rate_codes)
                parent = sub_id.rsplit(".", 1)[0] if "." in sub_id else None
            hit = _bounded(self.obxs)[key] = (vtype, ident, label, sub_id, kind, parent)
        return hit

    def identifier(self, value: bytes) -> tuple[str, str]:
        """OBX-3's identifier and text (the first two components of its first repetition), unescaped."""
        hit = self.ids.get(value)
        if hit is None:
            obs3 = value.split(self.d.repetition.encode("latin-1"), 1)[0].split(self.d.component.encode("latin-1"), 2)
            hit = (er7.text(obs3[0], self.d, self.charset),
                   er7.text(obs3[1], self.d, self.charset) if len(obs3) > 1 else "")
            _bounded(self.ids)[value] = hit
        return hit

    def unit(self, value: bytes) -> tuple[str, str]:
        """A CE field's code and text (OBX-6)."""
        hit = self.units.get(value)
        if hit is None:
            hit = (er7.components(value, self.d, self.charset) + ["", ""])[:2]
            _bounded(self.units)[value] = hit = (hit[0], hit[1])
        return hit

    def device(self, value: bytes) -> str:
        """OBX-18 equipment: its entity id, else its universal id (EUI-64 on many monitors), stripped."""
        hit = self.texts.get(b"\x00device" + value)
        if hit is None:
            equipment = er7.components(value, self.d, self.charset)
            hit = (equipment[0] or (equipment[2] if len(equipment) > 2 else "")).strip()
            _bounded(self.texts)[b"\x00device" + value] = hit
        return hit

    def stripped(self, value: bytes) -> str:
        """A primitive value as text, stripped (OBX-4)."""
        hit = self.texts.get(value)
        if hit is None:
            hit = _bounded(self.texts)[value] = er7.text(value, self.d, self.charset).strip()
        return hit


def _bounded(memo: dict) -> dict:
    if len(memo) >= _CACHED:
        memo.clear()
    return memo


@lru_cache(maxsize=64)
def _memo(d: er7.Delimiters, charset: str) -> _Memo:
    return _Memo(d, charset)


_is_per_second = lru_cache(maxsize=_CACHED)(codes.is_per_second)
_attribute_kind = lru_cache(maxsize=_CACHED)(codes.attribute_kind)
_voltage_or_counts = lru_cache(maxsize=_CACHED)(codes.voltage_or_counts)  # UnknownUnit is raised, never cached


def _lead_name(ident: str, label: str, i: int) -> str | None:
    lead, error = _lead_of(ident, label)
    if error == "conflict":
        raise DecodeError(_conflict(ident, label), "unknown-lead", "AE")
    if error == "unknown":
        raise DecodeError(f"unknown lead code {clip(ident)}^{clip(label)} in OBX (segment {i + 1})",
                          "unknown-lead", "AE")
    return lead


@lru_cache(maxsize=_CACHED)
def _lead_of(ident: str, label: str) -> tuple[str | None, str | None]:
    """(lead, None), (None, None) for a non-ECG signal, or (None, "conflict" | "unknown") for a refused code."""
    try:
        lead = codes.lead_from_code(ident, label)
    except codes.LeadConflict:
        return None, "conflict"
    lead = lead or codes.monitoring_lead(ident, label)
    # A malformed code (non-ASCII digits, control characters) is no evidence of a non-ECG signal: refused.
    if lead is None and (codes.is_ecg_code(ident, label) or not (ident + label).isascii()):
        return None, "unknown"
    return lead, None


def _conflict(ident: str, label: str) -> str:
    try:
        codes.lead_from_code(ident, label)
    except codes.LeadConflict as e:
        return str(e)
    raise AssertionError("no lead conflict")  # _lead_of found one for the same values


def _truncated(detail: str) -> DecodeError:
    return DecodeError(f"message truncated: {detail} and no segment terminator follows", "truncated", "AE")


@dataclass
class _Wave:
    lead: str  # canonical
    sent_as: str
    values: np.ndarray  # mV
    flagged: np.ndarray | None
    rate: float | None
    device: str
    time: str
    segment: int
    obr: int


def assemble(scanned: ScannedOru, sender: SenderRule | None, *, allow_no_ecg: bool = False) -> Parts:
    """The ECG signals as one (leads, samples) array in mV, with rate, flags, device and skipped names."""
    ecg = [s for s in scanned.signals if s.lead is not None]
    skipped = tuple(s.name for s in scanned.signals if s.lead is None)
    if not ecg:
        if allow_no_ecg and skipped:
            return Parts((), None, 0.0, None, "", None, skipped)
        raise DecodeError("no waveform OBX (value type NA with an ECG lead code) in the message", "no-waveform", "AE")
    if len({s.obr for s in ecg}) > 1:
        raise DecodeError("waveforms under more than one OBR: one ECG per message expected", "structure", "AE")
    for attr in scanned.loose:
        if attr.kind not in ("rate", "other"):
            raise DecodeError(f"attribute {attr.name} (segment {attr.segment + 1}) belongs to no waveform",
                              "structure", "AE")
    waves: list[_Wave] = []
    seen: dict[str, str] = {}
    for sig in ecg:
        canonical, _ = lead_and_mark(sig.lead or "")
        if canonical in seen:
            first = seen[canonical]
            raise DecodeError(f"lead {canonical} appears twice (as {first} and {sig.lead})", "duplicate-lead", "AE")
        seen[canonical] = sig.lead or ""
        try:
            waves.append(_wave(sig, canonical, scanned, sender))
        except DecodeError as e:
            if sig.segment == scanned.cut_at and e.code != "truncated":
                # a segment cut in transit lost its tail (unit, equipment): the cut is the reason, not the rest
                raise _truncated(f"its last segment (OBX {sig.segment + 1}) is incomplete") from None
            raise
    lengths = {w.values.size for w in waves}
    if len(lengths) > 1 and waves[-1].segment == scanned.cut_at and waves[-1].values.size < max(lengths):
        raise _truncated(f"lead {waves[-1].lead} in its last segment has {waves[-1].values.size} of "
                         f"{max(lengths)} samples")
    if len(lengths) > 1:
        sizes = [w.values.size for w in waves]
        usual = max(set(sizes), key=sizes.count)
        detail = ", ".join(f"{w.lead}: {w.values.size}" for w in waves if w.values.size != usual)
        raise DecodeError(f"leads have unequal lengths ({detail} samples, the other leads: {usual}); the message "
                          "may be truncated", "lead-lengths", "AE")
    fs = _sampling_rate(waves, scanned, sender)
    order = sorted(waves, key=lambda w: lead_order(w.lead))
    signal = np.vstack([w.values for w in order])
    flagged = None
    if any(w.flagged is not None for w in order):
        flagged = np.vstack([w.flagged if w.flagged is not None else np.zeros(w.values.size, bool) for w in order])
    first = min(waves, key=lambda w: w.segment)
    first_time = er7.parse_dtm(first.time, "OBX-14 observation time", scanned.assume_tz)
    return Parts(tuple(w.sent_as for w in order), signal, fs, flagged, first.device, first_time, skipped)


def _wave(sig: _Signal, lead: str, scanned: ScannedOru, sender: SenderRule | None) -> _Wave:
    d, charset, f = scanned.delimiters, scanned.charset, sig.fields
    ucode, utext = scanned.memo.unit(er7.field(f, 6))
    try:
        unit_mv = _voltage_or_counts(ucode, utext)
    except codes.UnknownUnit:
        raise DecodeError(f"lead {lead}: unit {clip(ucode or utext)} is not a voltage unit", "unit", "AE") from None
    try:
        raw = parse_na(er7.field(f, 5), d.component.encode("latin-1"))
    except SampleError as e:
        if sig.segment == scanned.cut_at:
            raise _truncated(f"its last segment (OBX {sig.segment + 1}) ends inside a sample array") from None
        raise DecodeError(f"lead {lead}: {e}", "samples", "AE") from None
    if not np.isfinite(raw).all():
        bad = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise DecodeError(f"lead {lead}: sample {bad + 1} is not finite (NaN/inf)", "non-finite", "AE")

    rate = resolution = None
    data_range: tuple[float, float, float | None] | None = None
    inop = False
    for attr in sig.attrs:
        if attr.kind == "other":
            continue
        if attr.kind == "scaling":
            raise DecodeError(f"lead {lead}: attribute {attr.name} states a scale this decoder does not read; "
                              "refused rather than ignored", "scale-attribute", "AE")
        if attr.kind == "unidentified":
            raise DecodeError(f"lead {lead}: child OBX (segment {attr.segment + 1}) names no attribute this decoder "
                              "knows (no mnemonic, unknown code); it could change the scale", "unknown-attribute",
                              "AE")
        value = er7.text(er7.field(attr.fields, 5), d, charset).strip()
        acode, atext = scanned.memo.unit(er7.field(attr.fields, 6))
        if attr.kind == "rate":
            rate = _rate_value(value, acode, atext, attr.segment)
        elif attr.kind == "resolution":
            number = scale_number(value, f"lead {lead}: resolution")
            try:
                res_unit = _voltage_or_counts(acode, atext)
            except codes.UnknownUnit:
                res_unit = None
            if res_unit is None:
                raise DecodeError(f"lead {lead}: resolution unit {clip(acode or atext or 'none')} is not a voltage",
                                  "scale-unit", "AE")
            if number <= 0:
                raise DecodeError(f"lead {lead}: resolution must be positive", "scale-attribute", "AE")
            if resolution is not None and resolution != number * res_unit:
                raise DecodeError(f"lead {lead}: two different resolutions", "scale-conflict", "AE")
            resolution = number * res_unit
        elif attr.kind == "range":
            low_high = value.split(d.component)
            if len(low_high) != 2:
                raise DecodeError(f"lead {lead}: data range is not low^high", "scale-attribute", "AE")
            try:
                range_unit = _voltage_or_counts(acode, atext)
            except codes.UnknownUnit:
                raise DecodeError(f"lead {lead}: data range unit {clip(acode or atext)} is neither a voltage nor "
                                  "counts", "scale-conflict", "AE") from None
            data_range = (scale_number(low_high[0], f"lead {lead}: data range"),
                          scale_number(low_high[1], f"lead {lead}: data range"), range_unit)
        elif attr.kind == "inop":
            # 0 = operating; anything else (or a value we cannot read) marks the signal unusable.
            try:
                inop = float(value) != 0.0
            except ValueError:
                inop = True

    scale = counts_scale(lead, unit_mv=unit_mv, resolution_mv=resolution,
                         rule_mv_per_count=sender.mv_per_count if sender else None, counts=raw)
    values = raw * scale if scale != 1.0 else raw
    flagged = None
    if sender is not None and sender.invalid_value is not None and unit_mv is None:
        bad = raw == sender.invalid_value
        if bad.any():
            flagged = bad
            values = np.where(bad, 0.0, values)  # finite under the record contract; the mask tells
    if data_range is not None:
        low, high, range_unit = data_range
        good = values if flagged is None else values[~flagged]
        if range_unit is None:  # a range in counts: the samples must be counts too
            if unit_mv is not None:
                raise DecodeError(f"lead {lead}: data range in counts but samples in a voltage unit",
                                  "scale-conflict", "AE")
            check_range(lead, raw if flagged is None else raw[~flagged], low, high, 1.0, "data range")
        else:
            tolerance = (scale if unit_mv is None else 0.0) + 1e-6 + 1e-9 * abs(high - low) * range_unit
            check_range(lead, good, low * range_unit, high * range_unit, tolerance, "data range")
    if inop:
        flagged = np.ones(values.size, bool)
    device = scanned.memo.device(er7.field(sig.fields, 18))
    return _Wave(lead, sig.lead or lead, values, flagged, rate, device,
                 er7.text(er7.field(sig.fields, 14), d, charset), sig.segment, sig.obr)


def _rate_value(value: str, ucode: str, utext: str, segment: int) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise DecodeError(f"sampling rate in segment {segment + 1} is missing or not a number", "sampling-rate",
                          "AE") from None
    if not _is_per_second(ucode, utext):
        raise DecodeError(f"sampling rate unit {clip(ucode or utext)} is not per second", "sampling-rate", "AE")
    return rate


def _sampling_rate(waves: list[_Wave], scanned: ScannedOru, sender: SenderRule | None) -> float:
    """One rate for the record: each lead's own child, a rate OBX that came before any waveform, else the sender
    rule's rate (feeds that keep it in site configuration). All leads must share one rate."""
    loose = []
    for attr in scanned.loose:
        if attr.kind == "rate":
            d = scanned.delimiters
            value = er7.text(er7.field(attr.fields, 5), d, scanned.charset).strip()
            ucode, utext = scanned.memo.unit(er7.field(attr.fields, 6))
            loose.append(_rate_value(value, ucode, utext, attr.segment))
    per_lead = {w.lead: w.rate for w in waves if w.rate is not None}
    if len(per_lead) > 1 and len(per_lead) < len(waves):
        # Rates come per lead, yet some lead has none: its rate OBX is missing, the usual sign of a cut message.
        missing = ", ".join(w.lead for w in waves if w.lead not in per_lead)
        raise DecodeError(f"no sampling rate for lead(s) {missing} while the other leads have one; "
                          "the message may be truncated", "sampling-rate", "AE")
    values = sorted(set(per_lead.values()) | set(loose))
    if not values and sender is not None and sender.sample_rate_hz is not None:
        values = [sender.sample_rate_hz]
    if not values:
        raise DecodeError("no sampling rate: no MDC_ATTR_SAMP_RATE child OBX for the waveforms and no sender rule "
                          "rate", "sampling-rate", "AE")
    if len(values) > 1:
        listed = ", ".join(f"{v:g}" for v in values)
        raise DecodeError(f"leads sampled at different rates ({listed} /s) are not supported", "sampling-rate", "AE")
    rate = values[0]
    if not np.isfinite(rate) or rate <= 0:
        raise DecodeError(f"sampling rate {rate:g} /s is not positive", "sampling-rate", "AE")
    return rate
