"""PNG plots of the evaluations (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.record import STANDARD_LEADS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bland_altman(records: list[dict], names: list[str], path: Path, split: str = "all") -> str:
    """T offset: difference (method - annotation) against the mean of the two, both measured from the annotated QRS
    onset of the beat (a QT-like interval), one panel per method, with bias and 1.96 SD limits."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], names, strict=True):
        pairs = np.array([p for r in records for s in r["methods"][m]["leads"].values() for p in s["ba"]])
        if pairs.size == 0:
            ax.set_title(f"{m}: no matched T waves")
            continue
        ref, det = pairs[:, 0], pairs[:, 1]
        mean, diff = (ref + det) / 2, det - ref
        bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if diff.size > 1 else 0.0
        ax.scatter(mean, diff, s=3, alpha=0.25, color="tab:blue", linewidths=0)
        for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
            ax.axhline(y, color="tab:red", linestyle=style, linewidth=1)
        ax.set_title(f"{m}: bias {bias:+.1f} ms, SD {sd:.1f} ms (n={diff.size})", fontsize=9)
        ax.set_xlabel("mean QRS onset -> T offset, annotated & detected (ms)", fontsize=8)
        ax.set_ylim(-250, 250)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("detected - annotated T offset (ms)")
    fig.suptitle(f"Bland-Altman of T offset vs LUDB annotations ({split} records; y clipped to +-250 ms)", fontsize=10)
    return _save(plt, fig, path)


def confusion(summary: dict[str, Any], names: list[str], path: Path, title: str) -> str:
    """Per-lead T polarity: reference class (rows) vs predicted class (columns), one panel per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
    for ax, m in zip(axes[0], names, strict=True):
        cm = summary["methods"][m]["t_polarity"]["confusion"]
        counts = np.array(cm["counts"])
        ax.imshow(counts, cmap="Blues")
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                        color="white" if counts[i, j] > counts.max() / 2 else "black", fontsize=9)
        ax.set_xticks(range(len(cm["cols_predicted"])), cm["cols_predicted"], fontsize=8)
        ax.set_yticks(range(len(cm["rows_reference"])), cm["rows_reference"], fontsize=8)
        acc = summary["methods"][m]["t_polarity"]["accuracy"]["value"]
        ax.set_title(f"{m} (accuracy {100 * acc:.1f} %)" if acc is not None else m, fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("reference (LUDB-derived)")
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def per_lead_accuracy(summary: dict[str, Any], names: list[str], path: Path, title: str) -> str:
    """T-polarity accuracy per lead with 95 % CI bars, methods side by side."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(names)
    x = np.arange(len(STANDARD_LEADS))
    for k, m in enumerate(names):
        pl = summary["methods"][m]["t_polarity"]["per_lead"]
        vals = np.array([np.nan if pl[lead]["value"] is None else 100 * pl[lead]["value"] for lead in STANDARD_LEADS])
        lo = np.array([np.nan if pl[lead]["ci"][0] is None else 100 * pl[lead]["ci"][0] for lead in STANDARD_LEADS])
        hi = np.array([np.nan if pl[lead]["ci"][1] is None else 100 * pl[lead]["ci"][1] for lead in STANDARD_LEADS])
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        ax.bar(x + (k - (len(names) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=m)
    ax.set_xticks(x, STANDARD_LEADS)
    ax.set_ylabel("T-polarity accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncol=len(names), loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def delineation_plots(records: list[dict], report: dict[str, Any], names: list[str], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    split = "all" if "all" in report["splits"] else next(iter(report["splits"]))
    s = report["splits"][split]
    sub = [r for r in records if split == "all" or r["split"] == split]
    n = s["records"]
    return {
        "bland_altman_t_offset": bland_altman(sub, names, out / "ludb_bland_altman_t_offset.png", split),
        "polarity_confusion": confusion(s, names, out / "ludb_polarity_confusion.png",
                                        f"T polarity per lead vs LUDB-derived reference ({split}, {n} records)"),
        "per_lead_accuracy": per_lead_accuracy(s, names, out / "ludb_polarity_per_lead.png",
                                               f"T-polarity accuracy per lead, LUDB {split} ({n} records), 95 % CI"),
    }


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
