"""The ECG as SVG on the standard paper grid: 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major lines.

The SVG's user unit is one millimetre and its width/height attributes are in mm, so a printout at scale 100 % is
true scale (the print stylesheet never resizes it). Twelve standard leads are laid out 4 columns x 3 rows of 2.5 s
plus a 10-s rhythm strip of lead II, each row starting with a 1 mV calibration pulse; fewer leads (a monitor window)
are drawn one full-width row each. T-wave fiducials (t peak, t offset; per beat, samples at the signal's rate from
its start, docs/SPEC.md §13.1) are marked on the trace; leads in a TWI group are labelled as such.

Everything is drawn with presentation attributes (no style attributes), so the page's Content-Security-Policy
(no inline style) holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from integrations.review.analysis_message import decode_signal as decode_leads

MM_PER_S = 25.0
MM_PER_MV = 10.0
MINOR_MM = 1.0
MAJOR_MM = 5.0
ROW_MM = 35.0  # 7 major boxes: +/- 1.75 mV around the row's baseline before traces overlap
CAL_MM = 10.0  # left margin holding the 1 mV calibration pulse
COL_S = 2.5
STRIP_S = 10.0
LABEL_PAD_MM = 1.5

STANDARD_COLUMNS = [["I", "II", "III"], ["aVR", "aVL", "aVF"], ["V1", "V2", "V3"], ["V4", "V5", "V6"]]
STANDARD_LEADS = [lead for col in STANDARD_COLUMNS for lead in col]

GRID_MINOR = "#f2b8b8"
GRID_MAJOR = "#d9534f"
TRACE = "#111111"
MARK = "#1f4fd1"
TWI_LABEL = "#b00020"


class SignalError(ValueError):
    """The stored signal cannot be drawn (not the §13.1 shape)."""


@dataclass
class Signal:
    fs: float
    leads: dict[str, np.ndarray]  # µV, int16 widened to float
    derived: frozenset[str] = frozenset()  # limb leads the engine computed from I and II
    flagged: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # [start, end) runs the sender flagged

    @property
    def duration_s(self) -> float:
        return max((len(v) for v in self.leads.values()), default=0) / self.fs


def decode_signal(signal: dict[str, Any]) -> Signal:
    """§13.1 `signal`: {"fs", "units": "uV", "dtype": "int16", "leads": {lead: base64 little-endian int16}}."""
    try:
        fs = float(signal["fs"])
        if signal.get("dtype", "int16") != "int16" or fs <= 0:
            raise SignalError(f"unsupported signal (dtype {signal.get('dtype')!r}, fs {fs})")
        leads = {name: values.astype(np.float64) for name, values in decode_leads(signal).items()}
        flagged = {lead: [(int(a), int(b)) for a, b in runs] for lead, runs in (signal.get("flagged") or {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SignalError):
            raise
        raise SignalError(f"unreadable signal ({type(exc).__name__})") from None
    return Signal(fs, leads, frozenset(signal.get("derived") or ()), flagged)


def _fmt(values: np.ndarray) -> list[str]:
    return np.char.mod("%.2f", np.round(values, 2)).tolist()


def _polyline(x: np.ndarray, y: np.ndarray) -> str:
    pts = " ".join(f"{a},{b}" for a, b in zip(_fmt(x), _fmt(y), strict=True))
    return f'<polyline class="ecg-trace" points="{pts}" fill="none" stroke="{TRACE}" stroke-width="0.3" ' \
           'stroke-linejoin="round" stroke-linecap="round"/>'


def _grid(width: float, height: float) -> str:
    """Minor lines every 1 mm and major lines every 5 mm, as two paths (small, exact in print)."""
    def lines(step: float, skip_major: bool) -> str:
        xs = np.arange(0.0, width + 1e-6, step)
        ys = np.arange(0.0, height + 1e-6, step)
        if skip_major:
            xs = xs[np.abs(np.round(xs / MAJOR_MM) * MAJOR_MM - xs) > 1e-6]
            ys = ys[np.abs(np.round(ys / MAJOR_MM) * MAJOR_MM - ys) > 1e-6]
        return "".join(f"M{x:g} 0V{height:g}" for x in xs) + "".join(f"M0 {y:g}H{width:g}" for y in ys)

    return (f'<g class="ecg-grid" data-minor-mm="{MINOR_MM:g}" data-major-mm="{MAJOR_MM:g}">'
            f'<path class="ecg-grid-minor" d="{lines(MINOR_MM, True)}" stroke="{GRID_MINOR}" stroke-width="0.1"/>'
            f'<path class="ecg-grid-major" d="{lines(MAJOR_MM, False)}" stroke="{GRID_MAJOR}" stroke-width="0.25"/>'
            '</g>')


def _calibration(x0: float, baseline: float) -> str:
    """The 1 mV x 0.2 s pulse: 10 mm tall, 5 mm wide, at 25 mm/s and 10 mm/mV."""
    top = baseline - MM_PER_MV
    return (f'<path class="ecg-cal" d="M{x0 + 1:g} {baseline:g}H{x0 + 2.5:g}V{top:g}H{x0 + 7.5:g}V{baseline:g}'
            f'H{x0 + 9:g}" fill="none" stroke="{TRACE}" stroke-width="0.3"/>')


def _beats(analysis: dict[str, Any] | None, lead: str) -> list[dict[str, Any]]:
    if not analysis:
        return []
    lr = (analysis.get("leads") or {}).get(lead) or {}
    return [b for b in lr.get("beats") or [] if isinstance(b, dict)]


def _segment(sig: Signal, lead: str, t0: float, t1: float, x0: float, baseline: float,
             analysis: dict[str, Any] | None) -> tuple[str, int]:
    """One lead's trace from t0 to t1 s, starting at x0 mm, centred on `baseline` mm; its T marks. Returns (svg,
    number of T marks drawn)."""
    data = sig.leads[lead]
    i0, i1 = int(round(t0 * sig.fs)), min(len(data), int(round(t1 * sig.fs)))
    if i1 - i0 < 2:
        return "", 0
    seg = data[i0:i1]
    # Centre the trace on its row: the median is the isoelectric level for most of a strip (wander stays visible).
    offset = float(np.median(seg))
    idx = np.arange(i0, i1)
    x = x0 + (idx / sig.fs - t0) * MM_PER_S
    y = baseline - (seg - offset) / 1000.0 * MM_PER_MV
    parts = []
    for a, b in sig.flagged.get(lead, ()):  # the sender's flagged samples (lead-off, INOP, FHIR E/U/L), shaded
        lo, hi = max(a, i0), min(b, i1)
        if hi > lo:
            parts.append(f'<rect class="flagged" x="{x0 + (lo / sig.fs - t0) * MM_PER_S:.2f}" y="{baseline - 15:.2f}" '
                         f'width="{(hi - lo) / sig.fs * MM_PER_S:.2f}" height="30" fill="#9e9e9e" fill-opacity="0.35">'
                         f'<title>flagged by the sender ({escape(lead)})</title></rect>')
    parts.append(_polyline(x, y))
    marks = 0
    for beat in _beats(analysis, lead):
        for key, shape in (("t_peak", "peak"), ("t_offset", "offset")):
            at = beat.get(key)
            if not isinstance(at, int | float) or not i0 <= at < i1:
                continue
            mx = x0 + (at / sig.fs - t0) * MM_PER_S
            my = baseline - (data[int(at)] - offset) / 1000.0 * MM_PER_MV
            if shape == "peak":
                parts.append(f'<circle class="t-mark t-peak" cx="{mx:.2f}" cy="{my:.2f}" r="0.7" fill="none" '
                             f'stroke="{MARK}" stroke-width="0.3"><title>T peak ({lead})</title></circle>')
            else:
                parts.append(f'<path class="t-mark t-offset" d="M{mx:.2f} {my - 2:.2f}V{my + 2:.2f}" '
                             f'stroke="{MARK}" stroke-width="0.3"><title>T offset ({lead})</title></path>')
            marks += 1
    return "".join(parts), marks


def _label(x: float, y: float, lead: str, twi: bool, derived: bool = False) -> str:
    fill = TWI_LABEL if twi else TRACE
    weight = "bold" if twi else "normal"
    suffix = (" (derived)" if derived else "") + (" (TWI)" if twi else "")
    return (f'<text class="lead-label{" lead-twi" if twi else ""}" x="{x:.2f}" y="{y:.2f}" font-size="3" '
            f'font-family="sans-serif" font-weight="{weight}" fill="{fill}">{escape(lead)}{suffix}</text>')


def render_ecg(signal: dict[str, Any], analysis: dict[str, Any] | None = None, *, twi_leads: set[str] | None = None,
               title: str = "ECG", svg_id: str = "ecg") -> str:
    """The figure as an SVG string (ids prefixed with `svg_id`, so several fit on one page)."""
    sig = decode_signal(signal)
    twi_leads = twi_leads or set()
    present = [lead for lead in STANDARD_LEADS if lead in sig.leads]
    if len(present) >= 8:
        body, width, height, marks = _twelve_lead(sig, analysis, twi_leads)
    else:
        body, width, height, marks = _strips(sig, analysis, twi_leads)
    clip = f"{escape(svg_id)}-clip"
    desc = (f"{escape(title)}: {len(sig.leads)} leads, {sig.duration_s:.1f} s at {sig.fs:g} Hz, drawn at 25 mm/s and "
            f"10 mm/mV on a 1 mm grid; {marks} T-wave marks")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="ecg" id="{escape(svg_id)}" role="img" '
            f'aria-labelledby="{escape(svg_id)}-title {escape(svg_id)}-desc" width="{width:g}mm" height="{height:g}mm" '
            f'viewBox="0 0 {width:g} {height:g}" data-mm-per-s="{MM_PER_S:g}" data-mm-per-mv="{MM_PER_MV:g}" '
            f'data-t-marks="{marks}">'
            f'<title id="{escape(svg_id)}-title">{escape(title)}</title><desc id="{escape(svg_id)}-desc">{desc}</desc>'
            f'<rect x="0" y="0" width="{width:g}" height="{height:g}" fill="#ffffff"/>'
            f'{_grid(width, height)}'
            f'<clipPath id="{clip}"><rect x="0" y="0" width="{width:g}" height="{height:g}"/></clipPath>'
            f'<g clip-path="url(#{clip})">{body}</g></svg>')


def _twelve_lead(sig: Signal, analysis, twi_leads) -> tuple[str, float, float, int]:
    width = CAL_MM + STRIP_S * MM_PER_S
    height = ROW_MM * 4
    parts, marks = [], 0
    for row in range(4):
        baseline = ROW_MM * row + ROW_MM / 2
        parts.append(_calibration(0.0, baseline))
        if row < 3:
            for col, leads in enumerate(STANDARD_COLUMNS):
                lead = leads[row]
                x0 = CAL_MM + col * COL_S * MM_PER_S
                t0 = col * COL_S
                parts.append(_label(x0 + LABEL_PAD_MM, ROW_MM * row + 4, lead, lead in twi_leads,
                                    lead in sig.derived))
                if lead in sig.leads:
                    svg, n = _segment(sig, lead, t0, t0 + COL_S, x0, baseline, analysis)
                    parts.append(svg)
                    marks += n
                else:
                    parts.append(f'<text x="{x0 + 20:g}" y="{baseline:g}" font-size="3" fill="{TRACE}">'
                                 f'{escape(lead)} absent</text>')
                if col:  # the standard column separator
                    parts.append(f'<path d="M{x0:g} {baseline - 3:g}V{baseline + 3:g}" stroke="{TRACE}" '
                                 'stroke-width="0.3"/>')
        else:
            rhythm = "II" if "II" in sig.leads else next(iter(sig.leads))
            parts.append(_label(CAL_MM + LABEL_PAD_MM, ROW_MM * row + 4, f"{rhythm} rhythm", rhythm in twi_leads))
            svg, n = _segment(sig, rhythm, 0.0, STRIP_S, CAL_MM, baseline, analysis)
            parts.append(svg)
            marks += n
    return "".join(parts), width, height, marks


def _strips(sig: Signal, analysis, twi_leads) -> tuple[str, float, float, int]:
    """Fewer than 8 standard leads (monitor windows): each lead one row of up to 10 s."""
    duration = min(STRIP_S, sig.duration_s)
    width = CAL_MM + max(duration, COL_S) * MM_PER_S
    leads = list(sig.leads)
    height = ROW_MM * max(1, len(leads))
    parts, marks = [], 0
    for row, lead in enumerate(leads):
        baseline = ROW_MM * row + ROW_MM / 2
        parts.append(_calibration(0.0, baseline))
        parts.append(_label(CAL_MM + LABEL_PAD_MM, ROW_MM * row + 4, lead, lead in twi_leads, lead in sig.derived))
        svg, n = _segment(sig, lead, 0.0, duration, CAL_MM, baseline, analysis)
        parts.append(svg)
        marks += n
    return "".join(parts), width, height, marks
