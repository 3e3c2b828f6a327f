"""Beat epochs, isoelectric level, median beat and T-wave (and P-wave) delineation, vectorised over rows.

A "row" is one lead of one beat (or one lead of the median beat): arrays are (rows, window) and every step is a masked
numpy reduction, so a 12-lead 10-s record is a few dozen array operations, not a per-sample loop.

T peak = the dominant extremum relative to the isoelectric level: the highest interior local maximum and the lowest
interior local minimum of the smoothed wave are both found and the one farther from the isoelectric level wins.
Taking the maximum only (NeuroKit2 issue #1138) picks the wrong peak on inverted T waves; extrema on the window's
edge are not peaks (ST depression running into an upright T, or a T still falling when the window closes) and are
used only when no interior extremum exists.
T offset/onset = trapezium-area method (after Vázquez-Seisdedos et al. 2011): the point on the wave that maximises
the area of the trapezium spanned with the steepest point of the limb and a reference point beyond the wave; it
needs no threshold and works the same for upright and inverted waves (the wave is sign-flipped to upright first).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from engine.filters import moving_average

EPOCH_PRE_S = 0.40  # before the QRS fiducial: room for a long PR interval
EPOCH_POST_S = 0.80
ISO_SEARCH_S = (0.080, 0.004)  # isoelectric level: flattest segment this far before QRS onset
ISO_SEGMENT_S = 0.016
T_START_AFTER_J_S = 0.040  # T-peak search starts this long after the QRS offset (J point)
T_SMOOTH_S = 0.020
T_LOCAL_EXTREMUM_S = 0.040  # half-width of the neighbourhood a local extremum must dominate
T_OFFSET_REACH_S = 0.10  # trapezium reference point: this far past the steepest descent
T_ONSET_REACH_S = 0.120
T_PEAK_HINT_S = 0.050  # per-beat peak search +- this around the median beat's T peak
P_SEARCH_S = (0.30, 0.02)  # P peak: this far before QRS onset
WEAK_WAVE_MV = 0.1  # below this on both lobes a T wave is "weak": its peak follows the other leads' timing


@dataclass
class Epochs:
    data: np.ndarray  # (leads, beats, window) measurement-band signal, edge-clipped
    valid: np.ndarray  # (beats, window) False where the window ran off the strip
    pre: int  # index of the fiducial inside the window


def extract_epochs(x: np.ndarray, fiducials: np.ndarray, fs: float) -> Epochs:
    pre, post = int(round(EPOCH_PRE_S * fs)), int(round(EPOCH_POST_S * fs))
    offs = np.arange(-pre, post + 1)
    idx = fiducials[:, None] + offs[None, :]
    valid = (idx >= 0) & (idx < x.shape[1])
    data = x[:, np.clip(idx, 0, x.shape[1] - 1)]
    return Epochs(data=data, valid=valid, pre=pre)


def isoelectric(y: np.ndarray, vel: np.ndarray, onset: np.ndarray, fs: float) -> np.ndarray:
    """Isoelectric level per row: mean of each lead over the flattest ISO_SEGMENT_S (lowest multi-lead velocity)
    in the PR segment. y: (leads, rows, window); vel: (rows, window); onset: (rows,) index of QRS onset in the window.
    Flatness is judged on all leads together because the PR segment is isoelectric in every lead at once."""
    seg = max(2, int(round(ISO_SEGMENT_S * fs)))
    lo_off, hi_off = int(round(ISO_SEARCH_S[0] * fs)), int(round(ISO_SEARCH_S[1] * fs))
    w = y.shape[-1]
    starts = np.arange(-lo_off, -hi_off - seg + 1)  # segment start offsets relative to onset
    cand = np.clip(onset[:, None] + starts[None, :], 0, w - seg)  # (rows, n_cand)
    csum = np.concatenate([np.zeros((vel.shape[0], 1)), np.cumsum(vel, axis=1)], axis=1)
    flat = np.take_along_axis(csum, cand + seg, 1) - np.take_along_axis(csum, cand, 1)
    # later segments are preferred a little: the P apex is flat too, the PR segment is the nearer flat part
    flat = flat * (1.0 + 0.3 * (starts[::-1][None, :] / max(1, lo_off)))
    best = np.take_along_axis(cand, np.argmin(flat, axis=1)[:, None], 1)[:, 0]
    rows = np.arange(y.shape[1])
    take = best[:, None] + np.arange(seg)[None, :]  # (rows, seg) sample indices of the chosen segment
    return y[:, rows[:, None], take].mean(axis=-1)


def median_beat(ep: Epochs, use: np.ndarray) -> np.ndarray:
    """(leads, window) median over the beats in `use` whose window lies fully inside the strip (all beats, NaN-aware,
    when none does: a 3-s strip)."""
    full = use & ep.valid.all(axis=1)
    if full.any():
        return np.median(ep.data[:, full, :], axis=1)
    d = np.where(ep.valid[None, use, :], ep.data[:, use, :], np.nan)
    with np.errstate(all="ignore"):
        out = np.nanmedian(d, axis=1)
    return np.where(np.isnan(out), 0.0, out)


def conforming_beats(ep: Epochs, fs: float, min_corr: float = 0.9) -> np.ndarray:
    """Beats whose multi-lead QRS correlates >= min_corr with the median QRS (drops PVCs/aberrant beats)."""
    half = int(round(0.08 * fs))
    q = ep.data[:, :, ep.pre - half:ep.pre + half + 1]  # (leads, beats, w)
    b = np.transpose(q, (1, 0, 2)).reshape(q.shape[1], -1)
    if b.shape[0] < 3:
        return np.ones(b.shape[0], dtype=bool)
    ref = np.median(b, axis=0)
    bc = b - b.mean(axis=1, keepdims=True)
    rc = ref - ref.mean()
    denom = np.linalg.norm(bc, axis=1) * np.linalg.norm(rc)
    corr = np.where(denom > 0, bc @ rc / np.where(denom > 0, denom, 1), 0)
    ok = corr >= min_corr
    return ok if ok.sum() >= max(1, b.shape[0] // 3) else np.ones(b.shape[0], dtype=bool)


@dataclass
class WaveMarks:
    """Per-row wave landmarks (indices into the window; -1 where absent) and amplitudes vs the isoelectric level."""

    onset: np.ndarray
    peak: np.ndarray
    offset: np.ndarray
    amplitude: np.ndarray  # signed value at the peak
    pos_lobe: np.ndarray  # highest value in the wave window (>= 0 means an upright part exists)
    neg_lobe: np.ndarray  # lowest value
    sign: np.ndarray  # +1 / -1 polarity used for onset/offset


def _masked_arg(z: np.ndarray, mask: np.ndarray, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    fill = -np.inf if largest else np.inf
    zz = np.where(mask, z, fill)
    i = zz.argmax(axis=1) if largest else zz.argmin(axis=1)
    v = zz[np.arange(z.shape[0]), i]
    return i, v


def _window_mask(w: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    pos = np.arange(w)[None, :]
    return (pos >= lo[:, None]) & (pos <= hi[:, None])


def find_wave_peak(ys: np.ndarray, lo: np.ndarray, hi: np.ndarray, fs: float,
                   anchor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dominant extremum of (rows, window) ys (already isoelectric-referenced and smoothed) inside [lo, hi].
    With `anchor` (per row: where the wave peaks in the leads that show it clearly), a weak row (both lobes under
    WEAK_WAVE_MV) takes the lobe nearer the anchor instead: in a near-flat lead the larger lobe is often noise or
    the ST segment, and the T wave peaks at about the same time in every lead.
    Returns (peak index, positive lobe, negative lobe)."""
    w = ys.shape[1]
    k = 2 * max(1, int(round(T_LOCAL_EXTREMUM_S * fs))) + 1
    win = _window_mask(w, lo, hi)
    interior = _window_mask(w, lo + 2, hi - 2)
    is_max = ys >= maximum_filter1d(ys, size=k, axis=1, mode="nearest")
    is_min = ys <= minimum_filter1d(ys, size=k, axis=1, mode="nearest")
    pmax, vmax = _masked_arg(ys, interior & is_max, True)
    pmin, vmin = _masked_arg(ys, interior & is_min, False)
    gmax, gvmax = _masked_arg(ys, win, True)
    gmin, gvmin = _masked_arg(ys, win, False)
    has_max, has_min = np.isfinite(vmax), np.isfinite(vmin)
    # dominant interior extremum; fall back to the window's largest |value| when there is none
    score_max = np.where(has_max, vmax, -np.inf)
    score_min = np.where(has_min, -vmin, -np.inf)
    peak = np.where(score_max >= score_min, pmax, pmin)
    if anchor is not None:
        weak = has_max & has_min & (np.maximum(vmax, -vmin) < WEAK_WAVE_MV)
        nearer = np.where(np.abs(pmax - anchor) <= np.abs(pmin - anchor), pmax, pmin)
        peak = np.where(weak, nearer, peak)
    none = ~has_max & ~has_min
    peak = np.where(none, np.where(gvmax >= -gvmin, gmax, gmin), peak)
    return peak, np.where(np.isfinite(gvmax), gvmax, 0.0), np.where(np.isfinite(gvmin), gvmin, 0.0)


def trapezium_offset(z: np.ndarray, peak: np.ndarray, limit: np.ndarray, fs: float, reach_s: float,
                     slope_s: float = 0.12) -> np.ndarray:
    """Wave end after `peak` on upright-flipped rows z: steepest descent xm in (peak, peak + slope_s], reference
    point xr = min(xm + reach, limit), end = argmax over t in [xm, xr] of (z[xm] - z[t]) * (2 xr - t - xm).
    The steepest point is looked for near the peak only: further on lies the next P wave."""
    w = z.shape[1]
    rows = np.arange(z.shape[0])
    dz = np.diff(z, axis=1, append=z[:, -1:])
    hi = np.maximum(peak, np.minimum(limit, peak + int(round(slope_s * fs))))
    xm, _ = _masked_arg(dz, _window_mask(w, peak, hi), False)
    xr = np.minimum(xm + int(round(reach_s * fs)), limit)
    xr = np.maximum(xr, xm)
    t = np.arange(w)[None, :]
    area = (z[rows, xm][:, None] - z) * (2 * xr[:, None] - t - xm[:, None])
    end, _ = _masked_arg(area, _window_mask(w, xm, xr), True)
    return end


def trapezium_onset(z: np.ndarray, peak: np.ndarray, limit: np.ndarray, fs: float, reach_s: float,
                    slope_s: float = 0.12) -> np.ndarray:
    """Mirror of trapezium_offset before the peak: steepest ascent xm in [peak - slope_s, peak), not before
    limit; xl = max(xm - reach, limit)."""
    w = z.shape[1]
    rows = np.arange(z.shape[0])
    dz = np.diff(z, axis=1, prepend=z[:, :1])
    lo = np.minimum(peak, np.maximum(limit, peak - int(round(slope_s * fs))))
    xm, _ = _masked_arg(dz, _window_mask(w, lo, peak), True)
    xl = np.maximum(xm - int(round(reach_s * fs)), np.minimum(limit, xm))
    t = np.arange(w)[None, :]
    area = (z[rows, xm][:, None] - z) * (t + xm[:, None] - 2 * xl[:, None])
    start, _ = _masked_arg(area, _window_mask(w, xl, xm), True)
    return start


def t_windows(j: np.ndarray, fid: int, rr: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(search start, last sample for the T peak, last sample for the T end) per row, in window indices.
    The T peak lies within min(0.62 RR, 0.25 s + 0.25 RR, RR - 0.2 s) of the R wave (the last term keeps the next
    P wave out at high rates); the T end must leave room for the next P too."""
    rr_s = rr / fs
    start = j + int(round(T_START_AFTER_J_S * fs))
    peak_end = fid + np.rint(np.minimum(np.minimum(0.62 * rr_s, 0.25 + 0.25 * rr_s), rr_s - 0.2) * fs).astype(int)
    peak_end = np.maximum(peak_end, start + int(round(0.12 * fs)))
    end = fid + np.rint(np.minimum(0.8 * rr_s, rr_s - 0.14) * fs).astype(int)
    end = np.maximum(np.minimum(end, peak_end + int(round(0.30 * fs))), peak_end + int(round(0.06 * fs)))
    return start, peak_end, end


def delineate_t(y: np.ndarray, j: np.ndarray, fid: int, rr: np.ndarray, fs: float,
                hint_peak: np.ndarray | None = None, hint_sign: np.ndarray | None = None,
                anchor: np.ndarray | None = None) -> WaveMarks:
    """T wave on rows y (rows, window), isoelectric-referenced. j: QRS offset per row; rr: samples to the next beat.
    With hints (from the median beat) the peak is searched near hint_peak with polarity hint_sign instead."""
    w = y.shape[1]
    ys = moving_average(y, int(round(T_SMOOTH_S * fs)))
    start, peak_end, end = t_windows(j, fid, rr, fs)
    end = np.minimum(end, w - 1)
    peak_end = np.minimum(peak_end, end)
    if hint_peak is None:
        peak, pos, neg = find_wave_peak(ys, start, peak_end, fs, anchor)
    else:
        # rows with a hint only look near it, with its polarity; the free search runs on the others (PVCs) only
        free = hint_sign == 0
        h = int(round(T_PEAK_HINT_S * fs))
        lo = np.clip(hint_peak - h, start, end)
        hi = np.clip(hint_peak + h, lo, end)
        z = ys * np.where(free, 1.0, hint_sign)[:, None]
        peak, _ = _masked_arg(z, _window_mask(w, lo, hi), True)
        win = _window_mask(w, start, peak_end)
        pos = np.where(win, ys, -np.inf).max(axis=1)
        neg = np.where(win, ys, np.inf).min(axis=1)
        if free.any():
            fp, _, _ = find_wave_peak(ys[free], start[free], peak_end[free], fs)
            peak[free] = fp
    rows = np.arange(y.shape[0])
    amp = ys[rows, peak]
    sign = np.where(hint_sign != 0, hint_sign, np.sign(amp)) if hint_sign is not None else np.sign(amp)
    sign = np.where(sign == 0, 1.0, sign)
    z = ys * sign[:, None]
    offset = trapezium_offset(z, peak, end, fs, T_OFFSET_REACH_S)
    onset = trapezium_onset(z, peak, j, fs, T_ONSET_REACH_S)
    return WaveMarks(onset=onset, peak=peak, offset=offset, amplitude=y[rows, peak], pos_lobe=pos, neg_lobe=neg,
                     sign=sign)


def delineate_p(y: np.ndarray, qrs_on: np.ndarray, fs: float) -> WaveMarks:
    """P wave before the QRS on rows y (isoelectric-referenced): dominant extremum in the P window, onset by the
    trapezium method. Amplitudes tell whether a P wave is there at all (the caller applies a threshold)."""
    ys = moving_average(y, int(round(T_SMOOTH_S * fs)))
    lo = np.maximum(qrs_on - int(round(P_SEARCH_S[0] * fs)), 0)
    hi = np.maximum(qrs_on - int(round(P_SEARCH_S[1] * fs)), lo + 1)
    peak, pos, neg = find_wave_peak(ys, lo, hi, fs)
    rows = np.arange(y.shape[0])
    amp = ys[rows, peak]
    sign = np.where(amp >= 0, 1.0, -1.0)
    z = ys * sign[:, None]
    onset = trapezium_onset(z, peak, np.maximum(lo - int(round(0.04 * fs)), 0), fs, 0.06)
    offset = trapezium_offset(z, peak, qrs_on, fs, 0.06)
    return WaveMarks(onset=onset, peak=peak, offset=offset, amplitude=amp, pos_lobe=pos, neg_lobe=neg, sign=sign)


def t_apex(y: np.ndarray, j: int, fid: int, rr: int, fs: float, use: np.ndarray) -> int:
    """Where the T wave peaks across leads on the median beat: maximum of the summed squared (smoothed) leads in the
    T-peak window. y: (leads, window) isoelectric-referenced."""
    ys = moving_average(y[use] if use.any() else y, int(round(T_SMOOTH_S * fs)))
    start, peak_end, _ = t_windows(np.array([j]), fid, np.array([rr]), fs)
    lo, hi = int(start[0]), int(min(peak_end[0], y.shape[1] - 1))
    if hi <= lo:
        return lo
    return lo + int(np.argmax((ys[:, lo:hi + 1] ** 2).sum(axis=0)))
