"""Chunk encoders for replay and round-trip tests (docs/SPEC.md §11): PCD-01 gateway chunks and ORU^W01.

Plain ER7 strings: every value written is a number, a code or a text run through `_esc`, so hl7apy's segment
model (milliseconds per OBX) would add cost and nothing else here.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from engine.record import EcgRecord
from integrations.hl7 import codes
from integrations.hl7.er7 import format_dtm

LeadStyle = Literal["mnemonic", "mixed", "bare"]


def _esc(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\"))


def _header(msg_type: str, version: str, control_id: str, app: str, facility: str, now: datetime,
            record: EcgRecord, bed: Sequence[str]) -> list[str]:
    pid = f"PID|1||{_esc(record.patient_id or '')}"
    if record.birth_date or record.sex:
        pid += f"||||{record.birth_date.strftime('%Y%m%d') if record.birth_date else ''}|{record.sex or ''}"
    return [
        f"MSH|^~\\&|{_esc(app)}|{_esc(facility)}|TWIWATCH|TWIWATCH|{format_dtm(now)}||{msg_type}|{_esc(control_id)}"
        f"|P|{version}",
        pid,
        "PV1|1|I|" + "^".join(_esc(b) for b in bed),
    ]


def encode_pcd01_chunk(
    record: EcgRecord,
    *,
    control_id: str,
    resolution_mv: float | None = 0.02,
    lead_style: LeadStyle = "mnemonic",
    send_rate: bool = True,
    inop_leads: Sequence[str] = (),
    extra_signals: Sequence[tuple[str, np.ndarray]] = (),
    sending_app: str = "EGATEWAY",
    sending_facility: str = "ICU",
    bed: Sequence[str] = ("ICU", "07"),
    device_id: str = "0011223344556677",
    message_time: datetime | None = None,
) -> bytes:
    """One ORU^R01 v2.3.1 in the documented Mindray eGateway layout: per signal an NA OBX of integer counts (no
    unit), then `.1` sample rate (code 0), `.2` MDC_ATTR_NU_MSMT_RES = resolution_mv in mV, `.3` MDC_EVT_INOP.

    resolution_mv None: no resolution child (a feed that relies on a sender rule). lead_style: `mnemonic`
    (vendor code 0 with MDC_ECG_LEAD_*), `mixed` (131329^MDC_ECG_LEAD_I pairs), `bare` (the numeric MDC code
    alone). send_rate False: no rate child (the rate lives in site configuration). extra_signals: (mnemonic,
    counts) of non-ECG signals (pleth, ...) written as further NA OBXs with their own children.
    """
    start = record.acquired_at or datetime.now(UTC)
    lines = _header("ORU^R01", "2.3.1", control_id, sending_app, sending_facility,
                    message_time or start, record, bed)
    lines.append(f"OBR|1||{_esc(control_id)}|{codes.ECG_ELEC_POTL_BASE[0]}^{codes.ECG_ELEC_POTL_BASE[1]}^MDC|||"
                 f"{format_dtm(start)}")
    step = resolution_mv if resolution_mv is not None else 0.001
    counts = np.rint(record.signal.astype(np.float64) / step).astype(np.int64)
    obx = 0
    time = format_dtm(start)
    signals: list[tuple[str, str, np.ndarray, bool]] = []
    for n, lead in enumerate(record.leads):
        sent = _MONITORING_NAME.get(lead, lead) if lead in record.approximated_leads else lead
        signals.append((_lead_code(sent, lead_style), lead, counts[n], True))
    for mnemonic, values in extra_signals:
        signals.append((f"0^{mnemonic}^MDC", mnemonic, np.asarray(values, dtype=np.int64), False))
    for n, (ident, lead, values, is_ecg) in enumerate(signals, start=1):
        path = f"1.{n}.1.{n}"
        obx += 1
        lines.append(f"OBX|{obx}|NA|{ident}|{path}|{'^'.join(map(str, values.tolist()))}||||||F|||{time}||||"
                     f"{device_id}")
        if send_rate:
            obx += 1
            lines.append(f"OBX|{obx}|NM|0^MDC_ATTR_SAMP_RATE^MDC|{path}.1|{record.fs:g}|264608^MDC_DIM_PER_SEC^MDC|||"
                         "||F")
        if resolution_mv is not None and is_ecg:
            obx += 1
            lines.append(f"OBX|{obx}|NM|{codes.RESOLUTION[0]}^{codes.RESOLUTION[1]}^MDC|{path}.2|{resolution_mv:g}|"
                         "266418^MDC_DIM_MILLI_VOLT^MDC|||||F")
        obx += 1
        lines.append(f"OBX|{obx}|NM|{codes.INOP[0]}^{codes.INOP[1]}^MDC|{path}.3|{int(lead in inop_leads)}||||||F")
    return ("\r".join(lines) + "\r").encode("utf-8")


# Approximated leads go back out under their monitoring names (the record keeps only the canonical name + mark).
_MONITORING_NAME = {"I": "MLI", "II": "MLII", "III": "MLIII", **{f"V{i}": f"MCL{i}" for i in range(1, 7)}}


def _lead_code(lead: str, style: LeadStyle) -> str:
    if lead not in codes.LEAD_CODES:  # monitoring names (MLII, V, ECG) travel by name
        return f"0^{lead}^MDC" if style != "bare" else f"^{lead}"
    potl, _ = codes.LEAD_CODES[lead]
    name = f"MDC_ECG_LEAD_{codes.mnemonic_suffix(lead)}"
    return {"mnemonic": f"0^{name}^MDC", "mixed": f"{potl}^{name}^MDC", "bare": str(potl)}[style]


def encode_w01(
    segments: Sequence[EcgRecord],
    *,
    control_id: str,
    sensitivity_mv: float = 0.0025,
    baseline: int = 0,
    correction: float = 1.0,
    multiplexed: bool = True,
    wav_split: int = 1,
    sensitivity_unit: str = "uV",
    channel_range: tuple[int, int] | None = (-32768, 32767),
    extra_channels: Sequence[tuple[str, np.ndarray]] = (),
    sending_app: str = "OLDCART",
    sending_facility: str = "WARD3",
    bed: Sequence[str] = ("W3", "12", "B"),
) -> bytes:
    """One ORU^W01 (v2.3): a CHN with sticky defaults (only channel 1 states sensitivity, calibration, rate and
    range), then per segment a TIM and `wav_split` WAV OBXs (MA or NA channel block). Raw = round(mV /
    (sensitivity x correction)) + baseline; sensitivity written in `sensitivity_unit` (uV or mV).
    extra_channels: (name, raw values per segment concatenated) of non-ECG channels, appended after the leads."""
    first = segments[0]
    lines = _header("ORU^W01", "2.3", control_id, sending_app, sending_facility,
                    first.acquired_at or datetime.now(UTC), first, bed)
    lines.append(f"OBR|1||{_esc(control_id)}|5^ECG^L")
    names = list(first.leads) + [name for name, _ in extra_channels]
    sens_text = f"{sensitivity_mv * 1000:g}&uV" if sensitivity_unit == "uV" else f"{sensitivity_mv:g}&mV"
    lo_hi = f"{channel_range[0]}&{channel_range[1]}" if channel_range else ""
    chans = []
    for k, name in enumerate(names):
        if k == 0:
            chans.append(f"{k + 1}&{_esc(name)}^^{sens_text}^{correction:g}&{baseline}&0^{first.fs:g}^{lo_hi}")
        else:
            chans.append(f"{k + 1}&{_esc(name)}")  # sticky defaults: the rest inherit channel 1's values
    obx = 1
    lines.append(f"OBX|{obx}|CD|5&CHN^^L|1|{'~'.join(chans)}||||||F")
    offset = 0
    for seg in segments:
        raw = np.rint(seg.signal.astype(np.float64) / (sensitivity_mv * correction)).astype(np.int64) + baseline
        extra = [np.asarray(v[offset:offset + seg.n_samples], dtype=np.int64) for _, v in extra_channels]
        offset += seg.n_samples
        block = np.vstack([raw] + [e[None, :] for e in extra]) if extra else raw
        obx += 1
        lines.append(f"OBX|{obx}|TS|5&TIM^^L|1|{format_dtm(seg.acquired_at or datetime.now(UTC))}||||||F")
        for part in np.array_split(block, wav_split, axis=1):
            obx += 1
            if multiplexed:
                value = "~".join("^".join(map(str, row)) for row in part.T.tolist())
                lines.append(f"OBX|{obx}|MA|5&WAV^^L|1|{value}||||||F")
            else:
                value = "~".join("^".join(map(str, row)) for row in part.tolist())
                lines.append(f"OBX|{obx}|NA|5&WAV^^L|1|{value}||||||F")
    return ("\r".join(lines) + "\r").encode("utf-8")
