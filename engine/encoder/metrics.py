"""Binary-classification metrics with percentile-bootstrap 95 % confidence intervals (numpy only).

With a handful of positives the intervals are wide, and they are reported as such: that is the honest number.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    y = np.asarray(y, dtype=bool)
    pos, neg = p[y], p[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allp = np.concatenate([pos, neg])
    order = np.argsort(allp, kind="mergesort")
    sorted_p = allp[order]
    # average rank over each run of tied values: run starts/ends from where the sorted value changes
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], sorted_p.size]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(allp.size)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].sum() / hits.sum())


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y, dtype=bool)
    call = p >= threshold
    tp, fn = int((call & y).sum()), int((~call & y).sum())
    tn, fp = int((~call & ~y).sum()), int((call & ~y).sum())
    return {"threshold": threshold, "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"), "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def binary_report(y: np.ndarray, p: np.ndarray, *, threshold: float = 0.5, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """AUROC and AP with bootstrap CIs, sensitivity/specificity at `threshold`; NaN labels are dropped."""
    y = np.asarray(y, dtype=float)
    keep = ~np.isnan(y)
    y, p = y[keep].astype(bool), np.asarray(p, dtype=float)[keep]
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum()), "negatives": int((~y).sum()),
                           "auroc": auroc(y, p), "average_precision": average_precision(y, p),
                           **at_threshold(y, p, threshold)}
    rng = np.random.default_rng(seed)
    aucs, aps = [], []
    skipped = 0
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size) if y.size else np.array([], dtype=int)
        yb, pb = y[idx], p[idx]
        if yb.all() or not yb.any():
            skipped += 1  # a resample without both classes has no AUROC
            continue
        aucs.append(auroc(yb, pb))
        aps.append(average_precision(yb, pb))
    out["auroc_ci95"] = _ci(aucs)
    out["average_precision_ci95"] = _ci(aps)
    out["bootstrap"] = {"resamples": n_boot, "skipped_one_class": skipped, "method": "percentile, records resampled"}
    return out


def _ci(values: list[float]) -> list[float] | None:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
