"""Whole-record delineation: QRS fiducials -> bounds -> epochs -> median beat -> T (and P) per lead per beat.

Output indices are at the analysis rate (absolute sample indices into the analysed strip); analyze.py maps them back
to the record's own rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import delineate as dl
from engine.qrs import detect_qrs, initial_onset, qrs_bounds, spatial_velocity, terminal_offset


@dataclass
class TemplateMarks:
    """Landmarks on the median beat, window indices (fiducial at `pre`)."""

    qrs_onset: int
    qrs_offset: int
    iso: np.ndarray  # (leads,)
    t: dl.WaveMarks  # rows = leads
    p: dl.WaveMarks


@dataclass
class Delineation:
    fs: float
    fiducials: np.ndarray  # (beats,) absolute indices
    qrs_onset: np.ndarray  # (beats,)
    qrs_offset: np.ndarray
    rr: np.ndarray  # (beats,) samples to the next beat (median RR for the last)
    conforming: np.ndarray  # (beats,) bool: dominant morphology
    epochs: dl.Epochs
    template: np.ndarray  # (leads, window) median beat, measurement band
    template_iso_ref: np.ndarray  # (leads, window) template minus its isoelectric level
    tm: TemplateMarks
    iso: np.ndarray  # (leads, beats)
    t_onset: np.ndarray  # (leads, beats) absolute indices, -1 where absent
    t_peak: np.ndarray
    t_offset: np.ndarray
    t_amp: np.ndarray  # (leads, beats) mV vs isoelectric


def delineate_record(x_meas: np.ndarray, x_det: np.ndarray, fs: float, usable: np.ndarray) -> Delineation | None:
    """x_meas/x_det: (leads, samples) at the analysis rate; usable: (leads,) bool from the quality check.
    None when fewer than one QRS can be found."""
    weights = usable.astype(float) if usable.any() else np.ones(x_meas.shape[0])
    fid = detect_qrs(x_det, fs, weights)
    if fid.size == 0:
        return None
    vel = spatial_velocity(x_meas, weights)
    bounds = qrs_bounds(vel, fid, fs)
    n_beats = fid.size
    rr = np.diff(fid)
    med_rr = float(np.median(rr)) if rr.size else float(fs)  # one beat only: assume 60 bpm for the windows
    rr = np.append(rr, med_rr).astype(int)

    ep = dl.extract_epochs(x_meas, fid, fs)
    pre = ep.pre
    conforming = dl.conforming_beats(ep, fs)
    template = dl.median_beat(ep, conforming)

    # median-beat QRS bounds and isoelectric level
    t_vel = spatial_velocity(template, weights)
    tb = qrs_bounds(t_vel, np.array([pre]), fs)
    t_on, t_off = int(tb.onset[0]), int(tb.offset[0])
    # the QRS starts when its first lead leaves the baseline and ends when its last lead has ended (slow initial or
    # terminal parts the spatial velocity misses: RBBB's R'); the dominant beats share the median beat's QRS, so
    # their own bounds are not narrower than it
    lead_use = usable if usable.any() else None
    late = terminal_offset(template, t_on, t_off, pre, fs, lead_use) - t_off
    early = t_on - initial_onset(template, t_on, t_off, pre, fs, lead_use)
    if early > 0:
        t_on -= early
        bounds.onset = np.where(conforming, np.minimum(bounds.onset, fid + (t_on - pre)), bounds.onset)
    if late > 0:
        t_off += late
        floor = np.minimum(fid + (t_off - pre), x_meas.shape[1] - 1)
        bounds.offset = np.where(conforming, np.maximum(bounds.offset, floor), bounds.offset)
    t_iso = dl.isoelectric(template[:, None, :], t_vel[None, :], np.array([t_on]), fs)[:, 0]
    tref = template - t_iso[:, None]
    n_leads = template.shape[0]
    med_rr_rows = np.full(n_leads, int(round(med_rr)))
    apex = dl.t_apex(tref, t_off, pre, int(round(med_rr)), fs, usable)
    tmarks = dl.delineate_t(tref, np.full(n_leads, t_off), pre, med_rr_rows, fs, anchor=np.full(n_leads, apex))
    pmarks = dl.delineate_p(tref, np.full(n_leads, t_on), fs)
    tm = TemplateMarks(qrs_onset=t_on, qrs_offset=t_off, iso=t_iso, t=tmarks, p=pmarks)

    # per-beat isoelectric levels and T waves (rows = lead-major over beats)
    on_rel = bounds.onset - fid + pre
    off_rel = bounds.offset - fid + pre
    vel_ep = vel[np.clip(fid[:, None] + np.arange(-pre, ep.data.shape[2] - pre)[None, :], 0, vel.size - 1)]
    iso = dl.isoelectric(ep.data, vel_ep, on_rel, fs)  # (leads, beats)
    # the T wave lies after the fiducial: delineate on that part of the window only (c0 = crop start)
    c0 = max(0, pre - int(round(0.02 * fs)))
    y = (ep.data[:, :, c0:] - iso[:, :, None]).reshape(n_leads * n_beats, -1)
    j = np.tile(np.maximum(off_rel, pre), n_leads) - c0
    rr_rows = np.tile(rr, n_leads)
    hint_peak = np.repeat(tmarks.peak, n_beats) - c0
    hint_sign = np.repeat(tmarks.sign, n_beats) * np.tile(conforming, n_leads)  # 0 = no hint (PVCs)
    marks = dl.delineate_t(y, j, pre - c0, rr_rows, fs, hint_peak=hint_peak, hint_sign=hint_sign)
    for name in ("onset", "peak", "offset"):
        setattr(marks, name, getattr(marks, name) + c0)

    def absolute(rel: np.ndarray) -> np.ndarray:
        out = rel.reshape(n_leads, n_beats) - pre + fid[None, :]
        ok = (out >= 0) & (out < x_meas.shape[1]) & ep.valid[
            np.arange(n_beats)[None, :], np.clip(rel.reshape(n_leads, n_beats), 0, ep.valid.shape[1] - 1)]
        return np.where(ok, out, -1)

    return Delineation(
        fs=fs, fiducials=fid, qrs_onset=bounds.onset, qrs_offset=bounds.offset, rr=rr, conforming=conforming,
        epochs=ep, template=template, template_iso_ref=tref, tm=tm, iso=iso,
        t_onset=absolute(marks.onset), t_peak=absolute(marks.peak), t_offset=absolute(marks.offset),
        t_amp=marks.amplitude.reshape(n_leads, n_beats),
    )


def r_peaks(d: Delineation) -> np.ndarray:
    """(leads, beats) absolute index of each lead's dominant QRS deflection (largest |value| vs the isoelectric
    level between QRS onset and offset)."""
    ep = d.epochs
    half = int(round(0.25 * d.fs))  # QRS bounds lie within this of the fiducial (qrs_bounds' search window)
    a, b = max(0, ep.pre - half), min(ep.data.shape[2], ep.pre + half + 1)
    y = np.abs(ep.data[:, :, a:b] - d.iso[:, :, None])
    pos = np.arange(a, b)[None, :]
    on = (d.qrs_onset - d.fiducials + ep.pre)[:, None]
    off = (d.qrs_offset - d.fiducials + ep.pre)[:, None]
    inside = (pos >= on) & (pos <= off)
    rel = np.where(inside[None, :, :], y, -1.0).argmax(axis=2) + a
    return rel - ep.pre + d.fiducials[None, :]
