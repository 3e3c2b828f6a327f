"""Metrics with 95 % bootstrap confidence intervals, resampling records (a record's leads and beats move together,
so within-record correlation does not shrink the intervals).

Every metric is a pooled statistic over records: a ratio of per-record counts (sensitivity = sum TP / sum (TP + FN)),
or a statistic of the pooled per-record value lists (median error). The interval is the 2.5..97.5 percentile of that
statistic over `n_boot` resamples of the records with replacement (percentile bootstrap, fixed seed: reruns print the
same numbers). Paired differences (ours minus NeuroKit2) use the same resamples for both methods.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 20240601
ALPHA = 0.05


@dataclass
class Bootstrap:
    """The record resamples shared by every metric of one report (paired comparisons need the same ones)."""

    n: int
    n_boot: int = N_BOOT
    seed: int = SEED

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.idx = (rng.integers(0, self.n, size=(self.n_boot, self.n)) if self.n
                    else np.zeros((self.n_boot, 0), dtype=int))

    def _interval(self, samples: np.ndarray) -> tuple[float | None, float | None]:
        s = samples[np.isfinite(samples)]
        if s.size == 0:
            return None, None
        lo, hi = np.percentile(s, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
        return float(lo), float(hi)

    def ratio(self, num: Sequence[float], den: Sequence[float]) -> dict:
        """sum(num) / sum(den) over records, with its CI."""
        num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
        total_n, total_d = float(num.sum()), float(den.sum())
        value = total_n / total_d if total_d > 0 else None
        if self.n == 0 or value is None:
            return {"value": value, "ci": [None, None], "num": total_n, "den": total_d}
        bn, bd = num[self.idx].sum(axis=1), den[self.idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            lo, hi = self._interval(np.where(bd > 0, bn / np.where(bd > 0, bd, 1), np.nan))
        return {"value": value, "ci": [lo, hi], "num": total_n, "den": total_d}

    def ratio_diff(self, num_a, den_a, num_b, den_b) -> dict:
        """(sum num_a / sum den_a) - (sum num_b / sum den_b), paired over the same resamples."""
        a = [np.asarray(v, dtype=float) for v in (num_a, den_a, num_b, den_b)]
        if a[1].sum() <= 0 or a[3].sum() <= 0:
            return {"value": None, "ci": [None, None]}
        value = a[0].sum() / a[1].sum() - a[2].sum() / a[3].sum()
        s = [v[self.idx].sum(axis=1) for v in a]
        with np.errstate(invalid="ignore", divide="ignore"):
            ra = s[0] / np.where(s[1] > 0, s[1], 1)
            rb = s[2] / np.where(s[3] > 0, s[3], 1)
            d = np.where((s[1] > 0) & (s[3] > 0), ra - rb, np.nan)
        lo, hi = self._interval(d)
        return {"value": float(value), "ci": [lo, hi]}

    def pooled(self, per_record: Sequence[Sequence[float]], stat: Callable[[np.ndarray], float]) -> dict:
        """stat(concatenation of the per-record value lists), with its CI."""
        arrays = [np.asarray(v, dtype=float) for v in per_record]
        allv = np.concatenate(arrays) if arrays else np.zeros(0)
        if allv.size == 0:
            return {"value": None, "ci": [None, None], "n": 0}
        value = float(stat(allv))
        samples = np.empty(self.n_boot)
        for b in range(self.n_boot):
            v = np.concatenate([arrays[i] for i in self.idx[b]])
            samples[b] = stat(v) if v.size else np.nan
        lo, hi = self._interval(samples)
        return {"value": value, "ci": [lo, hi], "n": int(allv.size)}


def error_summary(boot: Bootstrap, per_record: Sequence[Sequence[float]]) -> dict:
    """Signed errors (detected - reference, ms): median, mean, SD, and the median, mean and 90th percentile of
    |error|, each with a CI. The median |error| moves in whole samples of the annotation (2 ms at 500 Hz), so two
    methods can tie on it; the mean and P90 of |error| separate them by how far the misses land."""
    return {
        "median": boot.pooled(per_record, np.median),
        "mean": boot.pooled(per_record, np.mean),
        "sd": boot.pooled(per_record, lambda v: float(np.std(v, ddof=1)) if v.size > 1 else np.nan),
        "median_abs": boot.pooled(per_record, lambda v: float(np.median(np.abs(v)))),
        "mean_abs": boot.pooled(per_record, lambda v: float(np.mean(np.abs(v)))),
        "p90_abs": boot.pooled(per_record, lambda v: float(np.percentile(np.abs(v), 90))),
    }


def binary_counts(y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict[str, np.ndarray]:
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return {"tp": (t & p).astype(float), "fp": (~t & p).astype(float), "fn": (t & ~p).astype(float),
            "tn": (~t & ~p).astype(float)}


def binary_metrics(boot: Bootstrap, c: dict[str, Sequence[float]]) -> dict:
    """Sensitivity, specificity, PPV from per-record tp/fp/fn/tn counts (per-record 0/1 for record-level labels,
    or per-record lead counts for lead-level labels)."""
    tp, fp, fn, tn = (np.asarray(c[k], dtype=float) for k in ("tp", "fp", "fn", "tn"))
    return {
        "sensitivity": boot.ratio(tp, tp + fn),
        "specificity": boot.ratio(tn, tn + fp),
        "ppv": boot.ratio(tp, tp + fp),
        "positives": int(tp.sum() + fn.sum()),
        "negatives": int(tn.sum() + fp.sum()),
        "tp": int(tp.sum()), "fp": int(fp.sum()), "fn": int(fn.sum()), "tn": int(tn.sum()),
    }


def fmt(m: dict | None, pct: bool = True, digits: int = 1) -> str:
    """'97.3 % (95.1-98.6)' or '12.0 (10.5-13.1)' for a metric dict; 'n/a' when undefined."""
    if not m or m.get("value") is None:
        return "n/a"
    k = 100.0 if pct else 1.0
    lo, hi = m["ci"]
    unit = " %" if pct else ""
    if lo is None:
        return f"{k * m['value']:.{digits}f}{unit}"
    return f"{k * m['value']:.{digits}f}{unit} ({k * lo:.{digits}f}-{k * hi:.{digits}f})"
