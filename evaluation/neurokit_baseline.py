"""The NeuroKit2 baseline, run lead by lead the way NeuroKit2 is used: `ecg_clean` -> `ecg_peaks` -> `ecg_delineate`
(method `dwt`, `peak`, and `prominence`), on each of the 12 leads independently.

NeuroKit2 returns landmarks only; to compare like with like, its T polarity and TWI come from those landmarks on its own
cleaned signal, defined the same way as ours (docs/EVALUATION.md):
* isoelectric level of a beat: mean over its PR segment (P offset .. QRS onset) when both are found and at most
  200 ms apart; else the 20 ms before the QRS onset; else (method `peak`, which gives no QRS onset) 50..30 ms before
  the Q peak; beats with none of these are skipped;
* T amplitude of a lead: median over beats of (signal at its T peak - isoelectric level);
* R / S of a lead: median over beats of the largest deflection and the deepest point after it inside the QRS bounds
  (R onset..offset, else Q peak..S peak, else +-50 ms around the R peak);
* TWI groups: engine.criteria (docs/SPEC.md §4 rule) applied to those measures.
A lead on which NeuroKit2 raises is a lead without an answer (counted as such, never silently dropped).
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from evaluation.methods import LeadMarks, MethodResult, lead_twi_from_amp

METHODS = ("dwt", "peak", "prominence")
_BEFORE_R = ("ECG_P_Onsets", "ECG_P_Peaks", "ECG_P_Offsets", "ECG_Q_Peaks", "ECG_R_Onsets")
_AFTER_R = ("ECG_R_Offsets", "ECG_S_Peaks", "ECG_T_Onsets", "ECG_T_Peaks", "ECG_T_Offsets")


def version() -> str:
    import neurokit2

    return neurokit2.__version__


def _per_beat(values, rpeaks: np.ndarray, before: bool, n: int) -> np.ndarray:
    """NeuroKit2 landmark list -> one entry per R peak (-1 absent). Lists are not always aligned with the R peaks
    (a missing first P onset shortens the list), so each landmark is assigned to the R peak it belongs to: the next
    R peak for waves before the QRS, the previous one for waves after it."""
    out = np.full(rpeaks.size, -1, dtype=np.int64)
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    v = v[(v >= 0) & (v < n)].astype(np.int64)
    if v.size == 0 or rpeaks.size == 0:
        return out
    if before:
        k = np.searchsorted(rpeaks, v, side="left")  # first R >= v
    else:
        k = np.searchsorted(rpeaks, v, side="right") - 1  # last R <= v
    ok = (k >= 0) & (k < rpeaks.size)
    for kk, vv in zip(k[ok], v[ok], strict=True):
        if out[kk] < 0:
            out[kk] = vv
    return out


def _lead_measures(c: np.ndarray, rp: np.ndarray, w: dict[str, np.ndarray], fs: float):
    """(LeadMarks, r_amp, s_amp) from one lead's per-beat landmarks on its cleaned signal."""
    n = c.size
    get = lambda k: w.get(k, np.full(rp.size, -1, dtype=np.int64))  # noqa: E731
    p_off, r_on, r_off = get("ECG_P_Offsets"), get("ECG_R_Onsets"), get("ECG_R_Offsets")
    q_pk, s_pk, t_pk, t_off = get("ECG_Q_Peaks"), get("ECG_S_Peaks"), get("ECG_T_Peaks"), get("ECG_T_Offsets")
    iso = np.full(rp.size, np.nan)
    for k in range(rp.size):
        if r_on[k] >= 0 and p_off[k] >= 0 and 0 < r_on[k] - p_off[k] <= 0.2 * fs:
            iso[k] = c[p_off[k]:r_on[k] + 1].mean()
        elif r_on[k] >= 0:
            iso[k] = c[max(0, r_on[k] - int(round(0.02 * fs))):r_on[k] + 1].mean()
        elif q_pk[k] >= 0:
            a, b = max(0, q_pk[k] - int(round(0.05 * fs))), max(1, q_pk[k] - int(round(0.03 * fs)))
            iso[k] = c[a:b + 1].mean()
    t_amps = [c[t_pk[k]] - iso[k] for k in range(rp.size) if t_pk[k] >= 0 and np.isfinite(iso[k])]
    on = np.where(r_on >= 0, r_on, q_pk)
    off = np.where(r_off >= 0, r_off, s_pk)
    rs, ss = [], []
    half = int(round(0.05 * fs))
    for k in range(rp.size):
        if not np.isfinite(iso[k]):
            continue
        a = on[k] if 0 <= on[k] <= rp[k] else max(0, rp[k] - half)
        b = off[k] if off[k] >= rp[k] else min(n - 1, rp[k] + half)
        seg = c[a:b + 1] - iso[k]
        r = float(max(seg.max(), 0.0))
        at = int(seg.argmax())
        deepest = float(max(-seg.min(), 0.0))
        ss.append(deepest if r < max(0.1, 0.25 * deepest) else float(max(-seg[at:].min(), 0.0)))
        rs.append(r)
    marks = LeadMarks(r=rp.astype(np.int64), qrs_on=on.astype(np.int64), qrs_off=off.astype(np.int64),
                      t_peak=t_pk, t_off=t_off, t_amp=float(np.median(t_amps)) if t_amps else None)
    return marks, (float(np.median(rs)) if rs else None), (float(np.median(ss)) if ss else None)


def run_neurokit(signal: np.ndarray, leads: tuple[str, ...], fs: float,
                 methods: tuple[str, ...] = METHODS) -> tuple[dict[str, MethodResult], float]:
    """NeuroKit2 on every lead of signal (leads, samples): {method: MethodResult} and the CPU seconds of the shared
    clean+peaks step (each MethodResult.cpu_s is clean+peaks + that method's delineation)."""
    import neurokit2 as nk

    from engine import criteria
    from engine.measure import LeadMeasure, classify_polarity

    n = signal.shape[1]
    per: dict[str, dict[str, LeadMarks]] = {m: {} for m in methods}
    amps: dict[str, dict[str, tuple]] = {m: {} for m in methods}
    cpu = {m: 0.0 for m in methods}
    errors: dict[str, list[str]] = {m: [] for m in methods}
    shared = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, lead in enumerate(leads):
            x = np.asarray(signal[i], dtype=float)
            t0 = time.process_time()
            try:
                c = np.asarray(nk.ecg_clean(x, sampling_rate=int(round(fs))), dtype=float)
                _, info = nk.ecg_peaks(c, sampling_rate=int(round(fs)))
                rp = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
            except Exception as e:  # noqa: BLE001 - NeuroKit2 raises many types; a failed lead is a lead without answer
                for m in methods:
                    per[m][lead] = LeadMarks.empty()
                    errors[m].append(f"{lead}: clean/peaks: {type(e).__name__}: {e}"[:200])
                shared += time.process_time() - t0
                continue
            shared += time.process_time() - t0
            for m in methods:
                t1 = time.process_time()
                try:
                    if rp.size < 2:
                        raise ValueError("fewer than 2 R peaks")
                    _, waves = nk.ecg_delineate(c, rp, sampling_rate=int(round(fs)), method=m)
                    w = {k: _per_beat(v, rp, k in _BEFORE_R, n) for k, v in waves.items()}
                    marks, r_amp, s_amp = _lead_measures(c, rp, w, fs)
                except Exception as e:  # noqa: BLE001
                    none = np.full(rp.size, -1)
                    marks, r_amp, s_amp = LeadMarks(rp, rp, rp, none, none, None), None, None
                    errors[m].append(f"{lead}: {m}: {type(e).__name__}: {e}"[:200])
                per[m][lead] = marks
                amps[m][lead] = (marks.t_amp, r_amp, s_amp)
                cpu[m] += time.process_time() - t1
    out = {}
    for m in methods:
        measures, ok = {}, {}
        for lead, (amp, r, s) in amps[m].items():
            if amp is None or r is None:
                continue
            s = s or 0.0
            measures[lead] = LeadMeasure(
                t_amp=amp, t_pos=max(amp, 0.0), t_neg=min(amp, 0.0),
                polarity=classify_polarity(amp, max(amp, 0.0), min(amp, 0.0)), symmetry=None, t_peak_ms=0.0,
                t_offset_ms=0.0, st_j60=0.0, r_amp=r, s_amp=s, qrs_mostly_positive=bool(r > s), p_amp=0.0, pr_ms=None)
            ok[lead] = True
        groups, _ = criteria.find_groups(measures, ok)
        lead_twi = {lead: lead_twi_from_amp(lead, per[m][lead].t_amp) for lead in per[m]}
        out[f"nk-{m}"] = MethodResult(leads=per[m], twi_groups=[list(g.leads) for g in groups], lead_twi=lead_twi,
                                      cpu_s=shared + cpu[m], errors=errors[m])
    return out, shared
