"""Pacemaker spike detection on the raw signal at the record's own rate, and blanking before filtering.

A pacing stimulus is far narrower than any cardiac wave: at 500 Hz it shows as a one- or two-sample jump, often with
an exponential recharge tail, in most leads at the same instant. We look for samples whose curvature (second
difference) is large in absolute terms and several times larger than the curvature a few samples away (a sharp
R apex spreads its curvature over neighbouring samples; a spike does not), and require agreement across leads.
Below ~400 Hz the spike is smeared by the device's anti-alias filter and cannot be told from a QRS: not attempted.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

MIN_FS_FOR_SPIKES = 400.0
SPIKE_MIN_CURVATURE_MV = 0.1  # |x[n] - (x[n-1] + x[n+1]) / 2| at the spike, mV
SPIKE_ISOLATION_RATIO = 4.0  # spike curvature vs the largest curvature 2..10 ms away
SPIKE_RETURN_FRACTION = 0.35  # residual offset 12 ms later, as a fraction of the jump
SPIKE_LEAD_FRACTION = 0.3  # fraction of leads (at least 2) that must show the spike within +-1 sample


def detect_spikes(raw: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices (own rate) of pacing spikes in (leads, samples) raw mV; empty below MIN_FS_FOR_SPIKES."""
    n_leads, n = raw.shape
    if fs < MIN_FS_FOR_SPIKES or n < 32:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(raw, dtype=np.float64)
    d2 = np.zeros_like(x)
    d2[:, 1:-1] = np.abs(x[:, 1:-1] - 0.5 * (x[:, :-2] + x[:, 2:]))
    # only columns where some lead is sharp enough are examined further (none in most records: cheap exit)
    cols = np.flatnonzero((d2 >= SPIKE_MIN_CURVATURE_MV).any(axis=0))
    if cols.size == 0:
        return cols.astype(np.int64)
    near = max(2, int(round(0.002 * fs)))
    far = max(near + 1, int(round(0.010 * fs)))
    back = max(2, int(round(0.012 * fs)))
    # largest curvature in [n - far, n - near] and [n + near, n + far]
    size = far - near + 1
    run = maximum_filter1d(d2, size=size, axis=1, origin=-(size // 2), mode="constant")  # run[i] = max d2[i:i+size]
    left = run[:, np.clip(cols - far, 0, n - 1)]
    right = run[:, np.clip(cols + near, 0, n - 1)]
    neighbour = np.maximum(left, right)
    dc = d2[:, cols]
    cand = (dc >= SPIKE_MIN_CURVATURE_MV) & (dc >= SPIKE_ISOLATION_RATIO * neighbour)
    # A stimulus (and its recharge tail) is back near the pre-spike level within ~12 ms; a baseline step
    # (amplifier reset, electrode pop) is not.
    pre = x[:, np.clip(cols - near, 0, n - 1)]
    jump = np.abs(x[:, cols] - pre)
    later = np.abs(x[:, np.clip(cols + back, 0, n - 1)] - pre)
    cand &= later <= SPIKE_RETURN_FRACTION * jump
    full = np.zeros((n_leads, n), dtype=bool)
    full[:, cols] = cand
    cand = full
    cand[:, 1:] |= cand[:, :-1]  # +-1 sample tolerance between leads
    votes = cand.sum(axis=0)
    need = max(2, int(np.ceil(SPIKE_LEAD_FRACTION * n_leads)))
    hits = np.flatnonzero(votes >= need)
    if hits.size == 0:
        return hits.astype(np.int64)
    # One spike per cluster (within 5 ms): the sample with the largest total curvature.
    strength = d2.sum(axis=0)
    breaks = np.flatnonzero(np.diff(hits) > max(1, int(0.005 * fs))) + 1
    groups = np.split(hits, breaks)
    return np.array([g[np.argmax(strength[g])] for g in groups], dtype=np.int64)


def blank_spikes(raw: np.ndarray, spikes: np.ndarray, fs: float) -> np.ndarray:
    """Copy of raw with each spike and its recharge tail (~8 ms) replaced by a straight line, so that filters do
    not smear the spike into a fake QRS or T deflection."""
    if spikes.size == 0:
        return raw
    out = np.array(raw, dtype=np.float64, copy=True)
    n = out.shape[1]
    before, after = max(1, int(round(0.002 * fs))), max(2, int(round(0.008 * fs)))
    for s in spikes:  # a handful per strip: one vector op each
        a, b = max(0, s - before), min(n - 1, s + after)
        w = np.linspace(0.0, 1.0, b - a + 1)
        out[:, a:b + 1] = out[:, [a]] * (1 - w) + out[:, [b]] * w
    return out
