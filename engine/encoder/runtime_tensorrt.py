"""TensorRT back-end, written against the TensorRT 10 Python API (name-based tensors, execute_async_v3).

NOT EXERCISED in this project so far: no machine it has run on had TensorRT and a GPU together (the lent H200 has no
TensorRT and cannot download it). It is import-guarded: `tensorrt` and `cuda-python` are imported only here, and only
when this back-end is chosen.

- Engine: built from the exported ONNX with one optimisation profile, batch 1..64 (opt 16), FP32 or FP16.
  FP16 uses the weak-typing flag of TensorRT 10 (deprecated from 10.12, gone in 11): on a TensorRT without it the
  build says so instead of silently running FP32.
- Cache: the serialised engine is kept under cache_dir, keyed by model sha256 + GPU name + TensorRT version +
  precision + profile (engines are valid only for that GPU and TensorRT build); written atomically.
- Buffers: device memory through cuda-python (no torch in workers), sized for the profile's largest batch.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.encoder.manifest import model_file
from engine.encoder.runtime import EncoderRuntime, RuntimeUnavailable

PROFILE = (1, 16, 64)  # min, opt, max batch
WORKSPACE_BYTES = 4 << 30


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def engine_cache_key(model_sha256: str, gpu_name: str, trt_version: str, precision: str,
                     profile: tuple[int, int, int] = PROFILE) -> str:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return f"{model_sha256[:16]}-{gpu}-trt{trt_version}-{precision}-b{profile[0]}-{profile[1]}-{profile[2]}"


def default_cache_dir() -> Path:
    """Used when the caller passes no cache_dir (the worker passes TWIWATCH_ENCODER_CACHE_DIR from its settings)."""
    return Path.home() / ".cache" / "twiwatch" / "tensorrt"


class TensorRTRuntime(EncoderRuntime):
    max_batch = PROFILE[2]

    def __init__(self, manifest: dict[str, Any], *, gpu_name: str, precision: str = "fp16",
                 cache_dir: str | Path | None = None, device_id: int = 0) -> None:
        super().__init__(manifest)
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise RuntimeUnavailable(f"tensorrt does not import: {exc}") from None
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision {precision!r}: TensorRT back-end builds fp32 or fp16")
        self.trt = trt
        self.cudart = _cudart()
        self.name = "tensorrt"
        self.precision = precision
        self._check_cuda(self.cudart.cudaSetDevice(device_id))
        self.logger = trt.Logger(trt.Logger.WARNING)
        key = engine_cache_key(manifest["onnx"]["sha256"], gpu_name, trt.__version__, precision)
        self.engine_path = Path(cache_dir or default_cache_dir()) / f"{key}.engine"
        self.engine = self._load_or_build()
        self.context = self.engine.create_execution_context()  # one profile: profile 0 is active
        err, self.stream = self.cudart.cudaStreamCreate()
        self._check_cuda((err,))
        self._allocate()

    # -- engine -----------------------------------------------------------------------------------------------------
    def _load_or_build(self):
        trt = self.trt
        runtime = trt.Runtime(self.logger)
        if self.engine_path.is_file():
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                return engine  # a stale or corrupt file falls through to a rebuild
        data = self._build()
        self.engine_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.engine_path.parent, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, self.engine_path)  # concurrent workers never read half an engine
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialise the engine it just built")
        return engine

    def _build(self) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        if self.precision == "fp32" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # the fp32 graph's own types
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(model_file(self.manifest))):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            if not hasattr(trt.BuilderFlag, "FP16"):
                raise RuntimeUnavailable(f"TensorRT {trt.__version__} has no FP16 builder flag (strong typing only): "
                                         "use precision='fp32' or an fp16 ONNX export")
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        leads, samples = self.input_shape
        profile.set_shape(self.input_name, *[(b, leads, samples) for b in PROFILE])
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
        return bytes(serialized)

    # -- buffers and execution --------------------------------------------------------------------------------------
    def _allocate(self) -> None:
        trt, engine = self.trt, self.engine
        leads, samples = self.input_shape
        self.context.set_input_shape(self.input_name, (self.max_batch, leads, samples))
        self.buffers: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
        self.output_names: list[str] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(self.context.get_tensor_shape(name))  # at the largest batch
            err, ptr = self.cudart.cudaMalloc(int(np.prod(shape)) * dtype.itemsize)
            self._check_cuda((err,))
            self.buffers[name] = (ptr, dtype, shape)
            self.context.set_tensor_address(name, ptr)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.output_names.append(name)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        b = batch.shape[0]
        self.context.set_input_shape(self.input_name, batch.shape)
        self._check_cuda(cudart.cudaMemcpyAsync(self.buffers[self.input_name][0], batch.ctypes.data, batch.nbytes,
                                                h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execution failed")
        results: dict[str, np.ndarray] = {}
        for name in self.output_names:
            if name == "tokens":
                continue  # computed by the engine, not copied back: the worker does not use them
            ptr, dtype, shape = self.buffers[name]
            host = np.empty((b,) + tuple(shape[1:]), dtype=dtype)
            self._check_cuda(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream))
            results[name] = host
        self._check_cuda(cudart.cudaStreamSynchronize(self.stream))
        scores = results.get("scores")
        return results["embedding"].astype(np.float32), scores.astype(np.float32) if scores is not None else None

    def _check_cuda(self, result) -> None:
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime error {err}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": self.precision, "engine": str(self.engine_path),
                "tensorrt": self.trt.__version__, "profile_batch": list(PROFILE)}

    def close(self) -> None:
        for ptr, _, _ in getattr(self, "buffers", {}).values():
            self.cudart.cudaFree(ptr)
        self.buffers = {}
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
