"""One interface for every way of running ECG-R1: `Reasoner.reason(ecg, prompt, *, timeout_s) -> RawReasoning`.

Backends raise ReasonerInputError for an array they will not send, ReasonerTimeout when the deadline passes and
ReasonerUnavailable for everything else that prevents an answer; callers (orchestrate.py) turn those into an
"abandoned" result. `areason` is the asyncio form: the default runs `reason` in a worker thread, backends with
native async I/O (HTTP) override it so a faust agent never blocks its event loop.
"""
from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from engine.reasoner.errors import ReasonerInputError
from engine.reasoner.normalise import ECGR1_SAMPLES


@dataclass(frozen=True)
class RawReasoning:
    text: str  # the model's output as returned (ECG-R1: <think>...</think> narrative <answer>...</answer>)
    model: str  # as the backend names it (the HTTP server's `model` field, e.g. a stand-in says so)
    latency_ms: float
    tokens: int | None  # completion tokens when the backend reports them
    finish_reason: str | None = None  # "stop" | "length" (hit max_tokens: output is truncated) | ...


class Reasoner(ABC):
    """A backend. `model` names what it runs (a served name, a checkpoint); `model_version` (e.g. a checkpoint
    revision) goes into the report's Device when known."""

    model: str = "ECG-R1"
    model_version: str | None = None

    @abstractmethod
    def reason(self, ecg: np.ndarray, prompt: str, *, timeout_s: float) -> RawReasoning:
        """Run the model on one normalised ECG (12, 5000) float32 and one prompt containing `<ecg>` once."""

    async def areason(self, ecg: np.ndarray, prompt: str, *, timeout_s: float) -> RawReasoning:
        return await asyncio.to_thread(self.reason, ecg, prompt, timeout_s=timeout_s)


def check_ecg_array(ecg: np.ndarray) -> np.ndarray:
    """The array contract of every backend: (12, 5000) finite float32 (build it with normalise())."""
    arr = np.asarray(ecg)
    if arr.shape != (12, ECGR1_SAMPLES):
        raise ReasonerInputError(f"ECG array shape {arr.shape}, expected (12, {ECGR1_SAMPLES})", "shape")
    if arr.dtype != np.float32:
        raise ReasonerInputError(f"ECG array dtype {arr.dtype}, expected float32", "dtype")
    if not np.isfinite(arr).all():
        raise ReasonerInputError("ECG array has non-finite values", "non-finite")
    return np.ascontiguousarray(arr)


def check_timeout(timeout_s: float) -> float:
    t = float(timeout_s)
    if not t > 0:
        raise ValueError(f"timeout_s must be > 0, not {timeout_s!r}")
    return t
