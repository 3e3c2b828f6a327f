"""Is the opt-in INT8 encoder the same model as FP32 where it matters? The shipped triage model, run by ONNX Runtime
CPU in FP32 and in INT8 (engine/encoder/quantize.py) on the model card's TEST split (PTB-XL fold 9 + LUDB test
records; fold 10 and the held-out LUDB ids are never read): AUROC of each head output for both, with a paired
bootstrap CI of the difference, the largest score change, and how often an abstention-band decision
(TWI < 0.2 / >= 0.8, ischemic < 0.2 / >= 0.8: the band `head_disagrees` uses) lands on another side.

    .venv/bin/python bench/int8_check.py --data ../shared/data --json docs/results/int8_check.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.encoder.manifest import load_manifest  # noqa: E402
from engine.encoder.metrics import auroc  # noqa: E402
from engine.encoder.runtime_choice import select_runtime  # noqa: E402
from engine.encoder.triage_head import HeadThresholds  # noqa: E402
from integrations.encoder import training_data as td  # noqa: E402


def scores(runtime, x: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([runtime.embed(x[i:i + batch])[1] for i in range(0, len(x), batch)])


def band(p: np.ndarray, low: float, high: float) -> np.ndarray:
    """-1 below the band, 0 inside (abstain), +1 at or above."""
    return np.where(p < low, -1, np.where(p >= high, 1, 0))


def paired_auroc_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> list[float | None]:
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(auroc(y[i], a[i]) - auroc(y[i], b[i]))
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))] if diffs else [None, None]


def run(data_dir: Path, manifest: Path, n_boot: int = 1000, seed: int = 0) -> dict:
    items = [it for it in td.find_items(data_dir) if it.split == "test"]
    x = td.load_signals(items)
    fp32 = select_runtime(manifest, prefer="ort-cpu", threads=1)
    with tempfile.TemporaryDirectory() as cache:
        int8 = select_runtime(manifest, prefer="ort-cpu", threads=1, precision="int8", cache_dir=cache)
        s32, s8 = scores(fp32, x), scores(int8, x)
    th = HeadThresholds()
    labels = {"twi_present": np.array([it.twi for it in items]),
              "ischemic_vs_secondary": np.array([it.ischemic for it in items])}
    bands = {"twi_present": (th.twi_low, th.twi_high), "ischemic_vs_secondary": (th.ischemic_low, th.ischemic_high)}
    out: dict = {"what": __doc__.splitlines()[0], "test_records": len(items), "outputs": {},
                 "environment": {"python": platform.python_version(), "model": str(manifest)}}
    for j, name in enumerate(load_manifest(manifest)["head"]["outputs"]):
        a, b = s32[:, j], s8[:, j]
        y = labels[name]
        known = ~np.isnan(y)
        low, high = bands[name]
        flips = band(a, low, high) != band(b, low, high)
        out["outputs"][name] = {
            "labelled": int(known.sum()), "positives": int(np.nansum(y)),
            "auroc_fp32": auroc(y[known], a[known]), "auroc_int8": auroc(y[known], b[known]),
            "auroc_diff_ci95": paired_auroc_diff(y[known], a[known], b[known], n_boot, seed),
            "max_abs_score_change": float(np.abs(a - b).max()), "mean_abs_score_change": float(np.abs(a - b).mean()),
            "band_decisions_changed": int(flips.sum()), "records": len(a),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder with ptbxl/ and ludb/ (e.g. ../shared/data)")
    p.add_argument("--manifest", type=Path, default=ROOT / "models" / "triage-s50" / "encoder.json")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    args = p.parse_args()
    report = run(args.data, args.manifest, args.n_boot)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"{report['test_records']} test records (PTB-XL fold 9 + LUDB test ids)")
    for name, r in report["outputs"].items():
        lo, hi = r["auroc_diff_ci95"]
        ci = f"[{lo:+.4f}, {hi:+.4f}]" if lo is not None else "n/a"
        print(f"  {name}: AUROC fp32 {r['auroc_fp32']:.4f} int8 {r['auroc_int8']:.4f} (diff 95% CI {ci}; "
              f"{r['positives']}/{r['labelled']} positive); score change max {r['max_abs_score_change']:.4f} "
              f"mean {r['mean_abs_score_change']:.5f}; abstention-band decisions changed "
              f"{r['band_decisions_changed']}/{r['records']}")


if __name__ == "__main__":
    main()
