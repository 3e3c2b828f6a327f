"""Which beats of a monitor window the median beat is built from: the conducted ones.

A window with ventricular ectopy holds two (or more) QRS morphologies. A median over all of them mixes them, and a
"dominant morphology" rule (the beats that resemble the median) picks the ectopic beats whenever they are the
majority, so the trended T flips between the sinus beats' T and the ectopic beats' secondary T from window to window
(MIT-BIH 208, bigeminy and couplets: of the 72 windows that rule measured, 32 were mostly ventricular beats and
17 only normal ones). Here the beats are grouped by QRS shape and the group whose beats are not premature (the
longest RR before them) is measured: ectopic beats come early, and the conducted beat after them follows a pause.
On MIT-BIH 208 that measured 87 windows, 84 of them only beats the database labels normal and 1 mostly ventricular
(one-off check over the whole record against its beat labels; `tests/engine/test_monitor_conducted.py` does the same
on the 2 minutes in samples/). Noise is told from ectopy by how many beats repeat a shape at all: ectopy gives a few
shapes that each repeat, noise gives beats like no other. MIN_REPEATING was set on the tune recordings, MIT-BIH 105
(the database's noise annotations) and 208: at 0.8, 82 of 117 lead-windows annotated noisy are rejected (85 with the
rule before) and 26 of 243 clean ones (61 before).

Beats are judged alike lead by lead and by majority over the usable leads, so one noisy or lead-off channel of a
monitoring lead set does not split every beat into a group of its own.
"""
from __future__ import annotations

import numpy as np

from engine import delineate as dl

MIN_CORR = 0.9  # QRS correlation that makes two beats alike (as engine/delineate.py conforming_beats)
QRS_HALF_S = 0.08
MIN_BEATS = 3  # beats a median beat needs
# Ectopy gives a few morphologies that each repeat; noise gives beats that resemble no other beat. Below this share
# of beats in a repeating morphology the window is noise, not rhythm.
MIN_REPEATING = 0.8
# A premature beat comes at most ~85 % of the RR before a conducted one (bigeminy: ~60 %).
LATER = 1.15


def alike(ep: dl.Epochs, fs: float, usable: np.ndarray) -> np.ndarray:
    """(beats, beats) True where two beats' QRS correlate >= MIN_CORR in most usable leads."""
    rows = np.flatnonzero(usable)
    if rows.size == 0:
        rows = np.arange(ep.data.shape[0])
    half = int(round(QRS_HALF_S * fs))
    q = ep.data[rows][:, :, ep.pre - half:ep.pre + half + 1]  # (leads, beats, w)
    q = q - q.mean(axis=2, keepdims=True)
    norm = np.linalg.norm(q, axis=2, keepdims=True)
    z = q / np.where(norm > 0, norm, 1.0)
    votes = (np.einsum("lbw,lcw->lbc", z, z) >= MIN_CORR).sum(axis=0)
    return votes * 2 > rows.size


def groups(same: np.ndarray) -> list[np.ndarray]:
    """Greedy grouping: the beat alike to most of the remaining beats seeds a group of those beats; repeat."""
    left = np.ones(same.shape[0], dtype=bool)
    out = []
    while left.any():
        degree = (same & left[None, :]).sum(axis=1) * left
        members = same[int(np.argmax(degree))] & left
        out.append(members)
        left &= ~members
    return out


def conducted_beats(ep: dl.Epochs, fs: float, usable: np.ndarray, fiducials: np.ndarray) -> tuple[np.ndarray, str]:
    """(mask of the beats to build the median beat from, "" or why there is none)."""
    whole = ep.valid.all(axis=1)  # beats cut by the window's edges say nothing about the morphology
    if fiducials.size < MIN_BEATS:
        return np.zeros(fiducials.size, dtype=bool), f"{fiducials.size} QRS complex(es) in the window"
    rr_before = np.r_[np.nan, np.diff(fiducials).astype(float)]
    found = groups(alike(ep, fs, usable))
    repeating = sum(int((g & whole).sum()) for g in found if (g & whole).sum() >= 2) / max(1, int(whole.sum()))
    if repeating < MIN_REPEATING:
        return np.zeros(fiducials.size, dtype=bool), (f"beat shapes vary: {100 * repeating:.0f}% of the beats share "
                                                      "a QRS shape with another beat (noise or multiform ectopy)")
    candidates = [g for g in found if (g & whole).sum() >= MIN_BEATS]
    if not candidates:
        return np.zeros(fiducials.size, dtype=bool), "no beat morphology repeats in 3 whole beats (ectopy)"

    def lateness(g: np.ndarray) -> float:
        rr = rr_before[g]
        return float(np.median(rr[np.isfinite(rr)])) if np.isfinite(rr).any() else 0.0

    # The largest group, unless another comes clearly later: one shape split in two by the correlation threshold
    # (irregular rhythms) keeps its larger part rather than whichever part followed longer RRs.
    largest = max(candidates, key=lambda g: int(g.sum()))
    later = max(candidates, key=lateness)
    return (later if lateness(later) > LATER * lateness(largest) else largest), ""
