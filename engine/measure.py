"""Per-lead measurements on the median beat, and per-record rhythm measures.

Thresholds (documented here because clinicians read the polarity):
* flat      : |T| < 0.05 mV (half a millimetre at 10 mm/mV) on the dominant lobe;
* biphasic  : both an upright and an inverted lobe inside the T wave reach 0.05 mV and the smaller is at least half
              the larger (a small terminal wiggle is not a biphasic T); a lobe before the T peak counts only when
              its lowest (highest) point lies inside the T wave and the signal falls (rises) into it after the J
              point: the end of an S wave or a depressed J point still returning to the baseline is not an
              inverted T lobe, nor is a dip of the ST segment before the T onset (`t_lobes`);
* otherwise : the sign of the dominant lobe (the T peak chosen relative to the isoelectric PR level).
Symmetry is the steepest slope of the first limb (onset -> peak) over the steepest slope of the second limb
(peak -> offset) of the sign-flipped T: for an inverted T that is descent/ascent. ~1 is symmetric; secondary
(strain, bundle branch) inversions descend slowly and return fast, giving < ~0.7.
QRS "mostly positive": the R amplitude exceeds the S depth (net positive main deflection).
S amplitude is reported as a depth (>= 0 mV): the lowest point after the R peak inside the QRS, or the deepest
point of a QS complex (no R, or an "R" under 0.1 mV / a quarter of the negative deflection).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.filters import moving_average

FLAT_MV = 0.05
BIPHASIC_MIN_LOBE_MV = 0.05
BIPHASIC_LOBE_RATIO = 0.5
LOBE_FALL_SHARE = 0.5  # a lobe before the T peak must be entered by at least this share of its depth (t_lobes)
LOBE_ONSET_TOLERANCE_S = 0.01  # ... and lie at most this long before the T onset (placed on or near a lobe's apex)
P_PRESENT_MV = 0.05
IRREGULAR_SUCCESSIVE = 0.10  # median |successive RR difference| / median RR above this: irregular


@dataclass
class LeadMeasure:
    t_amp: float
    t_pos: float  # largest upright value inside the T wave (mV, >= 0 if any)
    t_neg: float  # lowest value inside the T wave
    polarity: str
    symmetry: float | None
    t_peak_ms: float  # from QRS onset
    t_offset_ms: float
    st_j60: float
    r_amp: float
    s_amp: float
    qrs_mostly_positive: bool
    p_amp: float
    pr_ms: float | None
    r_initial: float = 0.0  # largest upright value before the QRS's deepest point (the r of an rS; mV)


def classify_polarity(amp: float, pos: float, neg: float) -> str:
    if abs(amp) < FLAT_MV and max(pos, -neg) < FLAT_MV:
        return "flat"
    small, large = min(pos, -neg), max(pos, -neg)
    if small >= BIPHASIC_MIN_LOBE_MV and small >= BIPHASIC_LOBE_RATIO * large:
        return "biphasic"
    if abs(amp) < FLAT_MV:
        return "flat"
    return "positive" if amp > 0 else "negative"


def _opening_lobe(lead_in: np.ndarray, pre: np.ndarray, tol: int = 0) -> float:
    """Lowest value of the T wave before its peak (a view in which the lobe is negative) when it is a lobe, else 0.
    lead_in: J point..T onset, pre: T onset..T peak. A lobe has its lowest point inside the T wave (at or after the
    T onset, or within `tol` samples before it: a dip of the ST segment before the T is not the T), and the signal
    comes down into it after the J point by at least LOBE_FALL_SHARE of its depth: a segment that only rises (the S
    wave or a depressed J point still coming up) is not an inverted lobe of the T. Read from the J point because the
    onset of a dominant lobe can sit on the apex of the smaller lobe before it (a +/- T, inverted part larger)."""
    full = np.concatenate([lead_in, pre])
    k = int(np.argmin(full))
    low = float(full[k])
    if low >= 0.0 or k < lead_in.size - tol or float(full[:k + 1].max()) - low < LOBE_FALL_SHARE * -low:
        return 0.0
    return low


def t_lobes(lead_in: np.ndarray, pre: np.ndarray, post: np.ndarray, tol: int = 0) -> tuple[float, float]:
    """(upright lobe >= 0, inverted lobe <= 0) of a T wave, isoelectric-referenced. lead_in: J point..T onset, pre: T
    onset..T peak, post: T peak..T offset. After the peak every value counts (a terminal lobe, as in a
    positive-negative T); before it only a lobe as `_opening_lobe` defines it."""
    neg = min(float(post.min()), 0.0, _opening_lobe(lead_in, pre, tol))
    pos = max(float(post.max()), 0.0, -_opening_lobe(-lead_in, -pre, tol))
    return pos, neg


def lead_measures(tref: np.ndarray, qrs_on: int, qrs_off: int, t_on: np.ndarray, t_peak: np.ndarray,
                  t_off: np.ndarray, t_sign: np.ndarray, p_on: np.ndarray, p_amp: np.ndarray,
                  fs: float) -> list[LeadMeasure]:
    """tref: (leads, window) median beat minus its isoelectric level; marks are window indices per lead."""
    ys = moving_average(tref, int(round(0.02 * fs)))
    dy = np.gradient(ys, axis=1) * fs  # mV/s
    w = tref.shape[1]
    out = []
    ms = 1000.0 / fs
    j60 = min(w - 1, qrs_off + int(round(0.06 * fs)))
    lobe_tol = int(round(LOBE_ONSET_TOLERANCE_S * fs))
    for i in range(tref.shape[0]):  # 12 leads: per-lead scalar bookkeeping, the arrays are tiny
        on, pk, off = int(t_on[i]), int(t_peak[i]), int(t_off[i])
        on, off = min(on, pk), max(off, pk)
        pos, neg = t_lobes(ys[i, min(qrs_off, on):on], ys[i, on:pk + 1], ys[i, pk:off + 1], lobe_tol)
        amp = float(ys[i, pk])
        sign = t_sign[i]
        z = dy[i] * sign
        first = float(z[on:pk + 1].max()) if pk > on else 0.0
        second = float((-z[pk:off + 1]).max()) if off > pk else 0.0
        symmetry = round(first / second, 2) if first > 0 and second > 0 else None
        qrs = tref[i, qrs_on:qrs_off + 1]
        r = float(max(qrs.max(), 0.0))
        r_at, n_at = int(qrs.argmax()), int(qrs.argmin())
        deepest = float(max(-qrs[n_at], 0.0))
        # the deepest point is the S wave when it follows the R, or when there is no real R (QS complex: the
        # "R" is then only the J point or a notch); a deep point before a real R is a Q wave, not an S
        if n_at > r_at or r < max(0.1, 0.25 * deepest):
            s = deepest
        else:
            s = float(max(-qrs[r_at:].min(), 0.0))
        pa = float(p_amp[i])
        pr = (qrs_on - int(p_on[i])) * ms if abs(pa) >= P_PRESENT_MV else None
        out.append(LeadMeasure(
            t_amp=round(amp, 3), t_pos=round(pos, 3), t_neg=round(neg, 3),
            polarity=classify_polarity(amp, pos, neg), symmetry=symmetry,
            t_peak_ms=round((pk - qrs_on) * ms, 1), t_offset_ms=round((off - qrs_on) * ms, 1),
            st_j60=round(float(tref[i, j60]), 3), r_amp=round(r, 3), s_amp=round(s, 3),
            qrs_mostly_positive=bool(r > s), p_amp=round(pa, 3), pr_ms=None if pr is None else round(pr, 1),
            r_initial=round(float(max(qrs[:n_at + 1].max(), 0.0)), 3)))
    return out


@dataclass
class RhythmMeasure:
    heart_rate_bpm: float | None
    rr_cv: float | None
    rhythm: str
    evidence: list[str]


def rhythm_measures(fiducials: np.ndarray, fs: float, p_present: bool, paced: bool) -> RhythmMeasure:
    """sinus: regular (median successive RR change < 10%), 40-150 bpm... with a P wave on the median beat;
    irregular: not regular; paced: pacing spikes lead most QRS complexes; otherwise undetermined."""
    if fiducials.size < 2:
        return RhythmMeasure(None, None, "paced" if paced else "undetermined", ["fewer than two QRS complexes"])
    rr = np.diff(fiducials) / fs
    med = float(np.median(rr))
    hr = 60.0 / med
    cv = float(np.std(rr) / np.mean(rr)) if rr.size >= 2 else 0.0
    succ = float(np.median(np.abs(np.diff(rr))) / med) if rr.size >= 3 else 0.0
    ev = [f"heart rate {hr:.0f} bpm", f"RR coefficient of variation {cv:.2f}"]
    if paced:
        rhythm = "paced"
    elif succ > IRREGULAR_SUCCESSIVE:
        rhythm = "irregular"
        ev.append(f"median successive RR change {100 * succ:.0f}%")
    elif p_present and 30 <= hr <= 180:
        rhythm = "sinus"
        ev.append("P wave before each QRS on the median beat")
    else:
        rhythm = "undetermined"
        ev.append("regular without a consistent P wave" if not p_present else "rate outside 30-180 bpm")
    return RhythmMeasure(round(hr, 1), round(cv, 3), rhythm, ev)
