"""Choosing and building an encoder back-end (the interface itself is `engine.encoder.runtime`).

    rt = select_runtime("models/encoder.json")           # best that imports and has hardware here
    emb, scores = rt.embed(batch)                         # (B, 12, 5000) float32 -> (B, E), (B, 2) or None

Automatic order (docs/SPEC.md §8, Holoscan-style: one operator, several back-ends): TensorRT engine -> ONNX Runtime
CUDA EP -> torch on CUDA -> ONNX Runtime CPU. `prefer=` (the worker's TWIWATCH_ENCODER_RUNTIME) overrides it and fails
loudly when the asked back-end cannot run, rather than silently running another. `torch-cpu` exists for benchmarks and
parity tests and is never picked automatically. Nothing GPU-related is imported until a GPU back-end is actually built.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.encoder.hardware import Environment, detect_environment
from engine.encoder.manifest import load_manifest, weights_file
from engine.encoder.runtime import EncoderRuntime, RuntimeUnavailable

AUTO_ORDER: tuple[str, ...] = ("tensorrt", "ort-cuda", "torch-cuda", "ort-cpu")
BACKENDS: tuple[str, ...] = AUTO_ORDER + ("torch-cpu",)


@dataclass(frozen=True)
class Choice:
    backend: str
    skipped: tuple[tuple[str, str], ...]  # (backend, why not) for those ahead of it in the order


def why_not(backend: str, env: Environment, manifest: dict[str, Any], *, allow_torch: bool = True) -> str | None:
    """None when `backend` can run in `env` with this manifest, else the reason."""
    if backend not in BACKENDS:
        return f"unknown runtime {backend!r} (known: {', '.join(BACKENDS)})"
    if backend in ("tensorrt", "ort-cuda", "torch-cuda") and not env.has_cuda:
        return "no CUDA GPU" + (f" ({env.notes[0]})" if env.notes else "")
    if backend == "tensorrt":
        if not env.has_tensorrt:
            return "tensorrt is not installed"
        if not env.has_cuda_python:
            return "cuda-python (device buffers) is not installed"
    if backend == "ort-cuda" and "CUDAExecutionProvider" not in env.ort_providers:
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu instead of onnxruntime)"
    if backend == "ort-cpu" and "CPUExecutionProvider" not in env.ort_providers:
        return "onnxruntime is not installed"
    if backend.startswith("torch"):
        if not allow_torch:
            return "torch not allowed in this process"
        if not env.has_torch:
            return "torch is not installed (the train extra)"
        w = weights_file(manifest)
        if w is None or not w.is_file():
            return "the export kept no torch weights beside the model"
    return None


def choose_backend(env: Environment, manifest: dict[str, Any], prefer: str | None = None, *,
                   allow_torch: bool = True) -> Choice:
    """Pure decision: the back-end to build, or RuntimeUnavailable with every reason."""
    if prefer:
        reason = why_not(prefer, env, manifest, allow_torch=allow_torch)
        if reason:
            raise RuntimeUnavailable(f"runtime {prefer!r} asked for but unavailable: {reason}")
        return Choice(prefer, ())
    skipped = []
    for backend in AUTO_ORDER:
        reason = why_not(backend, env, manifest, allow_torch=allow_torch)
        if reason is None:
            return Choice(backend, tuple(skipped))
        skipped.append((backend, reason))
    raise RuntimeUnavailable("no encoder runtime can run here: " + "; ".join(f"{b}: {r}" for b, r in skipped))


def select_runtime(manifest_path: str | Path, prefer: str | None = None, *, env: Environment | None = None,
                   allow_torch: bool = True, **options: Any) -> EncoderRuntime:
    """Build the best available runtime for the exported model at `manifest_path` (.json or the .onnx beside it).

    prefer: one of BACKENDS, else automatic. options go to the back-end:
    threads (ORT CPU / torch CPU), precision ("fp32" default; "fp16" TensorRT/torch-cuda, "bf16" torch-cuda, "int8"
    ORT CPU, opt-in), compile (torch), cache_dir (TensorRT engines, INT8 models), device_id, spin (ORT thread spinning),
    fused (ORT CPU: run the export's fused graph when it wrote one; default True).
    """
    manifest = load_manifest(manifest_path)
    env = env or detect_environment()
    choice = choose_backend(env, manifest, prefer, allow_torch=allow_torch)
    runtime = build_backend(choice.backend, manifest, env, **options)
    runtime.skipped = choice.skipped  # type: ignore[attr-defined]  # for the worker's start-up log
    return runtime


PRECISIONS = {"tensorrt": ("fp16", "fp32"), "ort-cuda": ("fp32",), "ort-cpu": ("fp32", "int8"),
              "torch-cuda": ("fp32", "fp16", "bf16"), "torch-cpu": ("fp32",)}


def build_backend(backend: str, manifest: dict[str, Any], env: Environment, **options: Any) -> EncoderRuntime:
    """Construct `backend`. A precision it does not run (e.g. fp16 asked for, ORT CPU chosen) falls back to its
    default rather than failing: automatic selection cannot know in advance which back-end wins."""
    precision = options.get("precision")
    if precision is not None and precision not in PRECISIONS.get(backend, ()):
        options = {**options, "precision": PRECISIONS[backend][0] if backend in PRECISIONS else precision}
    if backend in ("ort-cpu", "ort-cuda"):
        from engine.encoder.runtime_ort import OrtRuntime

        return OrtRuntime(manifest, cuda=backend == "ort-cuda",
                          **_pick(options, "threads", "device_id", "spin", "precision", "cache_dir", "fused"))
    if backend in ("torch-cpu", "torch-cuda"):
        from engine.encoder.runtime_torch import TorchRuntime

        return TorchRuntime(manifest, device="cuda" if backend == "torch-cuda" else "cpu",
                            **_pick(options, "precision", "compile", "threads", "device_id"))
    if backend == "tensorrt":
        from engine.encoder.runtime_tensorrt import TensorRTRuntime

        gpu = env.cuda_devices[options.get("device_id", 0)] if env.cuda_devices else "unknown-gpu"
        return TensorRTRuntime(manifest, gpu_name=gpu, **_pick(options, "precision", "cache_dir", "device_id"))
    raise RuntimeUnavailable(f"unknown runtime {backend!r}")


def _pick(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in names}
