"""QRS detection on a multi-lead energy signal, and QRS onset/offset from the spatial velocity.

Why multi-lead: a QRS that is small, inverted or notched in one lead is large in another; summing per-lead
normalised slope energy makes the detector indifferent to polarity (inverted QRS), axis and single noisy leads.
Wide complexes (bundle branch block, paced) still give one energy lobe because the integration window is 100 ms and
the refractory distance is 200 ms (up to 300 bpm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import find_peaks

from engine.filters import moving_average

REFRACTORY_S = 0.20  # no two QRS closer than this (300 bpm)
INTEGRATION_S = 0.10
THRESHOLD_FRACTION = 0.20  # of the typical QRS energy peak
SEARCHBACK_FRACTION = 0.15  # a gap > 1.6 x median RR is searched again at this lower threshold
T_WAVE_REJECT_S = 0.36  # a candidate this soon after a QRS, with under half its energy, is a T wave
ONSET_FRACTION = 0.05  # QRS onset/offset: spatial velocity falls below this share of its QRS peak...
OFFSET_FRACTION = 0.08  # (tuned on the LUDB tune split: lead-II annotated onsets/offsets, median error ~0)
BOUND_HOLD_S = 0.012  # ...and stays below for this long
# A conduction delay (RBBB's R', a slurred terminal S) can follow a short lull in the velocity: an offset is only
# taken where the velocity does not rise again above this share of the QRS peak within the next REACTIVATION_S.
# ST-T slopes stay far below it (a T wave rises ~20x slower than a QRS).
REACTIVATION_FRACTION = 0.15
REACTIVATION_S = 0.04


def energy_signal(x_det: np.ndarray, fs: float, lead_weights: np.ndarray | None = None) -> np.ndarray:
    """Integrated, per-lead normalised squared slope of the detection-band signal, summed over leads."""
    g = np.diff(x_det, axis=-1, prepend=x_det[:, :1])
    e = g * g
    scale = np.percentile(e, 99.0, axis=-1)
    scale = np.where(scale > 0, scale, 1.0)
    e = e / scale[:, None]
    np.minimum(e, 4.0, out=e)  # one electrode pop must not outweigh the whole record
    if lead_weights is not None:
        e = e * lead_weights[:, None]
    return moving_average(e.sum(axis=0), int(round(INTEGRATION_S * fs)))


def detect_qrs(x_det: np.ndarray, fs: float, lead_weights: np.ndarray | None = None) -> np.ndarray:
    """QRS fiducials (analysis-rate sample indices of the energy peak), sorted."""
    env = energy_signal(x_det, fs, lead_weights)
    peaks, props = find_peaks(env, distance=max(1, int(REFRACTORY_S * fs)), height=0.0)
    if peaks.size == 0:
        return peaks.astype(np.int64)
    heights = props["peak_heights"]
    duration = env.size / fs
    # Typical QRS energy: median of the k largest peaks, k = beats expected at 30 bpm (robust to a few big PVCs).
    k = int(np.clip(round(duration * 0.5), 1, heights.size))
    ref = float(np.median(np.sort(heights)[-k:]))
    keep = heights >= THRESHOLD_FRACTION * ref
    qrs, h = peaks[keep], heights[keep]
    qrs, h = _reject_t_waves(qrs, h, fs)
    qrs = _search_back(qrs, peaks, heights, ref, fs)
    return np.asarray(qrs, dtype=np.int64)


def _reject_t_waves(qrs: np.ndarray, h: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    if qrs.size < 2:
        return qrs, h
    keep = np.ones(qrs.size, dtype=bool)
    close = np.flatnonzero(np.diff(qrs) < T_WAVE_REJECT_S * fs)
    for i in close:  # rare: a handful of candidates at most
        if keep[i] and h[i + 1] < 0.5 * h[i]:
            keep[i + 1] = False
        elif h[i] < 0.5 * h[i + 1]:
            keep[i] = False
    return qrs[keep], h[keep]


def _search_back(qrs: np.ndarray, peaks: np.ndarray, heights: np.ndarray, ref: float, fs: float) -> np.ndarray:
    if qrs.size < 3:
        return qrs
    rr = np.diff(qrs)
    med = np.median(rr)
    added = []
    for i in np.flatnonzero(rr > 1.6 * med):
        lo, hi = qrs[i] + 0.36 * fs, qrs[i + 1] - 0.36 * fs
        inside = (peaks > lo) & (peaks < hi) & (heights >= SEARCHBACK_FRACTION * ref)
        if inside.any():
            cand = peaks[inside]
            added.append(cand[np.argmax(heights[inside])])
    if added:
        qrs = np.sort(np.concatenate([qrs, np.asarray(added)]))
    return qrs


@dataclass
class QrsBounds:
    onset: np.ndarray  # analysis-rate sample indices, one per fiducial
    offset: np.ndarray


def spatial_velocity(x_meas: np.ndarray, lead_weights: np.ndarray | None = None) -> np.ndarray:
    """sqrt(sum over leads of slope^2) of the measurement-band signal (mV/sample)."""
    g = np.diff(x_meas, axis=-1, prepend=x_meas[:, :1])
    if lead_weights is not None:
        g = g * lead_weights[:, None]
    return np.sqrt((g * g).sum(axis=0))


def qrs_bounds(vel: np.ndarray, fiducials: np.ndarray, fs: float) -> QrsBounds:
    """QRS onset/offset per fiducial: where the spatial velocity drops below ONSET/OFFSET_FRACTION of its QRS peak
    (above the local TP-segment floor) and stays below for BOUND_HOLD_S. Vectorised over beats."""
    n = vel.size
    pre, post = int(0.20 * fs), int(0.24 * fs)
    offs = np.arange(-pre, post + 1)
    idx = np.clip(fiducials[:, None] + offs[None, :], 0, n - 1)
    v = vel[idx]  # (beats, window)
    centre = pre
    core = slice(centre - int(0.06 * fs), centre + int(0.06 * fs) + 1)
    vmax = v[:, core].max(axis=1)
    floor = np.percentile(v, 10, axis=1)
    thr_on = (floor + ONSET_FRACTION * (vmax - floor))[:, None]
    thr_off = (floor + OFFSET_FRACTION * (vmax - floor))[:, None]
    hold = max(2, int(round(BOUND_HOLD_S * fs)))
    # quiet[i]: velocity stays below the threshold on [i, i + hold) (forward) or (i - hold, i] (backward)
    run_max = maximum_filter1d(v, size=hold, axis=1, origin=-(hold // 2), mode="nearest")
    react = max(2, int(round(REACTIVATION_S * fs)))
    ahead_max = maximum_filter1d(v, size=react, axis=1, origin=-(react // 2), mode="nearest")
    thr_react = (floor + REACTIVATION_FRACTION * (vmax - floor))[:, None]
    quiet_fwd = (run_max < thr_off) & (ahead_max < thr_react)
    run_max_b = maximum_filter1d(v, size=hold, axis=1, origin=(hold - 1) // 2, mode="nearest")
    quiet_bwd = run_max_b < thr_on
    pos = np.arange(v.shape[1])[None, :]
    # the QRS core: last sample above the threshold must be after the velocity peak
    peak_at = v[:, core].argmax(axis=1) + core.start
    # onset: last backward-quiet sample before the peak
    before = quiet_bwd & (pos < peak_at[:, None])
    onset_rel = np.where(before.any(axis=1), before.shape[1] - 1 - np.argmax(before[:, ::-1], axis=1), 0)
    after = quiet_fwd & (pos > peak_at[:, None])
    offset_rel = np.where(after.any(axis=1), np.argmax(after, axis=1), v.shape[1] - 1)
    onset = fiducials + onset_rel - pre
    offset = fiducials + offset_rel - pre
    return QrsBounds(onset=np.clip(onset, 0, n - 1), offset=np.clip(offset, 0, n - 1))


# Global QRS onset and offset over the leads (CSE practice: the QRS starts when its first lead leaves the baseline and
# ends when its last lead has ended). The spatial velocity is dominated by the leads with the largest, fastest
# deflections (usually V2-V4), so a slow deflection that only some leads show (RBBB's R' in V1/V2, a terminal S in
# I/V6, a slow initial q or r) falls under its threshold and the QRS reads short. Each lead is therefore also read on
# its own slope scale: its QRS continues while its slope stays above TERMINAL_QUIET_FRACTION of its own steepest QRS
# slope, or rises again above TERMINAL_REACTIVATION_FRACTION within REACTIVATION_S; it has started where its slope
# last stayed under INITIAL_QUIET_FRACTION for BOUND_HOLD_S. Only leads whose QRS slope is at least
# TERMINAL_LEAD_DOMINANCE x their steepest ST-T slope vote, so a T wave (or noise) can never be read as QRS in them,
# and the second-earliest start / second-latest end decides (one lead alone does not: a single noisy lead must not
# widen the QRS).
TERMINAL_QUIET_FRACTION = 0.20
TERMINAL_REACTIVATION_FRACTION = 0.30
INITIAL_QUIET_FRACTION = 0.10
TERMINAL_LEAD_DOMINANCE = 6.0
TERMINAL_MIN_QRS_MV = 0.3  # leads with a smaller QRS peak-to-peak do not vote
TERMINAL_MAX_S = 0.08  # the terminal part extends the spatial offset by at most this
INITIAL_MAX_S = 0.03  # the initial part moves the spatial onset earlier by at most this
TERMINAL_VOTES = 2
ST_T_SLOPE_WINDOW_S = (0.16, 0.45)  # after the fiducial: where the steepest ST-T slope of a lead is read


def _lead_slopes(tref: np.ndarray, on: int, off: int, fid: int, fs: float,
                 usable: np.ndarray | None) -> np.ndarray | None:
    """(voting leads, window) |slope| of each voting lead over its own steepest QRS slope; None if too few vote."""
    w = tref.shape[1]
    slope = np.abs(np.gradient(tref, axis=1))
    s_qrs = slope[:, on:off + 1].max(axis=1)
    lo, hi = fid + int(round(ST_T_SLOPE_WINDOW_S[0] * fs)), min(w, fid + int(round(ST_T_SLOPE_WINDOW_S[1] * fs)))
    s_t = slope[:, lo:hi].max(axis=1) if hi > lo else np.zeros(tref.shape[0])
    ptp = np.ptp(tref[:, on:off + 1], axis=1)
    vote = (s_qrs >= TERMINAL_LEAD_DOMINANCE * s_t) & (ptp >= TERMINAL_MIN_QRS_MV)
    if usable is not None:
        vote &= usable
    if vote.sum() < TERMINAL_VOTES:
        return None
    return slope[vote] / s_qrs[vote, None]


def terminal_offset(tref: np.ndarray, on: int, off: int, fid: int, fs: float,
                    usable: np.ndarray | None = None) -> int:
    """Global QRS offset of a median beat (window indices): `off` (from the spatial velocity), moved later to where
    the second-latest voting lead's own QRS ends (block comment above). tref: (leads, window) median beat."""
    z = _lead_slopes(tref, on, off, fid, fs, usable)
    if z is None:
        return off
    last = min(tref.shape[1] - 1, off + int(round(TERMINAL_MAX_S * fs)))
    hold = max(2, int(round(BOUND_HOLD_S * fs)))
    react = max(2, int(round(REACTIVATION_S * fs)))
    run_max = maximum_filter1d(z, size=hold, axis=1, origin=-(hold // 2), mode="nearest")
    ahead_max = maximum_filter1d(z, size=react, axis=1, origin=-(react // 2), mode="nearest")
    quiet = (run_max < TERMINAL_QUIET_FRACTION) & (ahead_max < TERMINAL_REACTIVATION_FRACTION)
    seg = quiet[:, off:last + 1]
    ends = np.where(seg.any(axis=1), off + np.argmax(seg, axis=1), last)
    return int(max(off, np.sort(ends)[-TERMINAL_VOTES]))


def initial_onset(tref: np.ndarray, on: int, off: int, fid: int, fs: float,
                  usable: np.ndarray | None = None) -> int:
    """Global QRS onset of a median beat: `on` (from the spatial velocity), moved earlier to where the second-earliest
    voting lead's own QRS starts (the last sample at or before `on` after BOUND_HOLD_S of slope under
    INITIAL_QUIET_FRACTION of its steepest QRS slope)."""
    z = _lead_slopes(tref, on, off, fid, fs, usable)
    if z is None:
        return on
    first = max(0, on - int(round(INITIAL_MAX_S * fs)))
    hold = max(2, int(round(BOUND_HOLD_S * fs)))
    run_max_b = maximum_filter1d(z, size=hold, axis=1, origin=(hold - 1) // 2, mode="nearest")
    seg = (run_max_b < INITIAL_QUIET_FRACTION)[:, first:on + 1]
    starts = np.where(seg.any(axis=1), first + seg.shape[1] - 1 - np.argmax(seg[:, ::-1], axis=1), first)
    return int(min(on, np.sort(starts)[TERMINAL_VOTES - 1]))
