"""Pacemaker spike detection on the raw signal at the record's own rate, and blanking before filtering.

A pacing stimulus is far narrower than any cardiac wave. At 500 Hz a unipolar stimulus is a one- or two-sample jump,
often with an exponential recharge tail; a bipolar stimulus is smaller (a few tenths of a mV at the skin) and, after
the recorder's anti-alias filtering, often a biphasic pulse two to four samples wide (PTB-XL's 500 Hz pacemaker ECGs,
LUDB's biventricular record). Both are caught by one test, a narrow-pulse test, per lead and per sample n:
  * height: |x[n] - m[n]| >= SPIKE_MIN_MV, where m is the running median over SPIKE_MEDIAN_S (a pulse of a few ms
    survives the difference, every cardiac wave - the QRS lasts >= 40 ms - is removed by it);
  * narrow on both sides: within SPIKE_EDGE_S before and after n the signal is at least SPIKE_DROP of that height
    away from x[n] (a stimulus edge takes one or two samples; a QRS apex at 500 Hz takes five or more);
  * back within SPIKE_RETURN_S: 12 ms later the signal is within SPIKE_RETURN_FRACTION of the height of where it
    started (a baseline step - amplifier reset, electrode pop - is not, nor is a sharp corner inside a QRS). A stimulus
    that runs straight into a large QRS fails this test (PTB-XL 190 has some such beats): missed rather than
    letting QRS corners through;
and a spike is a sample where at least SPIKE_MIN_LEADS leads (or SPIKE_LEAD_FRACTION of them, whichever is fewer)
agree within +-1 sample: a stimulus reaches every lead at the same instant, muscle and electrode noise do not.
Below ~400 Hz the spike is smeared by the device's anti-alias filter and cannot be told from a QRS: not attempted.
Tuned on PTB-XL's 500 Hz pacemaker ECGs (folds 1-9) and the LUDB "tune" records only (ids 45, 93 paced).
"""
from __future__ import annotations

import numpy as np

MIN_FS_FOR_SPIKES = 400.0
SPIKE_MIN_MV = 0.1  # pulse height above the running median
SPIKE_MEDIAN_S = 0.016
SPIKE_EDGE_S = 0.004  # the pulse rises and falls within this
SPIKE_DROP = 0.6  # ... by at least this fraction of its height on each side
SPIKE_RETURN_S = 0.012
SPIKE_RETURN_FRACTION = 0.5
SPIKE_MIN_LEADS = 4  # leads that must show the pulse within +-1 sample ...
SPIKE_LEAD_FRACTION = 0.3  # ... or this fraction of the leads (at least 2), whichever is fewer
SPIKE_CLUSTER_S = 0.012


def _pulses(x: np.ndarray, fs: float) -> np.ndarray:
    """(leads, samples) bool: samples that are the apex of a narrow pulse in that lead."""
    n = x.shape[1]
    half = max(1, int(round(SPIKE_MEDIAN_S * fs)) // 2)
    out = np.zeros(x.shape, dtype=bool)
    fast = np.flatnonzero((np.abs(np.diff(x, axis=1)) >= SPIKE_DROP * SPIKE_MIN_MV).any(axis=0))
    if fast.size == 0:  # no lead moves that fast anywhere: a cheap exit
        return out
    edge = max(1, int(round(SPIKE_EDGE_S * fs)))
    back = max(edge + 1, int(round(SPIKE_RETURN_S * fs)))
    # only samples next to a fast step can be a pulse apex (a few hundred per strip, not all of them)
    cols = np.unique(np.clip((fast[:, None] + np.arange(-1, 3)[None, :]).ravel(), 0, n - 1))
    # residual vs the running median, on those samples and their +-edge neighbours only
    near = np.unique(np.clip((cols[:, None] + np.arange(-edge, edge + 1)[None, :]).ravel(), 0, n - 1))
    win = np.clip(near[:, None] + np.arange(-half, half + 1)[None, :], 0, n - 1)
    med = np.median(x[:, win], axis=2)  # (leads, len(near))
    a_near = np.abs(x[:, near] - med)
    pos = np.searchsorted(near, cols)

    def a_at(offset: int) -> np.ndarray:
        k = np.searchsorted(near, np.clip(cols + offset, 0, n - 1))
        return a_near[:, k]

    h = a_near[:, pos]
    apex = x[:, cols]
    r_sign = np.sign(apex - med[:, pos])
    ok = h >= SPIKE_MIN_MV
    for d in range(1, edge + 1):  # the apex is the largest residual within +-edge samples
        ok &= (h >= a_at(-d)) & (h >= a_at(d))
    # narrow: on both sides the signal moves away from the apex by >= SPIKE_DROP * height within `edge` samples
    before = np.stack([x[:, np.clip(cols - d, 0, n - 1)] for d in range(1, edge + 1)])
    after = np.stack([x[:, np.clip(cols + d, 0, n - 1)] for d in range(1, edge + 1)])
    ok &= ((apex - before) * r_sign).max(axis=0) >= SPIKE_DROP * h
    ok &= ((apex - after) * r_sign).max(axis=0) >= SPIKE_DROP * h
    # back near the starting level within SPIKE_RETURN_S (not a baseline step, nor the sharp corner of a QRS)
    start = x[:, np.clip(cols - edge - 1, 0, n - 1)]
    later = x[:, np.clip(cols + back, 0, n - 1)]
    ok &= np.abs(later - start) <= SPIKE_RETURN_FRACTION * np.maximum(h, np.abs(apex - start))
    out[:, cols] = ok
    return out


def detect_spikes(raw: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices (own rate) of pacing spikes in (leads, samples) raw mV; empty below MIN_FS_FOR_SPIKES."""
    n_leads, n = raw.shape
    if fs < MIN_FS_FOR_SPIKES or n < 32:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(raw, dtype=np.float64)
    cand = _pulses(x, fs)
    if not cand.any():
        return np.zeros(0, dtype=np.int64)
    cand[:, 1:] |= cand[:, :-1]  # +-1 sample tolerance between leads
    votes = cand.sum(axis=0)
    need = max(2, min(SPIKE_MIN_LEADS, int(np.ceil(SPIKE_LEAD_FRACTION * n_leads))))
    hits = np.flatnonzero(votes >= need)
    if hits.size == 0:
        return hits.astype(np.int64)
    # One spike per cluster (within SPIKE_CLUSTER_S: a biphasic pulse and its recharge tail are one stimulus): the
    # sample with the most votes, then the largest total jump.
    strength = votes + np.abs(np.diff(x, axis=1, prepend=x[:, :1])).sum(axis=0) * 1e-3
    breaks = np.flatnonzero(np.diff(hits) > max(1, int(SPIKE_CLUSTER_S * fs))) + 1
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
