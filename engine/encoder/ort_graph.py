"""The ONNX Runtime CPU graph: the exported (portable) graph with ONNX Runtime's transformer fusions applied.

Why a second file: the portable graph (standard ONNX ops) is what TensorRT and the CUDA EP take. On CPU, ONNX
Runtime's own optimiser does not fuse attention in it, so each block runs ~15 small ops (reshapes, transposes, two
MatMuls, a softmax) whose threading overhead dominates on 2 cores. onnxscript's `optimize_for_ort` rewrites it into
the contrib ops ONNX Runtime's CPU provider implements (Attention with the packed QKV weight, SkipLayerNormalization,
BiasGelu). The fused graph is made at export time (onnxscript ships with the train extra), checked against torch
like the portable one, and listed in the manifest; workers only load it, so they need nothing beyond onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

SUFFIX = ".ort-cpu.onnx"
MIN_FUSIONS = ("attention",)  # without these the file would not be worth shipping beside the portable one


def ort_cpu_path(onnx_path: str | Path) -> Path:
    """encoder.onnx -> encoder.ort-cpu.onnx (beside it)."""
    path = Path(onnx_path)
    return path.with_name(path.stem + SUFFIX)


def write_fused_graph(onnx_path: str | Path) -> tuple[Path | None, dict[str, Any]]:
    """Write the fused graph beside `onnx_path`; returns (its path or None, what was fused or why not)."""
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort
    except ImportError as exc:
        return None, {"why_not": f"onnxscript's ort_fusions are not importable ({exc})"}
    model = ir.load(str(onnx_path))
    model, counts = optimize_for_ort(model)
    fusions = {name: n for name, n in counts.items() if n}
    missing = [name for name in MIN_FUSIONS if not fusions.get(name)]
    if missing:
        return None, {"why_not": f"no {', '.join(missing)} fusion matched", "fusions": fusions}
    out = ort_cpu_path(onnx_path)
    ir.save(model, str(out))
    return out, {"fusions": fusions}
