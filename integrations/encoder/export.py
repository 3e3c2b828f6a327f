"""Export the encoder (and head) to ONNX with a dynamic batch, and write the manifest beside it.

`export_onnx("coca-s50", "models/encoder.onnx", checkpoint=None)` -> manifest dict. The torch.export-based exporter
is used when onnxscript is installed; otherwise (e.g. a GPU box with only torch and onnx) the TorchScript exporter,
which still ships with torch. Both give opset 18 with LayerNormalization; the manifest says which one ran. Beside the
portable graph (TensorRT, CUDA) goes the same model with ONNX Runtime's CPU fusions (engine.encoder.ort_graph), when
onnxscript can make it and it agrees with torch.
"""
from __future__ import annotations

import importlib.util
import logging
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.encoder.checkpoint import load_model, save_weights
from engine.encoder.manifest import MANIFEST_FORMAT, manifest_path_for, sha256_file, write_manifest
from engine.encoder.ort_graph import ort_cpu_path, write_fused_graph
from engine.encoder.torch_model import HEAD_OUTPUTS, ExportWrapper, TriageModel
from engine.encoder.variants import MODEL_FS_HZ, MODEL_LEADS, MODEL_SECONDS

OPSET = 18
INPUT_NAME = "ecg"
FUSED_TOLERANCE = 1e-4  # the FP32 parity bar the tests hold every runtime to
MAX_BATCH = 1024  # the dynamic dimension's declared upper bound (TensorRT profiles use 1..64)


def export_onnx(model_name: str, out_path: str | Path, checkpoint: str | Path | None = None, *,
                model: TriageModel | None = None, tokens: bool = False, keep_weights: bool = True,
                exporter: str = "auto", opset: int = OPSET, extra: dict[str, Any] | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Write `out_path` (.onnx) and its manifest (.json beside it); returns the manifest.

    model_name: a variant (`coca-b50`, `coca-s50`). checkpoint: a local file in the public layout (never downloaded);
    without one the weights are seeded random (fine for tests and speed, meaningless for findings: the manifest says
    so). model: an in-memory model instead (training passes its own). tokens: also output the token sequence (B, 101,
    width) for ECG-R1. keep_weights: save the torch weights beside the model (the torch runtime needs them).
    exporter: "auto" | "dynamo" | "torchscript".
    """
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"{out_path}: the model file must end in .onnx")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report = None
    if model is None:
        model, report = load_model(model_name, checkpoint, seed=seed)
    if model.cfg.name != model_name:
        raise ValueError(f"model is {model.cfg.name!r}, asked to export {model_name!r}")
    model = model.eval().float()
    wrapper = ExportWrapper(model, tokens=tokens).eval()
    out_names = ["embedding"] + (["scores"] if model.head is not None else []) + (["tokens"] if tokens else [])
    cfg = model.cfg
    sample = torch.from_numpy(_sample_input(cfg.n_leads, cfg.n_samples))
    with _quiet_loggers():
        used = _run_exporter(wrapper, sample, out_path, out_names, exporter, opset)
        check = _check_with_onnxruntime(wrapper, sample, out_path, out_names)
        digest = sha256_file(out_path)
        ort_cpu = _fused_graph_for_ort_cpu(wrapper, sample, out_path, out_names)

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "variant": cfg.name,
        "config": cfg.to_dict(),
        "embed_dim": cfg.embed_dim,
        "model_sha256": digest,  # the same as onnx.sha256, at the top for logs and caches
        "onnx": {
            "file": out_path.name, "sha256": digest, "bytes": out_path.stat().st_size,
            "opset": opset, "exporter": used, "dynamic_batch": True,
            "inputs": [{"name": INPUT_NAME, "shape": ["batch", cfg.n_leads, cfg.n_samples], "dtype": "float32"}],
            "outputs": [_output_spec(n, cfg) for n in out_names],
            "ort_cpu": ort_cpu,  # the same model with ONNX Runtime's CPU fusions (engine.encoder.ort_graph)
        },
        "input": {
            "lead_order": list(MODEL_LEADS), "sampling_rate_hz": MODEL_FS_HZ, "samples": cfg.n_samples,
            "seconds": MODEL_SECONDS, "units": "mV", "dtype": "float32",
            "preprocessing": "none: raw millivolts, no filtering, no normalisation (as the reference ECG-CoCa code)",
            "adapter": "engine.encoder.adapter.adapt",
            "missing_leads": "zero-filled; the adapter returns a lead mask (the model has no mask input)",
        },
        "head": ({"outputs": list(HEAD_OUTPUTS), "activation": "sigmoid", "output": "scores"}
                 if model.head is not None else None),
        "weights": None,
        "source": _source(checkpoint, report),
        "export_check": check,
        "versions": _versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if keep_weights:
        weights = save_weights(model, out_path.with_suffix(".pt"))
        manifest["weights"] = {"file": weights.name, "sha256": sha256_file(weights), "layout": "ecg.* (+ head.*)"}
    if extra:
        manifest.update(extra)
    write_manifest(manifest, manifest_path_for(out_path))
    return manifest


def _sample_input(n_leads: int, n_samples: int, batch: int = 2) -> np.ndarray:
    # Batch 2, not 1: torch.export specialises a dimension it sees as 1, and the batch must stay dynamic.
    rng = np.random.default_rng(0)
    return (0.3 * rng.standard_normal((batch, n_leads, n_samples))).astype(np.float32)


def _run_exporter(wrapper: torch.nn.Module, sample: torch.Tensor, out_path: Path, out_names: list[str],
                  exporter: str, opset: int) -> str:
    if exporter == "auto":
        exporter = "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"
    return _export(wrapper, sample, out_path, out_names, exporter, opset)


@contextmanager
def _quiet_loggers(names: tuple[str, ...] = ("torch.onnx", "onnx_ir", "onnxscript")) -> Iterator[None]:
    """The exporter and the fusion passes log every pass at INFO, "torchvision is not installed" and a warning per
    block that a weight Split stays unfolded (ONNX Runtime folds it at load); failures still raise."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _export(wrapper: torch.nn.Module, sample: torch.Tensor, out_path: Path, out_names: list[str], exporter: str,
            opset: int) -> str:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter deprecation chatter; failures still raise
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            program = torch.onnx.export(wrapper, (sample,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=out_names, dynamic_shapes={"ecg": {0: batch}},
                                        opset_version=opset, external_data=False, verbose=False)
            program.save(str(out_path))
        elif exporter == "torchscript":
            axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in out_names}}
            torch.onnx.export(wrapper, (sample,), str(out_path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=out_names, dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True)
        else:
            raise ValueError(f"exporter {exporter!r}: use auto, dynamo or torchscript")
    return exporter


def _check_with_onnxruntime(wrapper: torch.nn.Module, sample: torch.Tensor, out_path: Path,
                            out_names: list[str]) -> dict[str, Any]:
    """Run the file once on ONNX Runtime CPU against torch: an export that computes something else fails here."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"checked": False, "why": "onnxruntime not installed"}
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: sample.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in wrapper(sample)]
    diffs = {n: float(np.abs(g - w).max()) for n, g, w in zip(out_names, got, want, strict=True)}
    return {"checked": True, "batch": int(sample.shape[0]), "max_abs_diff": diffs}


def _fused_graph_for_ort_cpu(wrapper: torch.nn.Module, sample: torch.Tensor, out_path: Path,
                             out_names: list[str]) -> dict[str, Any]:
    """Write the fused ORT CPU graph beside the model and check it against torch; drop it if it is not faithful."""
    stale = ort_cpu_path(out_path)
    stale.unlink(missing_ok=True)  # a re-export must never leave the previous model's fused graph listed
    path, info = write_fused_graph(out_path)
    if path is None:
        return {"file": None, **info}
    check = _check_with_onnxruntime(wrapper, sample, path, out_names)
    worst = max(check.get("max_abs_diff", {}).values(), default=float("inf"))
    if not check.get("checked") or worst > FUSED_TOLERANCE:
        path.unlink()
        return {"file": None, "why_not": f"fused graph not within {FUSED_TOLERANCE} of torch: {check}", **info}
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, **info,
            "export_check": check}


def _output_spec(name: str, cfg) -> dict[str, Any]:
    shapes = {"embedding": ["batch", cfg.embed_dim], "scores": ["batch", len(HEAD_OUTPUTS)],
              "tokens": ["batch", cfg.n_tokens, cfg.width]}
    return {"name": name, "shape": shapes[name], "dtype": "float32"}


def _source(checkpoint: str | Path | None, report) -> dict[str, Any]:
    if checkpoint is None:
        return {"checkpoint": None, "note": "no checkpoint given: seeded random or in-memory weights"}
    path = Path(checkpoint)
    return {"checkpoint": path.name, "sha256": sha256_file(path),
            "wrapped_state_dict": bool(report and report.wrapped),
            "module_prefix": bool(report and report.stripped_module_prefix),
            "ignored_keys_outside_tower": report.ignored_outside_tower if report else 0}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out
