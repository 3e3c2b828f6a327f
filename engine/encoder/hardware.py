"""What this process could run on, found without importing torch: the CUDA driver (ctypes) and which packages exist.

`Environment` is plain data so runtime selection is a pure function of it and tests can hand in any machine.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Environment:
    cuda_devices: tuple[str, ...] = ()  # GPU names from the CUDA driver; empty without a GPU or driver
    has_tensorrt: bool = False
    has_cuda_python: bool = False  # cuda-python (device buffers for TensorRT without torch)
    ort_providers: tuple[str, ...] = ()  # onnxruntime's available execution providers; empty if not installed
    has_torch: bool = False  # importable (not imported here)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_cuda(self) -> bool:
        return bool(self.cuda_devices)


@lru_cache(maxsize=1)
def detect_environment() -> Environment:
    devices, why = cuda_devices()
    notes = (why,) if why else ()
    if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        # Both wheels provide the same `onnxruntime` module; whichever was installed last wins, silently.
        notes += ("both onnxruntime and onnxruntime-gpu are installed: keep one (extras `cpu` or `gpu`)",)
    providers: tuple[str, ...] = ()
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    return Environment(
        cuda_devices=devices,
        has_tensorrt=importlib.util.find_spec("tensorrt") is not None,
        has_cuda_python=_has_cuda_python(),
        ort_providers=providers,
        has_torch=importlib.util.find_spec("torch") is not None,
        notes=notes,
    )


def cuda_devices() -> tuple[tuple[str, ...], str | None]:
    """(GPU names, why none) from the CUDA driver API; no CUDA toolkit or torch needed."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return (), "no CUDA driver (libcuda.so.1)"
    if lib.cuInit(0) != 0:
        return (), "CUDA driver present but cuInit failed (no usable GPU)"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return (), "CUDA driver reports no devices"
    names = []
    for i in range(count.value):
        dev = ctypes.c_int(0)
        buf = ctypes.create_string_buffer(256)
        if lib.cuDeviceGet(ctypes.byref(dev), i) == 0 and lib.cuDeviceGetName(buf, 256, dev) == 0:
            names.append(buf.value.decode(errors="replace"))
        else:
            names.append(f"cuda:{i}")
    return tuple(names), None


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _has_cuda_python() -> bool:
    try:
        return any(importlib.util.find_spec(name) is not None for name in ("cuda.bindings", "cuda.cudart"))
    except (ImportError, ValueError):  # `cuda` namespace package absent
        return False
