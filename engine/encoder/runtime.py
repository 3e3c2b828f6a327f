"""The one interface every encoder back-end implements (ONNX Runtime, TensorRT, torch); `runtime_choice` picks one.

Back-ends import only this module, and the choice imports the back-ends lazily: no import cycle.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The asked back-end cannot run here; the message says why."""


class EncoderRuntime(ABC):
    """Runs the exported encoder on batches of adapted ECGs (engine.encoder.adapter)."""

    name: str = "abstract"
    max_batch: int = 1024  # larger batches are split (TensorRT's profile stops at 64)

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        spec = manifest["onnx"]["inputs"][0]
        self.input_name: str = spec["name"]
        self.input_shape: tuple[int, int] = (int(spec["shape"][1]), int(spec["shape"][2]))
        self.embed_dim: int = int(manifest["embed_dim"])
        self.has_head: bool = manifest.get("head") is not None

    def embed(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 12, 5000) float32 -> (embeddings (B, E) float32, head scores (B, 2) float32 or None)."""
        batch = self._check(batch)
        if batch.shape[0] <= self.max_batch:
            return self._run(batch)
        parts = [self._run(batch[i:i + self.max_batch]) for i in range(0, batch.shape[0], self.max_batch)]
        emb = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts]) if parts[0][1] is not None else None
        return emb, scores

    @abstractmethod
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        ...

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "variant": self.manifest["variant"],
                "model_sha256": self.manifest["onnx"]["sha256"]}

    def close(self) -> None:
        """Release sessions and device memory (idempotent). The default has nothing to release; back-ends override
        it."""
        return None

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 3 or batch.shape[1:] != self.input_shape or batch.shape[0] < 1:
            leads, samples = self.input_shape
            raise ValueError(f"batch of shape {batch.shape}: expected (B, {leads}, {samples}) "
                             "— use engine.encoder.adapter.adapt_batch")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return np.ascontiguousarray(batch)
