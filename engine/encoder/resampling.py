"""Band-limited resampling in numpy alone (the adapter must not need scipy on a GPU box that lacks it).

Each output sample is a Kaiser-windowed sinc interpolation of the input at its exact time, so any pair of rates works
(100 -> 500 Hz, 257 -> 500 Hz, 1000 -> 500 Hz) and only the kept window is computed. Indices past the ends are
clamped (edge values repeated) so the first and last beats do not ring.
"""
from __future__ import annotations

import numpy as np

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
