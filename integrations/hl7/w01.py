"""HL7 v2.3 chapter 7 generic waveform (ORU^W01) -> Chunk (docs/SPEC.md §11).

OBX-3 carries a category suffix (`5&CHN`, or the suffix alone): TIM (TS: time of the first sample that follows),
CHN (CD, one repetition per channel: number&name ^ source ^ sensitivity&units ^ correction&baseline&skew ^
sampling frequency ^ minimum&maximum; omitted components inherit the last value given: "sticky defaults"),
WAV (NA channel block: channels by `~`, samples by `^`; or MA multiplexed: samples by `~`, channels by `^`; may be
split over several WAV OBXs) and ANO (ignored). A new TIM before further WAVs is a gap: a new segment.
Physical = (raw - baseline) x sensitivity x correction. Time skew is not applied (it is sub-sample on monitors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import numpy as np

from engine.errors import InvalidRecord
from engine.record import EcgRecord, lead_and_mark, lead_order, make_record
from integrations.chunk import Chunk
from integrations.errors import DecodeError
from integrations.hl7 import codes, er7
from integrations.hl7.decode import _body_charset, _patient_meta, check_control_id, parse_header
from integrations.hl7.numarray import SampleError, parse_na
from integrations.hl7.pcd01 import clip
from integrations.identity import hl7_source_id
from integrations.scale import check_range, counts_scale, scale_number
from integrations.senders import SenderRule

_SUFFIXES = ("TIM", "CHN", "WAV", "ANO")


@dataclass
class _Channel:
    number: str
    name: str
    lead: str | None  # ECG lead name as sent (II, MLII, V, ECG) or None (not ECG)
    sensitivity: float | None
    unit_code: str
    unit_text: str
    correction: float
    baseline: float
    fs: float | None
    low: float | None
    high: float | None


@dataclass
class _Segment:
    time: datetime | None
    blocks: list[np.ndarray] = field(default_factory=list)  # (channels, samples) per WAV OBX


@dataclass
class _Group:
    channels: list[_Channel] | None = None
    segments: list[_Segment] = field(default_factory=list)
    pending_gap: bool = True  # the next WAV needs a TIM first (at the start, or after a TIM)


def decode_w01(data: bytes, *, sender: SenderRule | None, assume_tz: tzinfo | None = None) -> Chunk:
    """One ORU^W01 as a Chunk: a segment record per TIM-delimited run of WAVs, non-ECG channels skipped."""
    header = parse_header(data)
    if (header["message_code"].upper(), header["trigger_event"].upper()) != ("ORU", "W01"):
        raise DecodeError("not an ORU^W01 message", "message-type", "AR")
    check_control_id(header)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    charset = _body_charset(header["charset"], data)
    d = er7.Delimiters(header["field_sep"], *header["encoding_chars"][:4])
    fsep = d.field.encode("latin-1")
    pid = pv1 = None
    groups: dict[str, _Group] = {}
    for i, seg in enumerate(er7.split_segments(data)):
        name = er7.segment_name(seg, fsep)
        if name is None:
            raise DecodeError(f"segment {i + 1} does not start with a segment name", "structure", "AE")
        if name == "PID":
            pid = pid or er7.fields(seg, fsep)
        elif name == "PV1":
            pv1 = pv1 or er7.fields(seg, fsep)
        elif name == "OBX":
            _obx(er7.fields(seg, fsep), i, d, charset, assume_tz, groups)
    ecg_groups = [g for g in groups.values() if g.channels and any(c.lead for c in g.channels)]
    skipped = tuple(c.name for g in groups.values() for c in (g.channels or []) if c.lead is None)
    source_id = hl7_source_id(header["sending_app"], header["sending_facility"], header["control_id"])
    meta = _patient_meta(pid, pv1, d, charset, sender.bed_component if sender else 3)
    bed = tuple(c.strip() for c in er7.components(er7.field(pv1, 3), d, charset)) if pv1 else ()
    base = dict(skipped=skipped, sender=f"hl7:{header['sending_app']}|{header['sending_facility']}",
                device_id=None, bed=bed if any(bed) else (), source_id=source_id)
    if not ecg_groups:
        if skipped:
            return Chunk(segments=(), **base)
        raise DecodeError("no CHN channel with an ECG lead in the ORU^W01", "no-waveform", "AE")
    if len(ecg_groups) > 1:
        raise DecodeError("ECG channels in more than one OBX-4 group; one group expected", "structure", "AE")
    group = ecg_groups[0]
    channels = group.channels or []
    records = tuple(_segment_record(seg, channels, sender, source_id, meta)
                    for seg in group.segments if seg.blocks)
    if not records:
        raise DecodeError("the ORU^W01 defines channels but carries no WAV samples", "no-waveform", "AE")
    return Chunk(segments=records, **base)


def _suffix(ident_field: bytes, d: er7.Delimiters, charset: str) -> str:
    comps = er7.components(ident_field, d, charset)
    first = comps[0].split(d.subcomponent)[-1].strip().upper() if comps else ""
    if first in _SUFFIXES:
        return first
    for comp in comps[1:]:
        tail = comp.split(d.subcomponent)[-1].strip().upper()
        if tail in _SUFFIXES:
            return tail
    return ""


def _obx(f: list[bytes], i: int, d: er7.Delimiters, charset: str, assume_tz: tzinfo | None,
         groups: dict[str, _Group]) -> None:
    suffix = _suffix(er7.field(f, 3), d, charset)
    vtype = er7.text(er7.field(f, 2), d, charset).strip().upper()
    group = groups.setdefault(er7.text(er7.field(f, 4), d, charset).strip(), _Group())
    if suffix == "TIM":
        time = er7.parse_dtm(er7.text(er7.field(f, 5), d, charset), f"TIM (segment {i + 1})", assume_tz)
        group.segments.append(_Segment(time))
        group.pending_gap = False
    elif suffix == "CHN":
        if group.channels is not None and any(s.blocks for s in group.segments):
            raise DecodeError(f"CHN (segment {i + 1}) redefines channels after samples came", "structure", "AE")
        group.channels = _channels(er7.field(f, 5), d, charset, i)
    elif suffix == "WAV":
        if group.channels is None:
            raise DecodeError(f"WAV (segment {i + 1}) before any CHN channel definition", "structure", "AE")
        if not group.segments or group.pending_gap:
            raise DecodeError(f"WAV (segment {i + 1}) before any TIM", "structure", "AE")
        block = _samples(er7.field(f, 5), vtype, len(group.channels), d, i)
        current = group.segments[-1]
        if current.blocks and current.blocks[-1].shape[0] != block.shape[0]:
            raise DecodeError(f"WAV (segment {i + 1}) has a different channel count", "structure", "AE")
        current.blocks.append(block)
    elif suffix != "ANO":
        raise DecodeError(f"OBX (segment {i + 1}) has no waveform category suffix (TIM, CHN, WAV, ANO)",
                          "structure", "AE")


def _channels(value: bytes, d: er7.Delimiters, charset: str, i: int) -> list[_Channel]:
    text = value.decode(charset, errors="replace")
    reps = [r for r in text.split(d.repetition) if r.strip()]
    if not reps:
        raise DecodeError(f"CHN (segment {i + 1}) defines no channel", "structure", "AE")
    sticky: dict[str, Any] = {"sens": None, "ucode": "", "utext": "", "corr": 1.0, "base": 0.0, "fs": None,
                              "low": None, "high": None}
    out = []
    for k, rep in enumerate(reps):
        comps = [c.split(d.subcomponent) for c in rep.split(d.component)] + [[]] * 6

        def sub(c: int, s: int, comps: list[list[str]] = comps) -> str:
            parts = comps[c]
            return er7.unescape(parts[s], d).strip() if s < len(parts) else ""

        number, name = sub(0, 0), sub(0, 1)
        what = f"CHN channel {k + 1}"
        if sub(2, 0):
            sticky["sens"] = scale_number(sub(2, 0), f"{what} sensitivity")
            sticky["ucode"], sticky["utext"] = sub(2, 1), sub(2, 2)
        if sub(3, 0):
            sticky["corr"] = scale_number(sub(3, 0), f"{what} correction")
        if sub(3, 1):
            sticky["base"] = scale_number(sub(3, 1), f"{what} baseline")
        if sub(4, 0):
            sticky["fs"] = scale_number(sub(4, 0), f"{what} sampling frequency")
        if sub(5, 0):
            sticky["low"] = scale_number(sub(5, 0), f"{what} minimum")
        if sub(5, 1):
            sticky["high"] = scale_number(sub(5, 1), f"{what} maximum")
        lead = _lead(name)
        out.append(_Channel(number, clip(name or f"channel {number or k + 1}"), lead, sticky["sens"],
                            sticky["ucode"], sticky["utext"], sticky["corr"], sticky["base"], sticky["fs"],
                            sticky["low"], sticky["high"]))
    return out


def _lead(name: str) -> str | None:
    if not name:
        return None  # a channel without a name could be any signal: skipped (named by its number)
    try:
        lead = codes.lead_from_code("", name)
    except codes.LeadConflict:
        lead = None
    return lead or codes.monitoring_lead("", name)


def _samples(value: bytes, vtype: str, n_channels: int, d: er7.Delimiters, i: int) -> np.ndarray:
    rep, comp = d.repetition.encode("latin-1"), d.component.encode("latin-1")
    try:
        if vtype == "NA":  # channel block: one repetition per channel
            rows = value.split(rep)
            if len(rows) != n_channels:
                raise DecodeError(f"WAV (segment {i + 1}) has {len(rows)} channel blocks for {n_channels} channels",
                                  "structure", "AE")
            arrays = [parse_na(r, comp) for r in rows]
            if len({a.size for a in arrays}) > 1:
                raise DecodeError(f"WAV (segment {i + 1}) channel blocks differ in length", "lead-lengths", "AE")
            block = np.vstack(arrays)
        elif vtype == "MA":  # multiplexed: one repetition per sample time, channels as components
            flat = parse_na(value.replace(rep, comp), comp)
            buf = np.frombuffer(value, dtype=np.uint8)
            row_starts = np.concatenate(([0], np.flatnonzero(buf == rep[0]) + 1))
            per_row = np.add.reduceat((buf == comp[0]).astype(np.int64), row_starts) + 1 if buf.size else [0]
            if np.any(np.asarray(per_row) != n_channels):
                raise DecodeError(f"WAV (segment {i + 1}) has sample times without one value per channel",
                                  "structure", "AE")
            block = flat.reshape(-1, n_channels).T
        else:
            raise DecodeError(f"WAV (segment {i + 1}) value type must be NA or MA", "unsupported-value-type", "AE")
    except SampleError as e:
        raise DecodeError(f"WAV (segment {i + 1}): {e}", "samples", "AE") from None
    if not np.isfinite(block).all():
        raise DecodeError(f"WAV (segment {i + 1}) holds a non-finite sample", "non-finite", "AE")
    return block


def _segment_record(seg: _Segment, channels: list[_Channel], sender: SenderRule | None, source_id: str,
                    meta: dict[str, Any]) -> EcgRecord:
    raw = np.hstack(seg.blocks) if len(seg.blocks) > 1 else seg.blocks[0]
    keep = [k for k, c in enumerate(channels) if c.lead is not None]
    rows, names, rates = [], [], set()
    for k in keep:
        c = channels[k]
        lead = lead_and_mark(c.lead or "")[0]
        resolution = None
        if c.sensitivity is not None:
            try:
                unit = codes.voltage_or_counts(c.unit_code, c.unit_text)
            except codes.UnknownUnit:
                unit = None
            if unit is None:
                raise DecodeError(f"lead {lead}: channel sensitivity unit {clip(c.unit_code or c.unit_text or 'none')}"
                                  " is not a voltage", "scale-unit", "AE")
            resolution = c.sensitivity * unit * c.correction
        rule = sender.mv_per_count * c.correction if sender and sender.mv_per_count else None
        shifted = raw[k] - c.baseline
        scale = counts_scale(lead, unit_mv=None, resolution_mv=resolution, rule_mv_per_count=rule, counts=raw[k],
                             resolution_name="channel sensitivity")
        if c.low is not None and c.high is not None:
            check_range(lead, raw[k], c.low, c.high, 0.0, "channel range (minimum&maximum)")
        fs = c.fs if c.fs is not None else (sender.sample_rate_hz if sender else None)
        if fs is None:
            raise DecodeError(f"lead {lead}: no sampling frequency in CHN and no sender rule rate", "sampling-rate",
                              "AE")
        rates.add(fs)
        rows.append(shifted * scale)
        names.append(c.lead or lead)
    if len(rates) > 1:
        raise DecodeError("ECG channels sampled at different rates are not supported", "sampling-rate", "AE")
    order = sorted(range(len(names)), key=lambda j: lead_order(lead_and_mark(names[j])[0]))
    try:
        return make_record(np.vstack([rows[j] for j in order]), [names[j] for j in order], rates.pop(), source_id,
                           acquired_at=seg.time, source_format="hl7", kind="chunk", **meta)
    except InvalidRecord as e:
        raise DecodeError(e.reason, e.code, "AE") from None
