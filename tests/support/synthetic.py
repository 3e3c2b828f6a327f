"""Synthetic 12-lead ECGs from sums of Gaussian waves: hand-made edge cases for tests and demos (not physiology).

Each lead gets P, Q, R, S and T waves with lead-specific amplitudes; T can be made inverted, biphasic or flat in
chosen leads, the QRS widened, pacing spikes added. Amplitudes in mV, times in seconds from the beat's R peak.
"""
from __future__ import annotations

import numpy as np

from engine.record import STANDARD_LEADS, EcgRecord, make_record

# Per-lead (R, S, T, P) amplitudes of a normal adult ECG (rough textbook values, mV).
_NORMAL = {
    "I": (0.8, 0.1, 0.25, 0.1), "II": (1.2, 0.15, 0.35, 0.15), "III": (0.5, 0.2, 0.12, 0.06),
    "aVR": (0.1, 0.9, -0.3, -0.12), "aVL": (0.5, 0.1, 0.12, 0.04), "aVF": (0.8, 0.15, 0.22, 0.1),
    "V1": (0.25, 1.0, 0.12, 0.08), "V2": (0.5, 1.3, 0.5, 0.08), "V3": (0.9, 0.9, 0.5, 0.08),
    "V4": (1.4, 0.5, 0.45, 0.08), "V5": (1.4, 0.25, 0.35, 0.08), "V6": (1.1, 0.1, 0.28, 0.08),
}


def _g(t: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2)


def synthetic_ecg(
    fs: float = 500.0,
    duration_s: float = 10.0,
    hr_bpm: float = 60.0,
    t_amp: dict[str, float] | None = None,
    biphasic: tuple[str, ...] = (),
    qrs_width_s: float = 0.09,
    pacing_spikes: bool = False,
    noise_mv: float = 0.0,
    leads: tuple[str, ...] = STANDARD_LEADS,
    t_sigma: tuple[float, float] = (0.05, 0.05),
    seed: int = 0,
) -> np.ndarray:
    """(leads, samples) float32 mV. t_amp overrides the T amplitude per lead (negative = inverted);
    t_sigma = (rise, fall) widths: equal = symmetric T. biphasic leads get a +/- T of equal lobes."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    rr = 60.0 / hr_bpm
    beats = np.arange(0.35, duration_s - 0.05, rr)
    out = np.zeros((len(leads), n))
    qs = qrs_width_s / 6.0  # Gaussian sigma of R; Q/S flank it
    t_peak = 0.22 + 0.12 * np.sqrt(rr)  # T peak after R: shorter at high rates (QT shortening)
    for li, name in enumerate(leads):
        r, s, ta, pa = _NORMAL[name]
        if t_amp and name in t_amp:
            ta = t_amp[name]
        x = np.zeros(n)
        for b in beats:
            x += pa * _g(t, b - 0.16, 0.025)
            x += -0.05 * r * _g(t, b - 2.2 * qs, qs * 0.8)
            x += r * _g(t, b, qs)
            x += -s * _g(t, b + 2.2 * qs, qs * 1.1)
            tp = b + t_peak + max(0.0, qrs_width_s - 0.09)
            if name in biphasic:
                a = abs(ta) if ta else 0.2
                x += a * _g(t, tp - 0.05, 0.035) - a * _g(t, tp + 0.05, 0.035)
            else:
                sig = np.where(t < tp, t_sigma[0], t_sigma[1])
                x += ta * np.exp(-0.5 * ((t - tp) / sig) ** 2)
        out[li] = x
    if pacing_spikes:
        for b in beats:
            i = int(round((b - qrs_width_s / 2 - 0.01) * fs))
            if 0 <= i < n:
                out[:, i] += 1.0 * np.where(np.arange(len(leads)) % 2 == 0, 1.0, -0.8)
    if noise_mv:
        out += rng.normal(0.0, noise_mv, out.shape)
    return out.astype(np.float32)


def synthetic_record(source_id: str = "synthetic/1", fs: float = 500.0, leads: tuple[str, ...] = STANDARD_LEADS,
                     sex: str | None = None, **kw) -> EcgRecord:
    return make_record(synthetic_ecg(fs=fs, leads=leads, **kw), leads, fs, source_id, source_format="synthetic",
                       sex=sex)
