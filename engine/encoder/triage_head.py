"""The triage head's scores beside the measured criteria: the criteria stay primary; the head only says when it
disagrees.

Head outputs (sigmoid probabilities, `scores` in the exported graph):
  0 twi_present            — PTB-XL INVT on the ECG
  1 ischemic_vs_secondary  — ischemic ST-T codes (ISC*/INJ*) rather than a secondary cause (bundle branch block, LVH,
                             WPW, pacing); trained on ECGs carrying exactly one of the two kinds of code.
The head was trained on a few dozen positives (see its MODEL_CARD.md): its disagreement is a prompt for review,
never a finding. Numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.result import Analysis


@dataclass(frozen=True)
class TriageScores:
    twi_present: float
    ischemic_vs_secondary: float

    @classmethod
    def from_row(cls, row: Sequence[float] | np.ndarray) -> TriageScores:
        values = np.asarray(row, dtype=float).ravel()
        if values.size != 2 or not np.isfinite(values).all():
            raise ValueError(f"expected 2 finite head scores, got {values!r}")
        return cls(float(values[0]), float(values[1]))


@dataclass(frozen=True)
class HeadThresholds:
    """Below `twi_low` the head calls TWI absent, at or above `twi_high` present; between, it abstains.
    The same for ischemic (high) vs secondary (low). Training writes validation-chosen values into the manifest."""

    twi_low: float = 0.2
    twi_high: float = 0.8
    ischemic_low: float = 0.2
    ischemic_high: float = 0.8

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> HeadThresholds:
        values = ((manifest.get("head") or {}).get("thresholds")) or {}
        return cls(**{k: float(v) for k, v in values.items() if k in cls.__dataclass_fields__})


def head_disagrees(analysis: Analysis, scores: TriageScores | Sequence[float] | np.ndarray,
                   thresholds: HeadThresholds | None = None) -> str | None:
    """A readable sentence when the head contradicts the measured criteria, else None (agreement or abstention)."""
    s = scores if isinstance(scores, TriageScores) else TriageScores.from_row(scores)
    th = thresholds or HeadThresholds()
    cls = analysis.triage.cls
    if cls == "indeterminate":
        return None  # the criteria could not decide: nothing to contradict
    if analysis.twi_present and s.twi_present < th.twi_low:
        leads = ", ".join(sorted({lead for g in analysis.twi for lead in g.leads}))
        return (f"triage head: TWI unlikely (p={s.twi_present:.2f}) although the criteria found TWI in {leads}; "
                "the measured criteria stand")
    if not analysis.twi_present and s.twi_present >= th.twi_high:
        return (f"triage head: TWI likely (p={s.twi_present:.2f}) although no contiguous-lead group met the criteria; "
                "review the tracing")
    if cls == "ischemic-pattern" and s.ischemic_vs_secondary < th.ischemic_low:
        return (f"triage head favours a secondary cause (p ischemic={s.ischemic_vs_secondary:.2f}) where the criteria "
                "found no secondary cause; review for bundle branch block, LVH, pacing or WPW")
    if cls.startswith("secondary:") and s.ischemic_vs_secondary >= th.ischemic_high:
        cause = cls.split(":", 1)[1]
        return (f"triage head favours an ischemic pattern (p ischemic={s.ischemic_vs_secondary:.2f}) where the "
                f"criteria attribute the TWI to {cause}; ischemia on top of {cause} is not excluded")
    return None
