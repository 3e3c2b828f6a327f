"""Monitor streams (docs/SPEC.md §11): the lean per-window analysis (`window.analyse_window`, one trend point per
lead) and the per-bed episode machine against the patient's own baseline (`episodes.step`). Computation only: the
stream side assembles windows from chunks and keeps the JSON state in its tables."""
from __future__ import annotations

from engine.monitor.episodes import (
    EpisodeEvent,
    MonitorRules,
    annotated,
    baseline_from_prior,
    close_for_patient_change,
    new_state,
    silence,
    step,
)
from engine.monitor.window import TrendPoint, analyse_window

__all__ = [
    "EpisodeEvent", "MonitorRules", "TrendPoint", "analyse_window", "annotated", "baseline_from_prior",
    "close_for_patient_change", "new_state", "silence", "step",
]
