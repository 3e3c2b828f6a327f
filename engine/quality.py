"""Per-lead signal quality: can this lead's T wave be measured at all?

Two stages. `screen_leads` runs before beat detection on the raw and filtered signal (flat line / lead off,
clipping, sender-flagged samples, extreme baseline wander, powerline); `beat_noise` runs after it and estimates the
noise left around the median beat (muscle noise, motion), giving an SNR. A lead that fails either is
"not-analysable" and never counts toward a TWI group. Thresholds are deliberately loose: LUDB's 150 clinical
recordings all pass except a few true lead-off/artefact leads; reasons name the number that tripped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.filters import moving_average

FLAT_PTP_MV = 0.08  # a lead whose 0.5-40 Hz signal never moves this much carries no ECG
FLAT_RUN_S = 1.0  # stretches this long with no change at all (lead off, disconnected channel); a 30-bpm
# TP segment of a quantised, noise-free signal can be still for ~1.4 s, so only a quarter of the strip fails the lead
FLAT_RUN_FRACTION = 0.25
CLIP_FRACTION = 0.02  # samples sitting on the lead's own extreme value (ADC rail)
FLAGGED_FRACTION = 0.10  # sender-flagged samples (FHIR E/U/L, saturation)
WANDER_NOTE_MV, WANDER_FAIL_MV = 1.5, 5.0
POWERLINE_NOTE_RATIO = 0.2  # 50/60 Hz power vs 1-40 Hz ECG power (removed by the 40 Hz low-pass, reported)
NOISE_FAIL_MV = 0.15  # RMS residual around the median beat (muscle noise, motion)
SNR_FAIL_DB = 12.0


@dataclass
class LeadQuality:
    ok: bool = True
    reasons: list[str] = field(default_factory=list)
    snr_db: float | None = None

    def fail(self, reason: str) -> None:
        self.ok = False
        self.reasons.append(reason)

    def note(self, reason: str) -> None:
        self.reasons.append(reason)


def screen_leads(raw: np.ndarray, fs: float, meas: np.ndarray, meas_fs: float,
                 flagged: np.ndarray | None, names: tuple[str, ...]) -> list[LeadQuality]:
    """raw: (leads, n) own rate; meas: (leads, m) 0.5-40 Hz at the analysis rate; flagged: (leads, n) or None."""
    out = [LeadQuality() for _ in names]
    ptp = np.ptp(meas, axis=1)
    # flat runs: |first difference| ~ 0 for FLAT_RUN_S or more
    still = np.abs(np.diff(raw, axis=1)) < 1e-6
    run = max(2, int(round(FLAT_RUN_S * fs)))
    cs = np.concatenate([np.zeros((raw.shape[0], 1)), np.cumsum(still, axis=1)], axis=1)
    window_still = (cs[:, run:] - cs[:, :-run]) >= run - 1
    flat_frac = window_still.mean(axis=1) if window_still.shape[1] else np.zeros(raw.shape[0])
    hi, lo = raw.max(axis=1), raw.min(axis=1)
    tol = 1e-6 + 1e-4 * (hi - lo)
    rail = ((raw >= (hi - tol)[:, None]) | (raw <= (lo + tol)[:, None])).mean(axis=1)
    step = max(1, int(fs // 50))  # wander is slow: a 50 Hz view of the lead is enough and much cheaper
    base = moving_average(np.asarray(raw[:, ::step], dtype=np.float64), int(round(0.6 * fs / step)))
    wander = np.ptp(base, axis=1)
    pl = _powerline_ratio(raw, fs)
    flag_frac = flagged.mean(axis=1) if flagged is not None else np.zeros(raw.shape[0])
    for i, q in enumerate(out):
        if ptp[i] < FLAT_PTP_MV:
            q.fail(f"flat line (peak-to-peak {ptp[i]:.3f} mV): lead off or disconnected")
        elif flat_frac[i] > FLAT_RUN_FRACTION:
            q.fail(f"signal frozen for {100 * flat_frac[i]:.0f}% of the strip: lead off")
        if rail[i] > CLIP_FRACTION and ptp[i] >= FLAT_PTP_MV:
            q.fail(f"clipped: {100 * rail[i]:.1f}% of samples at the lead's extreme values "
                   f"({lo[i]:.2f}/{hi[i]:.2f} mV)")
        if flag_frac[i] > FLAGGED_FRACTION:
            q.fail(f"sender flagged {100 * flag_frac[i]:.0f}% of samples (saturation/invalid)")
        elif flag_frac[i] > 0:
            q.note(f"sender flagged {100 * flag_frac[i]:.1f}% of samples")
        if wander[i] > WANDER_FAIL_MV:
            q.fail(f"baseline wander {wander[i]:.1f} mV")
        elif wander[i] > WANDER_NOTE_MV:
            q.note(f"baseline wander {wander[i]:.1f} mV (filtered)")
        if pl[i] > POWERLINE_NOTE_RATIO:
            q.note(f"powerline interference ({pl[i]:.2f} of ECG power, filtered)")
    return out


def _powerline_ratio(raw: np.ndarray, fs: float) -> np.ndarray:
    if fs < 125:  # 50/60 Hz not representable
        return np.zeros(raw.shape[0])
    spec = np.abs(np.fft.rfft(raw - raw.mean(axis=1, keepdims=True), axis=1)) ** 2
    f = np.fft.rfftfreq(raw.shape[1], 1 / fs)
    line = ((np.abs(f - 50) < 1) | (np.abs(f - 60) < 1)).astype(float)
    ecg = ((f >= 1) & (f <= 40)).astype(float)
    return (spec @ line) / np.maximum(spec @ ecg, 1e-12)


def beat_noise(epochs: np.ndarray, template: np.ndarray, use: np.ndarray, valid: np.ndarray,
               quality: list[LeadQuality]) -> None:
    """SNR per lead from the residual of each conforming beat around the median beat (in place on `quality`).
    epochs: (leads, beats, window); template: (leads, window)."""
    sel = use & valid.all(axis=1)
    if sel.sum() < 2:
        return
    resid = epochs[:, sel, :] - template[:, None, :]
    # median over beats of each beat's RMS: one beat with an artefact does not fail the lead
    noise = np.median(np.sqrt(np.mean(resid * resid, axis=2)), axis=1)
    amp = np.ptp(template, axis=1)
    snr = 20 * np.log10(np.maximum(amp, 1e-6) / np.maximum(noise, 1e-6))
    for i, q in enumerate(quality):
        q.snr_db = float(round(snr[i], 1))
        if q.ok and (noise[i] > NOISE_FAIL_MV or snr[i] < SNR_FAIL_DB):
            q.fail(f"noisy: residual {noise[i]:.2f} mV RMS around the median beat, SNR {snr[i]:.0f} dB")
