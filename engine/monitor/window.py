"""The lean window path: one 10-s window of a monitor stream -> one trend point per ECG lead (docs/SPEC.md §11).

What a monitoring window needs is the T wave and ST level of each lead on the window's median beat, and whether the
lead could be measured at all. So this composes the engine's own steps (filters, lead quality, QRS detection, the
median beat, T delineation on it, the per-lead measures) and leaves out what only a diagnostic 12-lead strip needs:
pacing spikes, per-beat T/P delineation, rhythm, TWI groups, novelty, secondary causes, triage. Further savings:
* no resampling to the engine's 500 Hz when the stream's own rate is within 200..500 Hz (every step takes `fs` and
  converts its durations to samples); slower or faster streams are brought to 250 Hz;
* filtering and QRS detection run on the leads as sent; derived limb leads (aVL, aVF, and III when only I and II
  came; docs/SPEC.md §10.1) are formed afterwards from the filtered I and II, which is the same by linearity. aVR
  is not derived: it never counts (docs/SPEC.md §4.1).

A window without a clearly dominant beat morphology (ectopy in about half the beats) is not trended. Lead quality
is the engine's (flat / lead off, frozen, clipped, sender-flagged samples, wander, then the noise
around the median beat); flagged samples are lead-off/INOP and are interpolated over before filtering. A derived
lead is analysable only when both leads it comes from are. Unknown-position leads (`V`, `ECG`) are trended like
any other lead; the episode machine keeps them to their own baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import sosfilt, sosfilt_zi

from engine import delineate as dl
from engine import filters, measure, quality
from engine.qrs import detect_qrs, qrs_bounds, spatial_velocity
from engine.record import EcgRecord, fill_flagged, is_ecg_lead, lead_order
from engine.resample import ANALYSIS_FS, to_analysis_rate

MONITOR_FS = 250.0  # analysis rate for streams outside OWN_RATE_RANGE_HZ
OWN_RATE_RANGE_HZ = (200.0, 500.0)
MIN_WINDOW_S = 2.5  # a shorter window holds too few beats for a median beat
MIN_BEATS = 3  # conforming beats needed for a median beat worth trending
# The median beat must stand for a clearly dominant morphology: with ventricular bigeminy or couplets about half
# the beats are ectopic and the "dominant" one flips between sinus and ectopic from window to window, so its T
# flips against a sinus-beat baseline (seen on the tune part: MIT-BIH 208).
MIN_CONFORMING_FRACTION = 0.6
POLARITY = {"positive": "upright", "negative": "inverted", "flat": "flat", "biphasic": "biphasic"}
# Derived limb leads (docs/SPEC.md §10.1), as (coefficient of I, coefficient of II).
_DERIVED = {"III": (-1.0, 1.0), "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0)}


@dataclass(frozen=True)
class TrendPoint:
    """One lead of one window. `t_amplitude_mv` is the signed T amplitude of the median beat's dominant T lobe vs
    the isoelectric (PR) level (engine/measure.py); a biphasic T is trended by that dominant lobe."""

    lead: str
    quality: str  # "ok" | "not-analysable"
    reasons: tuple[str, ...] = ()
    t_amplitude_mv: float | None = None  # signed, vs the isoelectric level
    t_polarity: str | None = None  # "upright" | "inverted" | "flat" | "biphasic"
    st_j60_mv: float | None = None

    @property
    def ok(self) -> bool:
        return self.quality == "ok"

    def to_dict(self) -> dict:
        return {"lead": self.lead, "quality": self.quality, "reasons": list(self.reasons),
                "t_amplitude_mv": self.t_amplitude_mv, "t_polarity": self.t_polarity, "st_j60_mv": self.st_j60_mv}

    @classmethod
    def from_dict(cls, d: dict) -> TrendPoint:
        return cls(lead=d["lead"], quality=d["quality"], reasons=tuple(d.get("reasons") or ()),
                   t_amplitude_mv=d.get("t_amplitude_mv"), t_polarity=d.get("t_polarity"),
                   st_j60_mv=d.get("st_j60_mv"))


def analyse_window(window: EcgRecord) -> dict[str, TrendPoint]:
    """Trend points for every ECG lead of a window (a chunk-kind record of any lead subset, V/ECG included;
    flagged samples are lead-off/INOP), plus the derived limb leads. Non-ECG channels are ignored."""
    sent = tuple(n for n in window.leads if is_ecg_lead(n))
    if not sent:
        return {}
    if window.duration_s < MIN_WINDOW_S:
        return _all_failed(sent, f"window of {window.duration_s:.1f} s is shorter than {MIN_WINDOW_S:g} s")
    idx = [window.leads.index(n) for n in sent]
    raw = np.asarray(window.signal[idx], dtype=np.float64)
    flagged = window.flagged[idx] if window.flagged is not None else None
    if flagged is not None and flagged.any():
        raw = fill_flagged(raw, flagged)
    fs = float(window.fs)
    if OWN_RATE_RANGE_HZ[0] <= fs <= OWN_RATE_RANGE_HZ[1]:
        x, fsa = raw, fs
    else:
        x, fsa = to_analysis_rate(raw, fs, MONITOR_FS)
    x_meas = _filtfilt(x, fsa, filters.MEASURE_BAND_HZ, 3)
    lq = _screen(raw, fs, x_meas, fsa, flagged, sent)

    # derived limb leads from the filtered I and II (linear, so the same as filtering derived raw leads)
    names = list(sent)
    derived: dict[str, tuple[str, str]] = {}
    if "I" in sent and "II" in sent:
        i1, i2 = sent.index("I"), sent.index("II")
        rows = []
        for name, (a, b) in _DERIVED.items():
            if name not in sent:
                rows.append(a * x_meas[i1] + b * x_meas[i2])
                names.append(name)
                derived[name] = ("I", "II")
                both = lq[i1].ok and lq[i2].ok
                q = quality.LeadQuality()
                if not both:
                    q.fail("derived from I and II, one of which is not analysable")
                lq.append(q)
        if rows:
            x_meas = np.vstack([x_meas, np.asarray(rows)])
    # A lead with extreme wander (engine.quality notes it and leaves the verdict to the beats) does not steer QRS
    # detection: its filtered residue would place beats the clean leads disagree with.
    usable = np.array([q.ok and not any("judged on the beats" in r for r in q.reasons) for q in lq])
    n_sent = len(sent)
    weights = usable[:n_sent].astype(float) if usable[:n_sent].any() else np.ones(n_sent)
    fid = detect_qrs(_filtfilt(x, fsa, filters.DETECT_BAND_HZ, 2), fsa, weights)
    if fid.size < MIN_BEATS:
        return _finish(names, lq, None, f"{fid.size} QRS complex(es) detected in the window")
    ep = dl.extract_epochs(x_meas, fid, fsa)
    conforming = _conforming(ep, fsa, usable[:n_sent])
    full = conforming & ep.valid.all(axis=1)
    if full.sum() < MIN_BEATS:
        return _finish(names, lq, None, f"{int(full.sum())} conforming beat(s) inside the window")
    inside = ep.valid.all(axis=1)  # beats cut by the window's edges say nothing about the morphology
    frac = float(conforming[inside].mean()) if inside.any() else 0.0
    if frac < MIN_CONFORMING_FRACTION:
        return _finish(names, lq, None, f"no dominant beat morphology: {100 * frac:.0f}% of the beats conform "
                                        "(ectopy)")
    template = dl.median_beat(ep, conforming)
    quality.beat_noise(ep.data, template, conforming, ep.valid, lq)

    # Landmarks on the median beat at the engine's analysis rate (as engine/beats.py does for its template): at
    # 250 Hz the QRS offset and T search bounds move by whole 4-ms samples, which at fast rates puts the T-peak
    # search past the peak; one (leads x 1.2 s) template is cheap to upsample, the whole window is not.
    fst = fsa
    if fsa != ANALYSIS_FS:
        template, fst = to_analysis_rate(template, fsa, ANALYSIS_FS)
    pre = int(round(ep.pre * fst / fsa))
    w_all = np.concatenate([weights, usable[n_sent:].astype(float)])
    t_vel = spatial_velocity(template, w_all)
    tb = qrs_bounds(t_vel, np.array([pre]), fst)
    q_on, q_off = int(tb.onset[0]), int(tb.offset[0])
    iso = dl.isoelectric(template[:, None, :], t_vel[None, :], np.array([q_on]), fst)[:, 0]
    tref = template - iso[:, None]
    med_rr = int(round(float(np.median(np.diff(fid))) * fst / fsa))
    n = tref.shape[0]
    use = np.array([q.ok for q in lq])
    apex = dl.t_apex(tref, q_off, pre, med_rr, fst, use)
    tm = dl.delineate_t(tref, np.full(n, q_off), pre, np.full(n, med_rr), fst, anchor=np.full(n, apex))
    zeros = np.zeros(n)
    ms = measure.lead_measures(tref, q_on, q_off, tm.onset, tm.peak, tm.offset, tm.sign, zeros.astype(int), zeros,
                               fst)
    return _finish(names, lq, ms, "")


def _conforming(ep: dl.Epochs, fs: float, usable: np.ndarray) -> np.ndarray:
    """Beats that conform in most of the usable leads, each lead judged alone: one noisy or lead-off channel of a
    monitoring lead set must not make every beat look ectopic, as it does in a multi-lead correlation."""
    rows = np.flatnonzero(usable)
    if rows.size == 0:
        return dl.conforming_beats(ep, fs)
    votes = _conforming_each_lead(ep.data[rows], ep.pre, fs)
    return votes.sum(axis=0) * 2 > rows.size


def _conforming_each_lead(data: np.ndarray, pre: int, fs: float, min_corr: float = 0.9) -> np.ndarray:
    """engine.delineate.conforming_beats of each lead alone, all leads in one pass: (leads, beats) votes."""
    half = int(round(0.08 * fs))
    q = data[:, :, pre - half:pre + half + 1]  # (leads, beats, w)
    n_leads, n_beats = q.shape[:2]
    if n_beats < 3:
        return np.ones((n_leads, n_beats), dtype=bool)
    ref = np.median(q, axis=1)  # (leads, w)
    bc = q - q.mean(axis=2, keepdims=True)
    rc = ref - ref.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(bc, axis=2) * np.linalg.norm(rc, axis=1)[:, None]
    num = np.einsum("lbw,lw->lb", bc, rc)
    corr = np.where(denom > 0, num / np.where(denom > 0, denom, 1), 0)
    ok = corr >= min_corr
    ok[ok.sum(axis=1) < max(1, n_beats // 3)] = True  # a lead where too few conform says nothing: all conform
    return ok


@lru_cache(maxsize=32)
def _sos_zi(band: tuple[float, float], fs: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    sos = filters._bandpass_sos(band[0], band[1], fs, order)  # the engine's own filter design
    return sos, sosfilt_zi(sos)


def _filtfilt(x: np.ndarray, fs: float, band: tuple[float, float], order: int) -> np.ndarray:
    """engine/filters.py's zero-phase band-pass (scipy's sosfiltfilt with odd extension and the engine's padding),
    with the filter's initial conditions cached: sosfiltfilt recomputes them on every call (a linear solve per
    section, about a fifth of this path's time)."""
    sos, zi = _sos_zi(tuple(band), float(fs), order)
    n = x.shape[-1]
    pad = filters._padlen(n, fs)
    if pad > 0:
        ext = np.concatenate([2 * x[:, :1] - x[:, pad:0:-1], x, 2 * x[:, -1:] - x[:, -2:-pad - 2:-1]], axis=1)
    else:
        ext = x
    z = zi[:, None, :]  # (sections, 1, 2) broadcast over leads
    y, _ = sosfilt(sos, ext, axis=-1, zi=z * ext[:, 0][None, :, None])
    y, _ = sosfilt(sos, y[:, ::-1], axis=-1, zi=z * y[:, -1][None, :, None])
    y = y[:, ::-1]
    return np.ascontiguousarray(y[:, pad:n + pad]) if pad > 0 else np.ascontiguousarray(y)


def _screen(raw: np.ndarray, fs: float, x_meas: np.ndarray, fsa: float, flagged: np.ndarray | None,
            names: tuple[str, ...]) -> list[quality.LeadQuality]:
    """Adapter over the engine's lead screen (engine/quality.py), kept in one place: that module is being reworked
    and its signature may move; the window path needs only (ok, reasons) per sent lead."""
    return quality.screen_leads(raw, fs, x_meas, fsa, flagged, names)


def _all_failed(names, reason: str) -> dict[str, TrendPoint]:
    return {n: TrendPoint(lead=n, quality="not-analysable", reasons=(reason,))
            for n in sorted(names, key=lead_order)}


def _finish(names: list[str], lq: list[quality.LeadQuality], ms: list[measure.LeadMeasure] | None,
            why_none: str) -> dict[str, TrendPoint]:
    out: dict[str, TrendPoint] = {}
    for i in sorted(range(len(names)), key=lambda k: lead_order(names[k])):
        name, q = names[i], lq[i]
        if ms is None:
            out[name] = TrendPoint(lead=name, quality="not-analysable", reasons=tuple(q.reasons) + (why_none,))
        elif not q.ok:
            out[name] = TrendPoint(lead=name, quality="not-analysable", reasons=tuple(q.reasons))
        else:
            m = ms[i]
            out[name] = TrendPoint(lead=name, quality="ok", reasons=tuple(q.reasons), t_amplitude_mv=float(m.t_amp),
                                   t_polarity=POLARITY[m.polarity], st_j60_mv=float(m.st_j60))
    return out
