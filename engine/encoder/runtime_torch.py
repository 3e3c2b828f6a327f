"""torch back-end: CUDA (fp32 / fp16 / bf16, optional torch.compile) for GPU boxes without TensorRT, CPU for parity.

Needs the torch weights the export keeps beside the model. Reduced precision casts the whole model (weights and
activations), so attention runs the fused flash/efficient kernels; fp32 keeps TF32 off for exact parity.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.encoder.checkpoint import load_model
from engine.encoder.manifest import weights_file
from engine.encoder.runtime import EncoderRuntime

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRuntime(EncoderRuntime):
    def __init__(self, manifest: dict[str, Any], *, device: str = "cpu", precision: str = "fp32",
                 compile: bool = False, threads: int | None = None, device_id: int = 0) -> None:
        super().__init__(manifest)
        if precision not in DTYPES:
            raise ValueError(f"precision {precision!r}: use one of {', '.join(DTYPES)}")
        if device == "cpu" and precision != "fp32":
            raise ValueError("torch-cpu runs fp32 only")
        self.name = f"torch-{device}"
        self.device = torch.device(f"cuda:{device_id}" if device == "cuda" else "cpu")
        self.dtype = DTYPES[precision]
        self.precision = precision
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        if device == "cuda" and precision == "fp32":
            # cuDNN convolutions default to TF32 on Ampere+; FP32 here means FP32 (parity with the ONNX reference).
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        model, _ = load_model(manifest["variant"], weights_file(manifest), head=self.has_head)
        self.model = model.to(self.device, self.dtype).eval()
        self.forward = torch.compile(self.model) if compile else self.model
        self.compiled = compile

    @torch.inference_mode()
    def run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Device tensors in, device tensors out (benchmarks time this without host copies)."""
        emb, _tokens, logits = self.forward(x.to(self.dtype))
        return emb, (torch.sigmoid(logits) if logits is not None else None)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(batch).to(self.device, non_blocking=False)
        emb, scores = self.run_tensor(x)
        return (emb.float().cpu().numpy(), scores.float().cpu().numpy() if scores is not None else None)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "precision": self.precision,
                "compiled": self.compiled, "torch": torch.__version__}

    def close(self) -> None:
        self.model = self.forward = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
