"""Any EcgRecord -> the one input ECG-R1 accepts: (12, 5000) float32 mV at 500 Hz, in ECG-R1's lead order.

ECG-R1 (docs/SPEC.md §6) was trained on MIMIC-IV-ECG: 10 s at 500 Hz, raw millivolts, leads I, II, III, aVR, aVF, aVL,
V1-V6 (aVF before aVL, unlike the canonical order of docs/SPEC.md §10). Its reference code checks neither rate nor
order, so a 100 Hz or PTB-XL-ordered signal would go in silently wrong; this module is the only place that builds the
array, and it refuses (ReasonerInputError) rather than guess.

Decisions (documented because they change what the model sees):
* Leads are matched by name (record names are canonical), never by position. All 12 are required; missing limb
  leads are derived from I and II when only those came (exact Einthoven/Goldberger identities, noted); a missing
  precordial lead cannot be derived, so the record is refused. Zero-filled leads would read as real flat lines.
* Window: the last 10 s, like the engine's "most recent data" rule for long strips. (The authors' loader keeps
  the first 5000 samples; their training strips were all exactly 10 s, so this only matters for longer strips.)
* Short strips: 8 s <= duration < 10 s are padded at the start (the older side) with each lead's first value,
  noted; under 8 s the strip is refused, since more than a fifth of the model's window would be invented.
* Resampling: the same band-limited resampler as the encoder's adapter (engine.resample.resample_window), which
  computes each output sample at its exact time; a 0.5 s margin before the window feeds its kernel when the strip
  has one.
* Flagged samples (FHIR E/U/L, saturation) are linearly interpolated, noted; a lead with more than
  MAX_FLAGGED_FRACTION of its window flagged is refused.
* Units: the contract says mV. A lead swinging over MAX_PLAUSIBLE_MV peak-to-peak is refused as mis-scaled
  (microvolts sent as millivolts is the usual cause), since the model has no way to notice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.encoder.variants import MAX_PLAUSIBLE_MV, MODEL_FS_HZ, MODEL_LEADS, MODEL_SAMPLES, MODEL_SECONDS
from engine.reasoner.errors import ReasonerInputError
from engine.record import EcgRecord, derive_limb_leads, fill_flagged
from engine.resample import resample_window

# ECG-R1 consumes the ECG-CoCa tower's input: one definition of it (engine.encoder.variants), named here for the model.
ECGR1_LEADS, ECGR1_FS, ECGR1_WINDOW_S, ECGR1_SAMPLES = MODEL_LEADS, MODEL_FS_HZ, MODEL_SECONDS, MODEL_SAMPLES
MIN_PADDED_S = 8.0
MARGIN_S = 0.5  # resampled with the window so the polyphase filter's start-up stays outside it
MAX_FLAGGED_FRACTION = 0.10
FLAT_LEAD_MV = 0.01


@dataclass(frozen=True)
class NormalisedEcg:
    signal: np.ndarray  # (12, 5000) float32 mV, C-contiguous, ECGR1_LEADS order
    leads: tuple[str, ...] = ECGR1_LEADS
    fs: float = ECGR1_FS
    source_fs: float = 0.0
    source_start_s: float = 0.0  # where the window starts in the record as sent
    real_s: float = ECGR1_WINDOW_S  # seconds of recorded signal in the window (< 10 when padded)
    padded_s: float = 0.0
    derived_leads: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def normalise(record: EcgRecord) -> NormalisedEcg:
    """Build ECG-R1's input from a record, or raise ReasonerInputError saying why it cannot be done."""
    fs = float(record.fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ReasonerInputError(f"sampling rate {record.fs!r} Hz is not usable", "sampling-rate")
    notes: list[str] = []
    rec = derive_limb_leads(record)
    missing = [name for name in ECGR1_LEADS if name not in rec.leads]
    if missing:
        raise ReasonerInputError(_missing_reason(missing, record), "missing-leads")
    derived = tuple(n for n in ECGR1_LEADS if n in rec.derived_leads)
    if derived:
        notes.append("limb leads derived from I and II for the model: " + ", ".join(derived))

    duration = rec.n_samples / fs
    if duration < MIN_PADDED_S:
        raise ReasonerInputError(
            f"strip of {duration:.2f} s is shorter than the {MIN_PADDED_S:g} s the model needs "
            f"(its window is {ECGR1_WINDOW_S:g} s; shorter strips are refused, not padded)", "too-short")

    idx = [rec.leads.index(n) for n in ECGR1_LEADS]  # by name: never by position
    n_window = min(rec.n_samples, int(round(ECGR1_WINDOW_S * fs)))
    n_take = min(rec.n_samples, n_window + int(round(MARGIN_S * fs)))
    chunk = np.asarray(rec.signal[idx, -n_take:], dtype=np.float64)
    flags = rec.flagged[idx, -n_take:] if rec.flagged is not None else None
    chunk = _repair(chunk, flags, n_window, notes)
    _check_units(chunk[:, -n_window:])

    if fs != ECGR1_FS:
        notes.append(f"resampled {fs:g} Hz -> {ECGR1_FS:g} Hz")
    real_n = min(ECGR1_SAMPLES, int(round(n_window * ECGR1_FS / fs)))
    # The window starts at the strip's sample n_take - n_window of the chunk; the margin before it feeds the kernel.
    window = resample_window(chunk, fs, ECGR1_FS, (n_take - n_window) / fs, real_n)
    padded_s = 0.0
    if real_n < ECGR1_SAMPLES:
        pad = ECGR1_SAMPLES - real_n
        window = np.pad(window, ((0, 0), (pad, 0)), mode="edge")
        padded_s = pad / ECGR1_FS
        notes.append(f"strip of {duration:.2f} s padded at the start with edge values ({padded_s:.2f} s)")
    elif duration > ECGR1_WINDOW_S + 1e-9:
        notes.append(f"strip of {duration:.1f} s: the model saw its last {ECGR1_WINDOW_S:g} s")
    flat = [n for n, row in zip(ECGR1_LEADS, window, strict=True) if np.ptp(row) < FLAT_LEAD_MV]
    if flat:
        notes.append("flat lead(s) passed to the model as recorded (lead off?): " + ", ".join(flat))

    out = np.ascontiguousarray(window, dtype=np.float32)
    if out.shape != (12, ECGR1_SAMPLES) or not np.isfinite(out).all():
        raise ReasonerInputError(f"normalised array is {out.shape} or not finite", "internal")
    return NormalisedEcg(
        signal=out, source_fs=fs, source_start_s=round((rec.n_samples - n_window) / fs, 4),
        real_s=round(real_n / ECGR1_FS, 4), padded_s=padded_s, derived_leads=derived, notes=notes)


def _missing_reason(missing: list[str], record: EcgRecord) -> str:
    precordial = [n for n in missing if n.startswith("V")]
    limb = [n for n in missing if not n.startswith("V")]
    parts = []
    if precordial:
        parts.append("precordial lead(s) " + ", ".join(precordial) + " absent (cannot be derived)")
    if limb:
        parts.append("limb lead(s) " + ", ".join(limb) + " absent (derivable only when both I and II came)")
    got = ", ".join(record.leads) or "none"
    return f"ECG-R1 needs all 12 standard leads: {'; '.join(parts)}; the record has {got}"


def _repair(chunk: np.ndarray, flags: np.ndarray | None, n_window: int, notes: list[str]) -> np.ndarray:
    """Interpolate flagged or non-finite samples; refuse leads where too much of the window is bad."""
    bad = ~np.isfinite(chunk)
    if flags is not None:
        bad |= flags
    if not bad.any():
        return chunk
    frac = bad[:, -n_window:].mean(axis=1)
    too_bad = [f"{n} {f:.0%}" for n, f in zip(ECGR1_LEADS, frac, strict=True) if f > MAX_FLAGGED_FRACTION]
    if too_bad:
        raise ReasonerInputError(
            f"too many flagged/invalid samples in the window ({', '.join(too_bad)}; limit "
            f"{MAX_FLAGGED_FRACTION:.0%} per lead)", "flagged-samples")
    out = fill_flagged(chunk, bad)
    leads = [n for n, b in zip(ECGR1_LEADS, bad.any(axis=1), strict=True) if b]
    notes.append("flagged samples interpolated in " + ", ".join(leads))
    return out


def _check_units(window: np.ndarray) -> None:
    ptp = np.ptp(window, axis=1)
    wild = [f"{n} {p:.0f} mV" for n, p in zip(ECGR1_LEADS, ptp, strict=True) if p > MAX_PLAUSIBLE_MV]
    if wild:
        raise ReasonerInputError(
            f"implausible amplitude for millivolts ({', '.join(wild)} peak-to-peak; limit {MAX_PLAUSIBLE_MV:g} mV): "
            "units likely wrong (microvolts?)", "units")
