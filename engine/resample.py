"""Resampling to the analysis rate and mapping indices back to the record's own rate.

Every detector and threshold in the engine is tuned at one rate (ANALYSIS_FS), so records at 100, 250, 257, 360,
500 or 1000 Hz are brought there first with a polyphase filter (scipy.signal.resample_poly), which keeps the
waveform phase (T-peak timing) and does not assume the strip is periodic, unlike an FFT resampler.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

ANALYSIS_FS = 500.0
# A denominator cap keeps the polyphase filter short for odd rates (257 Hz -> 500/257 exactly; 256.7 Hz approximated).
_MAX_DENOMINATOR = 1000


def rational_ratio(fs: float, target: float = ANALYSIS_FS) -> tuple[int, int]:
    """(up, down) with up/down ~ target/fs."""
    frac = Fraction(target / fs).limit_denominator(_MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


def to_analysis_rate(signal: np.ndarray, fs: float, target: float = ANALYSIS_FS) -> tuple[np.ndarray, float]:
    """Resample (leads, samples) to ~target Hz. Returns (signal, exact analysis rate = fs * up / down)."""
    up, down = rational_ratio(fs, target)
    if up == down:
        return np.asarray(signal, dtype=np.float64), float(fs)
    # Pad with edge values so the filter's start-up transient does not ring into the first and last beats.
    pad = int(round(0.2 * fs))
    x = np.pad(np.asarray(signal, dtype=np.float64), ((0, 0), (pad, pad)), mode="edge")
    y = resample_poly(x, up, down, axis=1)
    start = int(round(pad * up / down))
    n_out = int(np.ceil(signal.shape[1] * up / down))
    return y[:, start:start + n_out], float(fs) * up / down


def to_own_rate(index: np.ndarray | int | None, analysis_fs: float, own_fs: float, n_own: int | None = None):
    """Map sample indices at the analysis rate back to the record's own rate (rounded, clipped to the strip)."""
    if index is None:
        return None
    out = np.rint(np.asarray(index, dtype=np.float64) * (own_fs / analysis_fs)).astype(np.int64)
    if n_own is not None:
        out = np.clip(out, 0, n_own - 1)
    return out
