"""Resampling, in one place: the engine's analysis rate (and indices back to the record's own rate), and the
windowed band-limited resampler that builds the models' input (`resample_window`).

Every detector and threshold in the engine is tuned at one rate (ANALYSIS_FS), so records at 100, 250, 257, 360,
500 or 1000 Hz are brought there first with a polyphase filter (scipy.signal.resample_poly), which keeps the
waveform phase (T-peak timing) and does not assume the strip is periodic, unlike an FFT resampler.

`resample_window` needs numpy alone (a model box may lack scipy): each output sample is a Kaiser-windowed sinc
interpolation of the input at its exact time, so any pair of rates works (100 -> 500 Hz, 257 -> 500 Hz,
1000 -> 500 Hz) and only the kept window is computed. Indices past the ends are clamped (edge values repeated) so
the first and last beats do not ring.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

ANALYSIS_FS = 500.0
# A denominator cap keeps the polyphase filter short for odd rates (257 Hz -> 500/257 exactly; 256.7 Hz approximated).
_MAX_DENOMINATOR = 1000


def rational_ratio(fs: float, target: float = ANALYSIS_FS) -> tuple[int, int]:
    """(up, down) with up/down ~ target/fs."""
    frac = Fraction(target / fs).limit_denominator(_MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


def to_analysis_rate(signal: np.ndarray, fs: float, target: float = ANALYSIS_FS) -> tuple[np.ndarray, float]:
    """Resample (leads, samples) to ~target Hz. Returns (signal, exact analysis rate = fs * up / down)."""
    from scipy.signal import resample_poly  # lazily: the model adapters run where scipy may be absent

    up, down = rational_ratio(fs, target)
    if up == down:
        return np.asarray(signal, dtype=np.float64), float(fs)
    # Pad with edge values so the filter's start-up transient does not ring into the first and last beats.
    pad = int(round(0.2 * fs))
    x = np.pad(np.asarray(signal, dtype=np.float64), ((0, 0), (pad, pad)), mode="edge")
    y = resample_poly(x, up, down, axis=1, window=_poly_filter(up, down))
    start = int(round(pad * up / down))
    n_out = int(np.ceil(signal.shape[1] * up / down))
    return y[:, start:start + n_out], float(fs) * up / down


@lru_cache(maxsize=32)
def _poly_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own default low-pass (firwin, Kaiser beta 5, 10 x the larger rate each side), designed once
    per ratio: the design costs as much as resampling one median beat (the monitor path does that every window).
    resample_poly copies the array it is given, so the cached one is never changed."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def to_own_rate(index: np.ndarray | int | None, analysis_fs: float, own_fs: float, n_own: int | None = None):
    """Map sample indices at the analysis rate back to the record's own rate (rounded, clipped to the strip)."""
    if index is None:
        return None
    out = np.rint(np.asarray(index, dtype=np.float64) * (own_fs / analysis_fs)).astype(np.int64)
    if n_own is not None:
        out = np.clip(out, 0, n_own - 1)
    return out


ZERO_CROSSINGS = 16  # each side of the kernel: ~-80 dB stop band with the Kaiser window below
KAISER_BETA = 8.6
ROLLOFF = 0.9  # cut-off as a fraction of the lower Nyquist rate


def resample_window(x: np.ndarray, fs_in: float, fs_out: float, t0_s: float, n_out: int) -> np.ndarray:
    """(leads, n_in) at fs_in -> (leads, n_out) at fs_out, output sample k at time t0_s + k / fs_out."""
    x = np.asarray(x, dtype=np.float64)
    times = t0_s + np.arange(n_out) / fs_out
    start = t0_s * fs_in
    if fs_in == fs_out and abs(start - round(start)) < 1e-6:
        start = int(round(start))
        return x[:, start:start + n_out].copy()  # same rate, sample-aligned: no filtering at all
    cutoff = ROLLOFF * 0.5 * min(fs_in, fs_out)  # Hz
    scale = 2.0 * cutoff / fs_in  # cut-off in cycles per input sample x2
    half = int(np.ceil(ZERO_CROSSINGS / scale))  # kernel half-width in input samples
    pos = times * fs_in  # fractional input index of each output
    base = np.floor(pos).astype(np.int64)
    offsets = np.arange(-half + 1, half + 1)
    out = np.empty((x.shape[0], n_out), dtype=np.float64)
    # Chunk the outputs so the (outputs, taps) matrices stay a few MB even at 10 kHz input.
    chunk = max(1, 2_000_000 // (offsets.size * max(1, x.shape[0])))
    for s in range(0, n_out, chunk):
        idx = base[s:s + chunk, None] + offsets[None, :]
        dist = pos[s:s + chunk, None] - idx
        w = scale * np.sinc(scale * dist) * _kaiser(dist / half)
        w /= w.sum(axis=1, keepdims=True)  # unit DC gain, also where the kernel is clipped at the ends
        np.clip(idx, 0, x.shape[1] - 1, out=idx)
        out[:, s:s + chunk] = np.einsum("lkt,kt->lk", x[:, idx], w)
    return out


def _kaiser(u: np.ndarray) -> np.ndarray:
    """Kaiser window on u in [-1, 1] (zero outside)."""
    inside = np.clip(1.0 - u * u, 0.0, None)
    return np.where(np.abs(u) <= 1.0, np.i0(KAISER_BETA * np.sqrt(inside)) / np.i0(KAISER_BETA), 0.0)
