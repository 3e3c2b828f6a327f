"""Encoder throughput: torch eager vs ONNX Runtime CPU (and TensorRT where it runs), same inputs, same run.

    .venv/bin/python bench/encoder.py --json docs/results/bench_encoder.json
        [--variant coca-s50] [--threads 2] [--quick]

Inputs are the real ECGs in samples/ (integrations.datasets.recordings.find_recordings), adapted to (12, 5000). One
seeded model is exported once; torch runs it through the same EncoderRuntime interface as ONNX Runtime (numpy in, numpy
out), both with the same thread count. Rounds alternate the runtimes so that load from other processes hits both alike;
each figure is the median over rounds, and `*_ratio` = ONNX Runtime (FP32) ECG/s / torch eager ECG/s (median of
per-round ratios). ONNX Runtime runs the graph a worker runs (the export's ORT-fused graph when it has one); the
portable graph (`ort_cpu_portable_*`) and the opt-in INT8 model (`ort_cpu_int8_*`) are measured beside it, never folded
into `*_ratio`. `*_gflops` = ECG/s x the encoder's FLOPs per ECG, read against `gemm_ceiling_gflops`: a plain FP32
GEMM's rate here at the model's own MLP shape, which no FP32 runtime of this model can beat.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

GOAL_RATIO = 1.5


def _ecg_per_s(rt, x: np.ndarray, seconds: float, min_iters: int) -> float:
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        rt.embed(x)
        n += 1
    return n * x.shape[0] / (time.perf_counter() - t0)


def _gemm_ceiling(cfg, threads: int, seconds: float = 1.0) -> dict[str, float]:
    """GFLOP/s of one plain FP32 GEMM here (torch, same threads): at the encoder's own MLP shape for batch 16, and
    large and square. The model cannot run faster than its GEMMs do, so this bounds what any FP32 runtime can reach
    on this machine; the runtimes' `*_gflops` are read against it."""
    import torch

    shapes = {"mlp_b16": (16 * cfg.n_tokens, cfg.width, cfg.mlp), "square_1024": (1024, 1024, 1024)}
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        iters, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            iters += 1
        out[name] = round(2.0 * m * k * n * iters / (time.perf_counter() - t0) / 1e9, 1)
    out["threads"] = threads
    return out


def run(variant: str, threads: int, rounds: int, seconds: float, batches: tuple[int, ...],
        exporter: str = "auto") -> dict:
    import onnxruntime
    import torch

    from engine.encoder.adapter import adapt_batch
    from engine.encoder.hardware import detect_environment
    from engine.encoder.manifest import load_manifest
    from engine.encoder.runtime_choice import build_backend, why_not
    from engine.encoder.torch_model import build_model
    from engine.encoder.variants import get_variant
    from integrations.datasets.recordings import find_recordings
    from integrations.encoder.export import export_onnx

    records = [r.load() for r in find_recordings(ROOT / "samples")]
    x_all, _ = adapt_batch(records)
    tmp = Path(tempfile.mkdtemp(prefix="bench_encoder_"))
    export_onnx(variant, tmp / "enc.onnx", model=build_model(variant, head=True, seed=0), exporter=exporter)
    manifest = load_manifest(tmp / "enc.json")
    env = detect_environment()
    torch.set_num_threads(threads)
    runtimes = {"torch_eager": build_backend("torch-cpu", manifest, env, threads=threads),
                "ort_cpu": build_backend("ort-cpu", manifest, env, threads=threads),  # as a worker runs it
                # the export's portable graph on the same runtime: what the fused graph adds
                "ort_cpu_portable": build_backend("ort-cpu", manifest, env, threads=threads, fused=False),
                # opt-in INT8 (a different numerical model): reported beside, never in the *_ratio keys
                "ort_cpu_int8": build_backend("ort-cpu", manifest, env, threads=threads, precision="int8",
                                              cache_dir=tmp / "ort")}
    trt_why = why_not("tensorrt", env, manifest)
    if trt_why is None:
        runtimes["tensorrt"] = build_backend("tensorrt", manifest, env, precision="fp16")

    ref = runtimes["torch_eager"].embed(x_all[:16])[0]
    parity = {name: float(np.abs(rt.embed(x_all[:16])[0] - ref).max()) for name, rt in runtimes.items()
              if name != "ort_cpu_int8"}
    gflop = get_variant(variant).flops_per_ecg()["total"] / 1e9
    e8 = runtimes["ort_cpu_int8"].embed(x_all[:16])[0]
    int8_cos = float(np.min(np.sum(e8 * ref, 1) / (np.linalg.norm(e8, axis=1) * np.linalg.norm(ref, axis=1))))
    out: dict = {
        "variant": variant, "exporter": manifest["onnx"]["exporter"], "threads": threads, "rounds": rounds,
        "seconds_per_measure": seconds,
        "inputs": f"{len(records)} real ECGs from samples/ (batch b = the first b)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "load_avg_at_start": os.getloadavg()[0]},
        "parity_max_abs_diff_vs_torch": parity,
        "int8_min_cosine_vs_torch": int8_cos,
        "tensorrt": "measured" if trt_why is None else f"not measured: {trt_why}",
        "ort_cpu_graph": runtimes["ort_cpu"].describe()["graph"],
        "gflop_per_ecg": round(gflop, 4),
        "gemm_ceiling_gflops": _gemm_ceiling(get_variant(variant), threads),
    }
    for b in batches:
        x = x_all[np.arange(b) % len(x_all)]
        for rt in runtimes.values():
            _ecg_per_s(rt, x, 0.3, 2)  # warm-up
        per_round: dict[str, list[float]] = {name: [] for name in runtimes}
        for _ in range(rounds):
            for name, rt in runtimes.items():
                per_round[name].append(_ecg_per_s(rt, x, seconds, 2))
        torch_eager = np.array(per_round["torch_eager"])
        for name, values in per_round.items():
            out[f"{name}_b{b}_ecg_per_s"] = round(float(np.median(values)), 1)
            out[f"{name}_b{b}_gflops"] = round(float(np.median(values)) * gflop, 1)
            if name != "torch_eager":  # median of per-round ratios: load from other jobs falls on both sides
                ratio = round(float(np.median(np.array(values) / torch_eager)), 2)
                out[f"ort_cpu_b{b}_ratio" if name == "ort_cpu" else f"{name}_b{b}_vs_torch_eager"] = ratio
    out["machine"]["load_avg_at_end"] = os.getloadavg()[0]
    out["goal"] = f"ort_cpu_b*_ratio >= {GOAL_RATIO}"
    out["goal_met"] = all(out[f"ort_cpu_b{b}_ratio"] >= GOAL_RATIO for b in batches)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--variant", default="coca-s50")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per runtime, batch size and round")
    ap.add_argument("--quick", action="store_true", help="1 round of 0.2 s (a smoke test, not a measurement)")
    ap.add_argument("--exporter", default="auto", help="auto | dynamo | torchscript")
    a = ap.parse_args(argv)
    rounds, seconds = (1, 0.2) if a.quick else (a.rounds, a.seconds)
    res = run(a.variant, a.threads, rounds, seconds, (1, 16), a.exporter)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"{res['variant']}, {res['threads']} threads, {rounds} rounds x {seconds} s, inputs: {res['inputs']}")
    print(f"parity vs torch eager (max abs diff): {res['parity_max_abs_diff_vs_torch']}; TensorRT: {res['tensorrt']}")
    print(f"{'batch':>5} {'torch eager ECG/s':>18} {'ORT CPU ECG/s':>14} {'ratio':>6} {'ORT INT8 ECG/s':>15} "
          f"{'vs torch':>8}")
    for b in (1, 16):
        print(f"{b:>5} {res[f'torch_eager_b{b}_ecg_per_s']:>18} {res[f'ort_cpu_b{b}_ecg_per_s']:>14} "
              f"{res[f'ort_cpu_b{b}_ratio']:>6} {res[f'ort_cpu_int8_b{b}_ecg_per_s']:>15} "
              f"{res[f'ort_cpu_int8_b{b}_vs_torch_eager']:>8}")
    print(f"ORT CPU runs the {res['ort_cpu_graph']} graph; the portable graph on ORT CPU vs torch eager: "
          f"b1 {res['ort_cpu_portable_b1_vs_torch_eager']}, b16 {res['ort_cpu_portable_b16_vs_torch_eager']}")
    print(f"INT8 (opt-in, not the parity model): min cosine vs torch {res['int8_min_cosine_vs_torch']:.5f}")
    ceiling = res["gemm_ceiling_gflops"]
    need = GOAL_RATIO * res["torch_eager_b16_gflops"]
    print(f"FP32 GEMM here: {ceiling['mlp_b16']} GFLOP/s at the model's MLP shape, {ceiling['square_1024']} at "
          f"1024^3; at batch 16 torch eager runs {res['torch_eager_b16_gflops']} and ORT CPU "
          f"{res['ort_cpu_b16_gflops']} GFLOP/s ({res['gflop_per_ecg']} GFLOP per ECG); {GOAL_RATIO}x torch would "
          f"be {need:.1f} GFLOP/s = {need / ceiling['mlp_b16']:.0%} of the MLP-shape GEMM rate")
    print(f"goal {res['goal']}: {'met' if res['goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
