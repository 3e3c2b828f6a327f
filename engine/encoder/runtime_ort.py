"""ONNX Runtime back-ends: CPU everywhere, CUDA EP where onnxruntime-gpu is installed (never both packages)."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from engine.encoder.manifest import model_file, ort_cpu_file
from engine.encoder.runtime import EncoderRuntime


class OrtRuntime(EncoderRuntime):
    def __init__(self, manifest: dict[str, Any], *, cuda: bool = False, threads: int | None = None,
                 device_id: int = 0, spin: bool | None = None, precision: str = "fp32",
                 cache_dir: str | None = None, fused: bool = True) -> None:
        super().__init__(manifest)
        self.name = "ort-cuda" if cuda else "ort-cpu"
        if precision not in ("fp32", "int8") or (cuda and precision != "fp32"):
            raise ValueError(f"precision {precision!r}: ONNX Runtime CPU runs fp32 or int8, CUDA fp32")
        self.precision = precision
        path, self.graph = model_file(manifest), "portable"
        fused_path = ort_cpu_file(manifest) if fused and not cuda else None  # CPU only: never run on the CUDA EP
        if precision == "int8":
            from engine.encoder.quantize import int8_model

            path, self.graph = int8_model(manifest, cache_dir), "int8 (from portable)"
        elif fused_path is not None:
            path, self.graph = fused_path, "ort-cpu fused"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # LayerNorm/GELU/MatMul fusions
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one chain of ops: parallelism is inside each op
        if spin is not None:
            # Spinning threads win a few % in a benchmark and steal a core from the rest of a busy worker.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if cuda:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        if cuda and "CUDAExecutionProvider" not in self.session.get_providers():
            raise RuntimeError("ONNX Runtime did not enable the CUDA execution provider (CUDA/cuDNN libraries?)")
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._want = [n for n in ("embedding", "scores") if n in self.outputs]  # tokens are left uncomputed

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        got = dict(zip(self._want, self.session.run(self._want, {self.input_name: batch}), strict=True))
        return got["embedding"], got.get("scores")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.session.get_providers(), "precision": self.precision,
                "graph": self.graph,
                "onnxruntime": ort.__version__}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
