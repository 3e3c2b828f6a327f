"""EcgRecord -> the encoder's input: (12, 5000) float32, 500 Hz, raw mV, MIMIC-IV-ECG lead order. numpy only.

What it does, in order (each step is said in `AdaptedEcg.notes`):
- limb leads derived from I and II when only those came (docs/SPEC.md §10; marked derived, counted present);
- samples the sender flagged (FHIR E/U/L, saturation) replaced by linear interpolation, as the engine does;
- the last 10 s kept (the engine also analyses the end of long strips); shorter strips are zero-padded at the end;
- resampled to 500 Hz (band-limited, `engine.resample.resample_window`);
- leads put in the model's order (aVF before aVL); absent leads are zero with `lead_mask` False.
No filtering and no normalisation: the reference ECG-CoCa code feeds raw mV.

Missing leads: ECG-CoCa has no mask input and was trained on complete 12-lead ECGs, so a zero lead is out of its
distribution; the mask travels with the embedding so the caller can discount it (the small triage model was trained
with random lead drop-out, see its model card). Refused (AdapterError): amplitudes no ECG has (units wrong, e.g. µV
sent as mV), and sampling rates outside the record contract.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.encoder.variants import MAX_PLAUSIBLE_MV, MODEL_FS_HZ, MODEL_LEADS, MODEL_SAMPLES
from engine.errors import InvalidRecord
from engine.record import MAX_FS_HZ, MIN_FS_HZ, EcgRecord, derive_limb_leads, fill_flagged
from engine.resample import resample_window


class AdapterError(InvalidRecord):
    """The record cannot be turned into the encoder's input; `reason` is readable and carries no patient data."""


@dataclass(frozen=True)
class AdaptedEcg:
    signal: np.ndarray  # (12, 5000) float32 mV in MODEL_LEADS order
    lead_mask: np.ndarray  # (12,) bool: True where the lead came (or was derived from I and II)
    derived: tuple[str, ...] = ()
    padded_s: float = 0.0  # zeros appended at the end
    cropped_s: float = 0.0  # seconds dropped from the start
    notes: list[str] = field(default_factory=list)

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(n for n, present in zip(MODEL_LEADS, self.lead_mask, strict=False) if not present)


def adapt(record: EcgRecord, *, fs: float = MODEL_FS_HZ, n_samples: int = MODEL_SAMPLES,
          lead_order: tuple[str, ...] = MODEL_LEADS) -> AdaptedEcg:
    if not np.isfinite(record.fs) or not (MIN_FS_HZ <= record.fs <= MAX_FS_HZ):
        raise AdapterError(f"sampling rate {record.fs!r} Hz outside {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz", "sampling-rate")
    rec = derive_limb_leads(record)
    wanted = [n for n in lead_order if n in rec.leads]
    if not wanted:
        raise AdapterError("none of the model's leads present", "no-standard-leads")
    rows = [rec.leads.index(n) for n in wanted]
    x = np.asarray(rec.signal[rows], dtype=np.float64)
    notes: list[str] = []
    if rec.derived_leads:
        notes.append("derived from I and II: " + ", ".join(n for n in lead_order if n in rec.derived_leads))
    all_flagged: set[str] = set()
    if rec.flagged is not None and rec.flagged[rows].any():
        flags = rec.flagged[rows]
        x = fill_flagged(x, flags)
        # nothing left of these: treat as absent
        all_flagged = {n for n, f in zip(wanted, flags, strict=True) if f.all()}
        notes.append(f"{int(flags.sum())} flagged samples interpolated")
    if not np.isfinite(x).all():
        raise AdapterError("non-finite samples that the sender did not flag", "non-finite")
    peak = float(np.abs(x - np.median(x, axis=1, keepdims=True)).max())
    if peak > MAX_PLAUSIBLE_MV:
        raise AdapterError(f"deflection of {peak:.0f} mV: not millivolts (µV sent as mV?)", "amplitude")

    duration = x.shape[1] / rec.fs
    window_s = n_samples / fs
    t0 = max(0.0, duration - window_s)
    n_valid = min(n_samples, int(np.floor(round(duration * fs, 6))))
    y = resample_window(x, rec.fs, fs, t0, n_valid)
    out = np.zeros((len(lead_order), n_samples), dtype=np.float32)
    mask = np.zeros(len(lead_order), dtype=bool)
    for row, name in zip(y, wanted, strict=True):
        if name in all_flagged:
            continue
        out[lead_order.index(name), :n_valid] = row
        mask[lead_order.index(name)] = True
    padded = (n_samples - n_valid) / fs
    if t0 > 0:
        notes.append(f"strip of {duration:.1f} s: kept the last {window_s:g} s")
    if padded > 0:
        notes.append(f"strip of {duration:.1f} s: zero-padded {padded:.2f} s at the end")
    if rec.fs != fs:
        notes.append(f"resampled {rec.fs:g} -> {fs:g} Hz")
    if not mask.all():
        notes.append("absent leads set to zero: "
                     + ", ".join(n for n, m in zip(lead_order, mask, strict=True) if not m))
    return AdaptedEcg(out, mask, tuple(n for n in lead_order if n in rec.derived_leads), round(padded, 4),
                      round(t0, 4), notes)


def adapt_batch(records: list[EcgRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(B, 12, 5000) float32 and (B, 12) masks; raises AdapterError naming the record's position."""
    sig, masks = [], []
    for i, r in enumerate(records):
        try:
            a = adapt(r)
        except AdapterError as exc:
            raise AdapterError(f"record {i}: {exc.reason}", exc.code) from exc
        sig.append(a.signal)
        masks.append(a.lead_mask)
    return np.stack(sig), np.stack(masks)


