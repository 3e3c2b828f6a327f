"""ST segment on the median beat and the 4th UDMI ST-depression criterion that stands beside TWI (docs/SPEC.md §4).

4th Universal Definition of MI (Circulation 2018;138:e618): "new horizontal or downsloping ST depression >= 0.5 mm
(0.05 mV) in two contiguous leads". Definitions used here (none was fitted to data; the 0.05 mV is the UDMI value,
the window and slope limit are conventional choices):
* J point: the median beat's QRS offset (all leads together, as for the other measures).
* ST level at J: mean of the lead over [J, J + ST_J_WINDOW_S] vs the PR isoelectric level, so a one-sample notch does
  not decide it.
* ST slope: least-squares slope over [J, J + ST_SLOPE_WINDOW_S] (cut at the lead's T onset when that comes first, but
  never shorter than ST_MIN_WINDOW_S), in mV/s.
* Shape: "upsloping" above +SLOPE_MV_S, "downsloping" below -SLOPE_MV_S, otherwise "horizontal"
  (SLOPE_MV_S = 0.5 mV/s: 0.04 mV over 80 ms).
* Depressed lead: ST level at J <= -ST_DEPRESSION_MV, shape horizontal or downsloping, quality ok, not aVR (an ST
  shift in aVR mirrors the other leads and is not a contiguous-lead finding).
* Groups: runs of >= 2 depressed leads in the same contiguity sequences as TWI (Cabrera limb sequence, V1..V6).
* Novelty against the most recent prior: "persistent" when it listed an ST-depression group sharing >= 2 leads, or
  >= 2 contiguous of the leads were already depressed (J level <= -(0.05 - PRIOR_TOLERANCE_MV) with a non-upsloping
  ST); "unknown" when the prior lacks ST measures for >= 2 of the leads (no prior, or a prior from an engine before
  ST measures); "new" otherwise.
ST depression is secondary too in LBBB, ventricular pacing, WPW, LVH with strain and wide QRS: the triage evidence
says which secondary causes are present, as for TWI.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.criteria import LIMB_SEQUENCE, PRECORDIAL_SEQUENCE, _group_name
from engine.filters import moving_average
from engine.novelty import novelty_against
from engine.result import PriorSummary, TwiGroup

ST_DEPRESSION_MV = 0.05
ST_J_WINDOW_S = 0.02
ST_SLOPE_WINDOW_S = 0.08
ST_MIN_WINDOW_S = 0.04
SLOPE_MV_S = 0.5
PRIOR_TOLERANCE_MV = 0.025
RULE = "4th UDMI: horizontal/downsloping ST depression >= 0.05 mV at the J point in >= 2 contiguous leads"


@dataclass
class StMeasure:
    j_mv: float  # ST level at the J point (mean over J..J+20 ms) vs the isoelectric level
    slope_mv_s: float
    shape: str  # "horizontal" | "downsloping" | "upsloping"


def st_measures(tref: np.ndarray, j: int, t_onset: np.ndarray, fs: float) -> list[StMeasure]:
    """tref: (leads, window) median beat minus its isoelectric level; j: J point (window index); t_onset: (leads,)."""
    w = tref.shape[1]
    ys = moving_average(tref, max(1, int(round(0.01 * fs))))
    jw = max(1, int(round(ST_J_WINDOW_S * fs)))
    level = ys[:, j:min(w, j + jw + 1)].mean(axis=1)
    out = []
    for i in range(tref.shape[0]):  # 12 leads, a few samples each
        end = j + int(round(ST_SLOPE_WINDOW_S * fs))
        if 0 <= t_onset[i] < end:
            end = max(int(t_onset[i]), j + int(round(ST_MIN_WINDOW_S * fs)))
        end = min(end, w - 1)
        seg = ys[i, j:end + 1]
        if seg.size >= 3:  # least-squares slope
            t = np.arange(seg.size) / fs
            tc = t - t.mean()
            slope = float(tc @ (seg - seg.mean()) / (tc @ tc))
        else:
            slope = 0.0
        shape = "upsloping" if slope > SLOPE_MV_S else "downsloping" if slope < -SLOPE_MV_S else "horizontal"
        out.append(StMeasure(j_mv=round(float(level[i]), 3), slope_mv_s=round(slope, 2), shape=shape))
    return out


def is_depressed(lead: str, m: StMeasure | None, quality_ok: bool) -> bool:
    return bool(m is not None and quality_ok and lead != "aVR" and m.j_mv <= -ST_DEPRESSION_MV
                and m.shape in ("horizontal", "downsloping"))


def find_st_groups(measures: dict[str, StMeasure], quality_ok: dict[str, bool]) -> list[TwiGroup]:
    """Maximal runs of >= 2 contiguous leads with horizontal/downsloping ST depression >= 0.05 mV."""
    groups: list[TwiGroup] = []
    for seq in (LIMB_SEQUENCE, PRECORDIAL_SEQUENCE):
        run: list[str] = []
        for lead in seq + ("",):  # sentinel closes the last run
            if lead in measures and is_depressed(lead, measures[lead], quality_ok.get(lead, False)):
                run.append(lead)
                continue
            if len(run) >= 2:
                shapes = sorted({measures[x].shape for x in run})
                groups.append(TwiGroup(name=_group_name(run), leads=list(run),
                                       depths_mv={x: round(-measures[x].j_mv, 3) for x in run},
                                       rule=f"{RULE} ({'/'.join(shapes)}): {', '.join(run)}"))
            run = []
    return groups


def _depressed_before(entry: dict[str, Any] | None) -> bool | None:
    if not entry or entry.get("quality") != "ok" or entry.get("st_j_mv") is None:
        return None
    return entry.get("st_shape") in ("horizontal", "downsloping") and \
        float(entry["st_j_mv"]) <= -(ST_DEPRESSION_MV - PRIOR_TOLERANCE_MV)


def assign_st_novelty(groups: list[TwiGroup], priors: list[PriorSummary | dict[str, Any]]) -> str:
    """Sets each ST-depression group's novelty against the most recent prior; returns the record's
    ("new" | "persistent" | "unknown", or "none" without groups)."""
    prior = None
    if priors:
        p = priors[-1]
        prior = p if isinstance(p, PriorSummary) else PriorSummary.from_dict(p)
    for g in groups:
        g.novelty = _novelty(g, prior)
    if not groups:
        return "none"
    kinds = {g.novelty for g in groups}
    return next((k for k in ("new", "persistent") if k in kinds), "unknown")


def _novelty(group: TwiGroup, prior: PriorSummary | None) -> str:
    if prior is None:
        return "unknown"
    return novelty_against(group.leads, prior.st_depression_groups, prior.lead_st, _depressed_before)
