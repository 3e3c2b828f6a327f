"""Per-lead signal quality: can this lead's T wave be measured at all?

Two stages. `screen_leads` runs before beat detection on the raw and filtered signal (flat line / lead off,
clipping, sender-flagged samples, extreme baseline wander, powerline); `beat_noise` runs after it and judges what is
left around the median beat. A lead that fails either is "not-analysable" and never counts toward a TWI group;
reasons name the number that tripped.

`beat_noise` judges noise, not rhythm. The residual of each dominant-morphology beat around the median beat mixes
noise with the rhythm's own beat-to-beat variation (atrial fibrillation's f-waves, the next QRS arriving at a different
time, a neighbouring ectopic beat, T waves that shorten with RR). So:
* each beat's residual is read only over that beat's own span: from a little before its QRS (at most 100 ms, and
  under a third of the preceding RR) to 100 ms before the next QRS, never the neighbouring beats;
* ectopic and aberrant beats are not in the median beat at all (engine/delineate.py `conforming_beats`: multi-lead
  QRS correlation < 0.9) nor in the residual;
* the residual is split by frequency. Above ~20 Hz (the residual minus its 20-ms moving average, outside the QRS,
  where alignment jitter lives) it is noise: muscle, electrode, unfiltered mains; no cardiac wave in the ST-T or TP
  segments has power there. Below, it is either physiology or motion/wander, and either way what matters is whether
  the median beat's T wave is still measurable: the ST-T residual's RMS sigma over n beats gives the median's
  standard error ~1.25 sigma / sqrt(n), which must stay under T_SE_FAIL_MV (a quarter of the 0.1 mV TWI depth).
  A straight line per beat (slow drift, respiration) is removed first. That fails a lead only when the part of
  the beat before its QRS varies as well (OUTSIDE_FAIL_MV): motion and electrode noise are everywhere in the beat,
  while respiration and the rhythm change the T wave itself. The part of each beat's ST-T that follows the
  preceding RR linearly (restitution: in AF the T wave changes with every cycle length) is fitted over the beats
  and removed: it is the rhythm, not noise;
* the SNR (template peak-to-peak over the in-span residual RMS) still fails a lead at SNR_FAIL_DB.
Thresholds set on the tuning split of the CinC development set (evaluation/cinc.py) and MIT-BIH 105 (whose
annotated noise episodes stay rejected: docs/EVALUATION.md), never on held-out data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import delineate as dl
from engine.filters import moving_average

FLAT_PTP_MV = 0.08  # a lead whose 0.5-40 Hz signal never moves this much carries no ECG
FLAT_RUN_S = 1.0  # stretches this long with no change at all (lead off, disconnected channel); a 30-bpm
# TP segment of a quantised, noise-free signal can be still for ~1.4 s, so only a quarter of the strip fails the lead
FLAT_RUN_FRACTION = 0.25
CLIP_FRACTION = 0.02  # samples sitting on the lead's own extreme value (ADC rail)
FLAGGED_FRACTION = 0.10  # sender-flagged samples (FHIR E/U/L, saturation)
WANDER_NOTE_MV, WANDER_FAIL_MV = 1.5, 5.0  # notes only: wander fails a lead through beat_noise
POWERLINE_NOTE_RATIO = 0.2  # 50/60 Hz power vs 1-40 Hz ECG power (removed by the 40 Hz low-pass, reported)
SNR_FAIL_DB = 12.0  # template peak-to-peak over the in-span residual RMS
HF_FAIL_MV = 0.02  # RMS of the > ~20 Hz residual outside the QRS (muscle/electrode noise)
HF_SMOOTH_S = 0.02  # the moving average that splits the residual into low and high frequencies
T_SE_FAIL_MV = 0.025  # standard error of the median beat's ST-T (1.25 RMS / sqrt(beats))
VARIATION_NOTE_MV = 0.05  # ST-T beat-to-beat RMS worth a note on an analysable lead
SPAN_BEFORE_S = 0.10  # a beat's residual starts this long before its fiducial (under a third of the previous RR) ...
SPAN_END_GAP_S = 0.10  # ... and ends this long before the next fiducial
RR_FIT_MIN_S = 0.05  # RR spread (max |RR - mean|) above which the RR-linked part of the ST-T is removed
ST_T_WINDOW_S = (0.04, 0.40)
OUTSIDE_FAIL_MV = 0.02  # ... and only when the part of the beat before its QRS varies this much too (noise is
# everywhere in the beat; the rhythm's and respiration's T changes are confined to the T wave)
NOISE_FAIL_MV = 0.15  # (no longer used by beat_noise; kept for importers)


@dataclass
class LeadQuality:
    ok: bool = True
    reasons: list[str] = field(default_factory=list)
    snr_db: float | None = None
    qrs_ok: bool = True  # the QRS can still be read (the lead failed, if at all, only for its ST-T or wander)
    hf_noise_mv: float | None = None  # > ~20 Hz residual RMS outside the QRS (beat_noise)
    st_t_variation_mv: float | None = None  # < ~20 Hz ST-T residual RMS, beat to beat (beat_noise)

    def fail(self, reason: str, qrs_ok: bool = False) -> None:
        self.ok = False
        self.qrs_ok = self.qrs_ok and qrs_ok
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
        if wander[i] > WANDER_FAIL_MV:  # the 0.5 Hz high-pass removes slow wander; beat_noise judges what is left
            q.note(f"baseline wander {wander[i]:.1f} mV (filtered; judged on the beats)")
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
               quality: list[LeadQuality], *, fs: float | None = None, rr: np.ndarray | None = None,
               qrs: tuple[int, int] | None = None) -> None:
    """Noise vs rhythm around the median beat, per lead (in place on `quality`; module docstring).
    epochs: (leads, beats, window) as engine.delineate.extract_epochs cuts them; template: (leads, window);
    use: (beats,) dominant-morphology beats; valid: (beats, window). Optional: fs (else inferred from the window,
    EPOCH_PRE_S + EPOCH_POST_S long); rr: (beats,) samples from each beat to the next (else beats are read to 0.5 s
    after their fiducial); qrs: (onset, offset) of the template's QRS, window indices (else from its velocity)."""
    sel = use & valid.all(axis=1)
    if sel.sum() < 2:
        return
    n_leads, n_beats, w = epochs.shape
    if fs is None:
        fs = (w - 1) / (dl.EPOCH_PRE_S + dl.EPOCH_POST_S)
    pre = int(round(dl.EPOCH_PRE_S * fs))
    pos = np.arange(w)
    if rr is None:
        rr_next = np.full(n_beats, 0.5 * fs + SPAN_END_GAP_S * fs)
        rr_prev = np.full(n_beats, 3 * SPAN_BEFORE_S * fs)
    else:
        rr_next = np.asarray(rr, dtype=float)
        rr_prev = np.concatenate([[rr_next[0]], rr_next[:-1]])
    start = pre - np.minimum(SPAN_BEFORE_S * fs, rr_prev / 3.0)
    end = pre + np.maximum(rr_next - SPAN_END_GAP_S * fs, 0.2 * fs)
    span = (pos[None, :] >= start[sel, None]) & (pos[None, :] <= end[sel, None])  # (beats, window)
    on, off = qrs if qrs is not None else _template_qrs(template, pre, fs)
    in_qrs = (pos >= on - 0.01 * fs) & (pos <= off + 0.02 * fs)
    st_t = (pos >= off + ST_T_WINDOW_S[0] * fs) & (pos <= off + ST_T_WINDOW_S[1] * fs)
    resid = epochs[:, sel, :] - template[:, None, :]
    low = moving_average(resid.reshape(-1, w), max(2, int(round(HF_SMOOTH_S * fs)))).reshape(resid.shape)
    high = resid - low
    # wander: a straight line per beat (offset and slope from its start to the end of the ST-T window, QRS left
    # out) is slow drift, not a change of the beat: removed before the ST-T and pre-QRS variation are read
    fit = (span & ~in_qrs[None] & (pos <= off + ST_T_WINDOW_S[1] * fs)[None]).astype(float)  # (beats, window)
    t = (pos - pre) / fs
    s0, s1, s2 = fit.sum(axis=1), fit @ t, fit @ (t * t)
    y0, y1 = (low * fit[None]).sum(axis=2), (low * fit[None] * t[None, None, :]).sum(axis=2)
    det = np.maximum(s0 * s2 - s1 * s1, 1e-12)
    slope = (s0 * y1 - s1 * y0) / det
    icpt = (y0 - slope * s1) / np.maximum(s0, 1)
    low = low - icpt[:, :, None] - slope[:, :, None] * t[None, None, :]
    n = int(sel.sum())
    if rr is not None and n >= 4:
        # the part of the ST-T that follows the preceding RR (restitution: T shape and amplitude change with the
        # cycle length in AF and ectopy) is the rhythm, not noise: remove its least-squares linear fit over beats
        x = rr_prev[sel] - rr_prev[sel].mean()
        if float(np.abs(x).max()) > RR_FIT_MIN_S * fs:
            beta = np.einsum("b,lbw->lw", x, low) / float(x @ x)
            low = low - beta[:, None, :] * x[None, :, None]

    def rms(z: np.ndarray, mask: np.ndarray) -> np.ndarray:  # median over beats of each beat's masked RMS
        cnt = np.maximum(mask.sum(axis=1), 1)
        return np.median(np.sqrt((z * z * mask[None]).sum(axis=2) / cnt[None]), axis=1)

    total = rms(resid, span)
    hf = rms(high, span & ~in_qrs[None])
    st_mask = span & st_t[None]
    varn = rms(low, st_mask) if st_mask.any() else np.zeros(n_leads)
    before = span & (pos < on - 0.01 * fs)[None]
    outside = rms(low, before) if before.any() else np.zeros(n_leads)
    se = 1.25 * varn / np.sqrt(n)
    amp = np.ptp(template, axis=1)
    snr = 20 * np.log10(np.maximum(amp, 1e-6) / np.maximum(total, 1e-6))
    for i, q in enumerate(quality):
        q.snr_db = float(round(snr[i], 1))
        q.hf_noise_mv = float(round(hf[i], 4))
        q.st_t_variation_mv = float(round(varn[i], 4))
        if not q.ok:
            continue
        if hf[i] > HF_FAIL_MV:
            q.fail(f"noisy: high-frequency residual {hf[i]:.3f} mV RMS (muscle/electrode noise), SNR {snr[i]:.0f} dB",
                   qrs_ok=True)
        elif snr[i] < SNR_FAIL_DB:
            q.fail(f"noisy: residual {total[i]:.2f} mV RMS around the median beat, SNR {snr[i]:.0f} dB")
        elif se[i] > T_SE_FAIL_MV and outside[i] > OUTSIDE_FAIL_MV:
            q.fail(f"noisy: ST-T varies {varn[i]:.2f} mV RMS beat to beat and the baseline before the QRS "
                   f"{outside[i]:.2f} mV (motion or wander): the median T of {n} beats is uncertain by "
                   f"+-{2 * se[i]:.2f} mV", qrs_ok=True)
        elif varn[i] > VARIATION_NOTE_MV:
            q.note(f"beat-to-beat ST-T variation {varn[i]:.2f} mV RMS (rhythm: f-waves, RR changes; not noise): "
                   f"T measured on the median of {n} beats, +-{2 * se[i]:.2f} mV")


def _template_qrs(template: np.ndarray, pre: int, fs: float) -> tuple[int, int]:
    """QRS bounds of a median beat when the caller has none: where its spatial velocity exceeds 15 % of its peak
    within 150 ms of the fiducial."""
    g = np.diff(template, axis=1, prepend=template[:, :1])
    v = np.sqrt((g * g).sum(axis=0))
    half = int(round(0.15 * fs))
    a, b = max(0, pre - half), min(v.size, pre + half + 1)
    core = np.flatnonzero(v[a:b] >= 0.15 * v[a:b].max()) + a
    if core.size == 0:
        return pre, pre
    return int(core[0]), int(core[-1])
