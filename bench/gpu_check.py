"""GPU check of the encoder (for a lent H200: torch on CUDA, onnx, CPU onnxruntime, no TensorRT, no downloads).

    bash scripts/gpu_check.sh                      # full coca-b50 on CUDA, under ~7 min
    bash scripts/gpu_check.sh --device cpu --quick # the same code path on CPU, small model, seconds

Runs the encoder with the machine's torch in FP32, FP16 and BF16, eager and torch.compile, on real ECGs from
samples/ (read with a minimal WFDB reader, adapted to 500 Hz / 10 s / MIMIC lead order), checks parity against
ONNX Runtime CPU on the same inputs, and reports ECG/s, latency at batch 1, 8, 64 and the fraction of the ~790
TFLOP/s bf16 matmul rate (FLOPs computed from the architecture; the basis is printed). Weights are seeded random:
the public checkpoint is not reachable there (pass --checkpoint PATH if one is carried). TensorRT is built and timed
only where `tensorrt` imports; otherwise the report says plainly that it was not exercised.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

PEAK_FLOPS = 790e12  # measured bf16 dense matmul rate on the lent H200 (docs/SPEC.md §10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="encoder GPU check")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--quick", action="store_true", help="few iterations, batches 1 and 8; small model on CPU")
    ap.add_argument("--variant", default=None, help="default coca-b50 (coca-s50 with --device cpu --quick)")
    ap.add_argument("--checkpoint", default=None, help="local checkpoint in the public layout (never downloaded)")
    ap.add_argument("--compile", dest="compile", action="store_true", default=None, help="force torch.compile runs")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip remaining runs past this many seconds")
    ap.add_argument("--json", default=None, help="write the results here (default $OUT/gpu_check.json if $OUT)")
    ap.add_argument("--exporter", default="auto", help="auto | dynamo | torchscript (auto: dynamo if onnxscript)")
    a = ap.parse_args(argv)
    t0 = time.monotonic()

    import torch

    from bench.wfdb_min import sample_records
    from engine.encoder.adapter import adapt_batch
    from engine.encoder.checkpoint import load_model
    from engine.encoder.variants import get_variant
    from integrations.encoder.export import export_onnx

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA asked for but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    variant = a.variant or ("coca-s50" if device == "cpu" and a.quick else "coca-b50")
    cfg = get_variant(variant)
    batches = (1, 8) if a.quick else (1, 8, 64)
    precisions = ("fp32", "bf16") if device == "cpu" else ("fp32", "fp16", "bf16")
    do_compile = a.compile if a.compile is not None else device == "cuda"
    iters = 3 if a.quick else 20
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 means FP32 (parity); TF32 would be a fourth precision
    torch.backends.cudnn.allow_tf32 = False

    out: dict = {"device": device, "variant": variant, "quick": a.quick, "env": _env(torch, device)}
    flops = cfg.flops_per_ecg()
    out["flops_basis"] = {k: v for k, v in flops.items()}
    print(f"== {variant} on {device}: {out['env']}")
    print("FLOP basis per ECG (2 per multiply-add): conv1 {conv1:.3g}, {layers} blocks {blocks:.3g} "
          "(qkv 6TW², scores+mix 4T²W, out 2TW², MLP 4TWM with T={t}, W={w}, M={m}), proj {proj:.3g}; "
          "total {total:.4g} FLOP".format(layers=cfg.layers, t=cfg.n_tokens, w=cfg.width, m=cfg.mlp, **flops))
    print("fraction = achieved FLOP/s / 790 TFLOP/s (the measured bf16 dense matmul rate) for every precision; "
          "FP32 (TF32 off) has a far lower peak")

    records = sample_records(ROOT / "samples")
    real, _ = adapt_batch(records)
    print(f"inputs: {len(records)} real recordings from samples/ (8 PTB-XL ECGs at both 100 and 500 Hz); "
          "larger batches repeat them")
    out["inputs"] = {"recordings": len(records), "source": "samples/ (LUDB 500 Hz, PTB-XL 100/500 Hz), adapted"}

    model, report = load_model(variant, a.checkpoint, head=False)
    out["weights"] = "checkpoint " + Path(a.checkpoint).name if a.checkpoint else "seeded random (no checkpoint here)"
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    man = export_onnx(variant, tmp / "enc.onnx", model=model, keep_weights=False, exporter=a.exporter)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp / "enc.onnx"), providers=["CPUExecutionProvider"])
    parity_batch = real[np.linspace(0, len(real) - 1, 8).astype(int)]  # LUDB and PTB-XL, 100 and 500 Hz
    ref = sess.run(["embedding"], {"ecg": parity_batch})[0]
    out["onnx"] = {"exporter": man["onnx"]["exporter"], "opset": man["onnx"]["opset"],
                   "export_check": man["export_check"]}
    print(f"ONNX export: {man['onnx']['exporter']} exporter, opset {man['onnx']['opset']}; reference = ONNX Runtime "
          f"CPU {ort.__version__} on {len(parity_batch)} real ECGs")

    runs: list[dict] = []
    out["torch"] = runs
    target = a.json or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    # Eager first (seconds), then torch.compile, most useful precision first: each compile costs tens of seconds,
    # and what the budget cuts off should be the least interesting.
    plan = [(p, "eager") for p in precisions]
    if do_compile:
        plan += [(p, "compile") for p in ("bf16", "fp16", "fp32") if p in precisions]
    for precision, mode in plan:
        if time.monotonic() - t0 > a.budget_s:
            runs.append({"precision": precision, "mode": mode, "skipped": "time budget spent"})
            print(f"-- {precision} {mode}: SKIPPED (budget of {a.budget_s:.0f} s spent)")
            continue
        try:
            m = load_model(variant, a.checkpoint, head=False)[0].to(device, dtypes[precision]).eval()
            fn = torch.compile(m) if mode == "compile" else m
            runs.append(_measure(torch, fn, real, parity_batch, ref, device, dtypes[precision], precision, mode,
                                 batches, iters, flops["total"], t0 + a.budget_s))
        except Exception as exc:  # one failed configuration must not lose the others' numbers
            runs.append({"precision": precision, "mode": mode, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(f"-- {precision} {mode}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
        _write(target, out)  # partial results survive a timeout
    try:
        out["tensorrt"] = _tensorrt(tmp, real, ref, batches, iters, flops["total"], device)
    except Exception as exc:  # an untested back-end: report, do not lose the torch numbers
        out["tensorrt"] = {"exercised": True, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"TensorRT: FAILED {type(exc).__name__}: {str(exc)[:300]}")
    out["elapsed_s"] = round(time.monotonic() - t0, 1)
    out["parity_ok"] = all(r.get("parity", {}).get("ok", True) for r in runs) and not any("error" in r for r in runs)
    print(f"== done in {out['elapsed_s']} s; parity {'OK' if out['parity_ok'] else 'FAILED'}"
          + (f"; wrote {target}" if target else ""))
    _write(target, out)
    return 0 if out["parity_ok"] else 1


def _write(target: str | None, out: dict) -> None:
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(out, indent=2) + "\n")


def _measure(torch, fn, real, parity_batch, ref, device, dtype, precision, mode, batches, iters, flops_per_ecg,
             deadline: float) -> dict:
    """Parity on the real batch, then latency per batch size with inputs already on the device."""
    t_start = time.monotonic()
    with torch.inference_mode():
        got = fn(torch.from_numpy(parity_batch).to(device, dtype))[0].float().cpu().numpy()
    first_s = time.monotonic() - t_start  # includes compilation for torch.compile
    diff = float(np.abs(got - ref).max())
    rel = diff / float(np.abs(ref).max())
    cos = float(np.min(np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))))
    ok = diff <= 1e-3 if precision == "fp32" else cos >= 0.99
    r = {"precision": precision, "mode": mode, "first_call_s": round(first_s, 2),
         "parity": {"max_abs_diff": diff, "max_rel_diff": rel, "min_cosine": cos, "ok": ok,
                    "rule": "fp32: max abs diff <= 1e-3 vs ORT CPU; fp16/bf16: cosine >= 0.99"}, "batches": {}}
    print(f"-- {precision} {mode}: parity max|d|={diff:.2e} (rel {rel:.1e}) min cos={cos:.5f} "
          f"{'OK' if ok else 'FAIL'}; first call {first_s:.1f} s")
    for b in batches:
        if time.monotonic() > deadline:
            r["batches"][str(b)] = {"skipped": "time budget spent"}
            print(f"   batch {b:3d}: SKIPPED (budget spent)")
            continue
        idx = np.arange(b) % real.shape[0]
        x = torch.from_numpy(real[idx]).to(device, dtype)
        lat = _latencies(torch, fn, x, device, iters)
        med = float(np.median(lat))
        ecg_s = b / med
        frac = ecg_s * flops_per_ecg / PEAK_FLOPS
        r["batches"][str(b)] = {"latency_ms_median": med * 1e3, "latency_ms_p95": float(np.percentile(lat, 95)) * 1e3,
                                "ecg_per_s": ecg_s, "tflops": ecg_s * flops_per_ecg / 1e12,
                                "fraction_of_790_tflops": frac}
        print(f"   batch {b:3d}: {med * 1e3:8.2f} ms median, p95 {np.percentile(lat, 95) * 1e3:8.2f} ms, "
              f"{ecg_s:9.1f} ECG/s, {ecg_s * flops_per_ecg / 1e12:7.2f} TFLOP/s = {100 * frac:5.2f} % of 790")
    return r


def _latencies(torch, fn, x, device, iters: int) -> np.ndarray:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):  # warm-up (and, for torch.compile, the compile of this shape)
            fn(x)
        sync()
        lat = []
        for _ in range(iters):
            t = time.perf_counter()
            fn(x)
            sync()
            lat.append(time.perf_counter() - t)
    return np.array(lat)


def _tensorrt(tmp: Path, real, ref, batches, iters, flops_per_ecg, device) -> dict:
    if importlib.util.find_spec("tensorrt") is None or device != "cuda":
        why = "tensorrt does not import on this machine" if device == "cuda" else "CPU run"
        print(f"TensorRT: NOT EXERCISED ({why}); the TensorRT back-end is untested on hardware")
        return {"exercised": False, "why": why}
    from engine.encoder.hardware import detect_environment
    from engine.encoder.manifest import load_manifest
    from engine.encoder.runtime_choice import build_backend

    res: dict = {"exercised": True, "precisions": {}}
    env = detect_environment()
    for precision in ("fp32", "fp16"):
        t = time.monotonic()
        rt = build_backend("tensorrt", load_manifest(tmp / "enc.json"), env, precision=precision, cache_dir=tmp / "trt")
        build_s = time.monotonic() - t
        got, _ = rt.embed(real[:8])
        entry = {"build_s": round(build_s, 1), "max_abs_diff_vs_ort_cpu": float(np.abs(got - ref).max()), "batches": {}}
        for b in batches:
            x = real[np.arange(b) % real.shape[0]]
            rt.embed(x)
            lat = []
            for _ in range(iters):
                t1 = time.perf_counter()
                rt.embed(x)
                lat.append(time.perf_counter() - t1)
            med = float(np.median(lat))
            entry["batches"][str(b)] = {"latency_ms_median": med * 1e3, "ecg_per_s": b / med,
                                        "fraction_of_790_tflops": b / med * flops_per_ecg / PEAK_FLOPS,
                                        "note": "includes host<->device copies"}
        rt.close()
        res["precisions"][precision] = entry
        print(f"TensorRT {precision}: built in {build_s:.0f} s, "
              f"max|d| vs ORT CPU {entry['max_abs_diff_vs_ort_cpu']:.2e}, "
              + ", ".join(f"b{b} {v['ecg_per_s']:.0f} ECG/s" for b, v in entry["batches"].items()))
    return res


def _env(torch, device) -> dict:
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": torch.version.cuda, "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"),
           "onnxscript": _version("onnxscript"), "tensorrt": _version("tensorrt")}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return env


def _version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return __import__(name).__version__
    except Exception as exc:  # a broken install still says what it is
        return f"import failed: {exc}"


if __name__ == "__main__":
    sys.exit(main())
