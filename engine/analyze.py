"""`analyze(record, priors) -> Analysis`: the one composition of the engine's steps (docs/SPEC.md §1 order).

window (last 60 s) -> derive limb leads from I+II -> pacing spikes on the raw signal -> resample to 500 Hz ->
filters -> lead quality -> QRS -> delineation -> measures -> TWI criteria -> novelty -> secondary causes -> triage.
All indices reported are samples of the record as sent, at its own rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import __version__, criteria, measure, novelty, quality, secondary, st
from engine.beats import delineate_record, r_peaks
from engine.filters import detection_filter, measurement_filter
from engine.pacing import MIN_FS_FOR_SPIKES, blank_spikes, detect_spikes
from engine.record import STANDARD_LEADS, EcgRecord, derive_limb_leads, fill_flagged, iso_utc, last_window
from engine.resample import to_analysis_rate, to_own_rate
from engine.result import (
    SUMMARY_SCHEMA_VERSION,
    Analysis,
    Beat,
    LeadResult,
    PriorSummary,
    SecondaryFinding,
    Triage,
    TwiGroup,
)
from engine.triage import triage

VENTRICULAR_SPIKE_S = 0.08  # a spike this close before QRS onset paced the ventricle
ANY_SPIKE_S = 0.30  # ... this close: some chamber was paced
# A spike may lie a little after the detected QRS onset: the zero-phase measurement filter spreads what is left of the
# blanked stimulus a few tens of ms backwards, so the velocity-based onset can precede the spike (PTB-XL 500 Hz paced).
SPIKE_AFTER_ONSET_S = 0.04


def analyze(record: EcgRecord, priors: list[PriorSummary] | None = None) -> Analysis:
    priors = list(priors or [])
    full_n = record.n_samples
    rec, truncated = last_window(record)
    start = full_n - rec.n_samples
    rec = derive_limb_leads(rec)
    names = rec.standard_leads
    idx = [rec.leads.index(n) for n in names]
    raw = np.asarray(rec.signal[idx], dtype=np.float64)
    flagged = rec.flagged[idx] if rec.flagged is not None else None
    fs = float(rec.fs)
    notes: list[str] = []
    if truncated:
        notes.append(f"strip of {record.duration_s:.1f} s: analysed the last {rec.duration_s:.0f} s "
                     f"(from sample {start})")
    if rec.derived_leads:
        notes.append("limb leads derived from I and II: "
                     + ", ".join(sorted(rec.derived_leads, key=STANDARD_LEADS.index)))
    if flagged is not None and flagged.any():
        raw = fill_flagged(raw, flagged)

    spikes = detect_spikes(raw, fs)
    clean = blank_spikes(raw, spikes, fs)
    x, fsa = to_analysis_rate(clean, fs)
    x_meas = measurement_filter(x, fsa)
    x_det = detection_filter(x, fsa)
    lq = quality.screen_leads(raw, fs, x_meas, fsa, flagged, names)
    usable = np.array([q.ok for q in lq])
    d = delineate_record(x_meas, x_det, fsa, usable)

    def own(i):  # analysis-rate index -> index into the record as sent
        return to_own_rate(i, fsa, fs, rec.n_samples) + start

    if d is None:
        leads = {n: LeadResult(lead=n, quality="not-analysable" if not q.ok else "ok", quality_reasons=q.reasons,
                               derived=n in rec.derived_leads) for n, q in zip(names, lq, strict=True)}
        return _finish(record, rec, leads, truncated, start, notes,
                       _Findings(triage=Triage("indeterminate", ["no QRS complex detected"])))

    quality.beat_noise(d.epochs.data, d.template, d.conforming, d.epochs.valid, lq, fs=fsa, rr=d.rr,
                       qrs=(d.tm.qrs_onset, d.tm.qrs_offset))
    tm = d.tm
    ms = measure.lead_measures(d.template_iso_ref, tm.qrs_onset, tm.qrs_offset, tm.t.onset, tm.t.peak, tm.t.offset,
                               tm.t.sign, tm.p.onset, tm.p.amplitude, fsa)
    measures = dict(zip(names, ms, strict=True))
    ok = {n: q.ok for n, q in zip(names, lq, strict=True)}
    ok_measures = {n: m for n, m in measures.items() if ok[n]}
    qrs_ms = round((tm.qrs_offset - tm.qrs_onset) * 1000.0 / fsa, 1)
    prs = [m.pr_ms for m in ok_measures.values() if m.pr_ms is not None and 60 <= m.pr_ms <= 350]
    p_leads = len(prs)
    p_present = p_leads >= min(2, max(1, len(ok_measures)))
    pr_ms = round(float(np.median(prs)), 1) if p_present else None

    onsets_own = own(d.qrs_onset)
    v_frac, a_frac = _spike_fractions(spikes + start, onsets_own, fs)
    rhythm = measure.rhythm_measures(d.fiducials, fsa, p_present, paced=bool(a_frac is not None and a_frac >= 0.5))

    groups, verdicts = criteria.find_groups(ok_measures, ok)
    record_novelty = novelty.assign_novelty(groups, priors)
    st_ms = dict(zip(names, st.st_measures(d.template_iso_ref, tm.qrs_offset, tm.t.onset, fsa), strict=True))
    st_groups = st.find_st_groups(st_ms, ok)
    st_novelty = st.assign_st_novelty(st_groups, priors)
    lateral_twi = [n for n in ("I", "aVL", "V5", "V6") if n in verdicts and verdicts[n].depth_mv > criteria.TWI_DEPTH_MV
                   and ok.get(n)]
    tref = {n: d.template_iso_ref[i] for i, n in enumerate(names) if ok[n]}
    # QRS morphology checks also read leads that failed only for their ST-T (quality.LeadQuality.qrs_ok)
    qrs_ok = {n for n, q in zip(names, lq, strict=True) if q.ok or q.qrs_ok}
    unusable = {n: "; ".join(q.reasons) or "quality" for n, q in zip(names, lq, strict=True) if n not in qrs_ok}
    qrs_tref = {n: d.template_iso_ref[i] for i, n in enumerate(names) if n in qrs_ok}
    qrs_measures = {n: m for n, m in measures.items() if n in qrs_ok}
    on_, off_ = tm.qrs_onset, tm.qrs_offset
    sec = [
        secondary.check_pacing(v_frac, int(spikes.size), qrs_ms, rhythm.rr_cv),
        secondary.check_lbbb(qrs_measures, qrs_ms, unusable),
        secondary.check_rbbb(qrs_tref, qrs_ms, on_, off_, fsa, unusable),
        secondary.check_lvh_strain(ok_measures, rec.sex, lateral_twi),
        secondary.check_wpw(tref, ok_measures, pr_ms, qrs_ms, tm.qrs_onset, fsa),
    ]
    sec.append(secondary.check_ivcd(qrs_ms, sec))
    sec += [secondary.check_lvh_voltage(qrs_measures, rec.sex, unusable),
            secondary.check_rbbb_incomplete(qrs_tref, qrs_ms, on_, off_, fsa, unusable),
            secondary.check_lbbb_incomplete(qrs_measures, qrs_ms, unusable)]
    caveats = [v.why for v in verdicts.values() if v.why and v.depth_mv > criteria.TWI_DEPTH_MV and "aVR" not in v.why]
    caveats += [f"{n}: not analysable ({'; '.join(q.reasons)})" for n, q in zip(names, lq, strict=True) if not q.ok]
    if rec.absent_leads:
        caveats.append("absent leads: " + ", ".join(rec.absent_leads))
    tri = triage(groups, sec, ok_measures, qrs_ms, int(usable.sum()), record_novelty, caveats, st_groups)

    rp, t_on, t_pk, t_off = (_own_or_none(a, own) for a in (r_peaks(d), d.t_onset, d.t_peak, d.t_offset))
    q_off = own(d.qrs_offset).tolist()
    q_on = onsets_own.tolist()
    leads = {}
    for i, n in enumerate(names):
        q, m = lq[i], measures[n]
        beats = [Beat(qrs_onset=q_on[b], r_peak=rp[i][b], qrs_offset=q_off[b], t_onset=t_on[i][b],
                      t_peak=t_pk[i][b], t_offset=t_off[i][b]) for b in range(d.fiducials.size)]
        lr = LeadResult(lead=n, quality="ok" if q.ok else "not-analysable", quality_reasons=q.reasons,
                        derived=n in rec.derived_leads, snr_db=q.snr_db, qrs_duration_ms=qrs_ms, beats=beats)
        if q.ok:
            lr.t_polarity, lr.t_amplitude_mv, lr.t_symmetry = m.polarity, m.t_amp, m.symmetry
            lr.t_peak_ms, lr.t_offset_ms, lr.st_j60_mv = m.t_peak_ms, m.t_offset_ms, m.st_j60
            lr.r_amplitude_mv, lr.s_amplitude_mv = m.r_amp, m.s_amp
            lr.pr_interval_ms, lr.qrs_mostly_positive = m.pr_ms, m.qrs_mostly_positive
            s_m = st_ms[n]
            lr.st_j_mv, lr.st_slope_mv_s, lr.st_shape = s_m.j_mv, s_m.slope_mv_s, s_m.shape
        leads[n] = lr
    notes += rhythm.evidence
    findings = _Findings(triage=tri, heart_rate_bpm=rhythm.heart_rate_bpm, rr_cv=rhythm.rr_cv, rhythm=rhythm.rhythm,
                         groups=groups, novelty=record_novelty, secondary=sec, qrs_ms=qrs_ms, pr_ms=pr_ms,
                         st_groups=st_groups, st_novelty=st_novelty)
    return _finish(record, rec, leads, truncated, start, notes, findings)


def _own_or_none(a: np.ndarray, own) -> list[list[int | None]]:
    """(leads, beats) analysis-rate indices (-1 = absent) -> nested lists of own-rate indices or None."""
    mapped = own(np.maximum(a, 0))
    return np.where(a < 0, None, mapped).tolist()


def _spike_fractions(spikes: np.ndarray, onsets: np.ndarray, fs: float) -> tuple[float | None, float | None]:
    """Fractions of QRS complexes led by a spike within VENTRICULAR_SPIKE_S / ANY_SPIKE_S (None below 400 Hz)."""
    if fs < MIN_FS_FOR_SPIKES:
        return None, None
    if onsets.size == 0 or spikes.size == 0:
        return 0.0, 0.0
    lead = onsets[:, None] - spikes[None, :]  # >0: spike before onset
    near = lambda s: ((lead >= -SPIKE_AFTER_ONSET_S * fs) & (lead <= s * fs)).any(axis=1).mean()  # noqa: E731
    return float(near(VENTRICULAR_SPIKE_S)), float(near(ANY_SPIKE_S))


@dataclass
class _Findings:
    """The record-level findings; the defaults are what a record without a detected QRS complex has."""

    triage: Triage
    heart_rate_bpm: float | None = None
    rr_cv: float | None = None
    rhythm: str = "undetermined"
    groups: list[TwiGroup] = field(default_factory=list)
    novelty: str = "none"
    secondary: list[SecondaryFinding] = field(default_factory=list)
    qrs_ms: float | None = None
    pr_ms: float | None = None
    st_groups: list[TwiGroup] = field(default_factory=list)
    st_novelty: str = "none"


def _finish(record: EcgRecord, rec: EcgRecord, leads: dict[str, LeadResult], truncated: bool, start: int,
            notes: list[str], f: _Findings) -> Analysis:
    summary = PriorSummary(
        schema_version=SUMMARY_SCHEMA_VERSION,
        source_id=record.source_id,
        acquired_at=iso_utc(record.acquired_at) if record.acquired_at else None,
        lead_t={n: {"polarity": lr.t_polarity, "amplitude_mv": lr.t_amplitude_mv, "quality": lr.quality}
                for n, lr in leads.items()},
        twi_groups=[list(g.leads) for g in f.groups],
        lead_st={n: {"st_j_mv": lr.st_j_mv, "st_shape": lr.st_shape, "quality": lr.quality} for n, lr in leads.items()},
        st_depression_groups=[list(g.leads) for g in f.st_groups],
    )
    return Analysis(
        engine_version=__version__, fs=float(record.fs), duration_s=round(record.duration_s, 3), truncated=truncated,
        heart_rate_bpm=f.heart_rate_bpm, rr_irregularity=f.rr_cv, rhythm=f.rhythm, leads=leads,
        absent_leads=list(rec.absent_leads), derived_leads=sorted(rec.derived_leads, key=STANDARD_LEADS.index),
        twi=f.groups, novelty=f.novelty, secondary=f.secondary, triage=f.triage, summary=summary, notes=notes,
        analysed_from_sample=start, qrs_duration_ms=f.qrs_ms, pr_interval_ms=f.pr_ms, st_depression=f.st_groups,
        st_depression_novelty=f.st_novelty,
    )
