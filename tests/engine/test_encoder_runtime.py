"""Runtime selection (with/without CUDA, TensorRT, onnxruntime-gpu, torch), overrides, and the no-torch worker path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.encoder.hardware import Environment
from engine.encoder.runtime import RuntimeUnavailable
from engine.encoder.runtime_choice import AUTO_ORDER, choose_backend, select_runtime
from engine.encoder.runtime_tensorrt import engine_cache_key

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = Environment(ort_providers=("CPUExecutionProvider",), has_torch=True)
H200_LENT = Environment(cuda_devices=("NVIDIA H200",), ort_providers=("CPUExecutionProvider",), has_torch=True)
FULL_GPU = Environment(cuda_devices=("NVIDIA H200",), has_tensorrt=True, has_cuda_python=True,
                       ort_providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
                       has_torch=True)


@pytest.fixture
def manifest(tmp_path) -> dict:
    (tmp_path / "encoder.pt").write_bytes(b"weights")
    return {"_dir": str(tmp_path), "weights": {"file": "encoder.pt"}, "onnx": {"file": "encoder.onnx"}}


def test_auto_order_is_tensorrt_then_ort_cuda_then_torch_cuda_then_ort_cpu():
    assert AUTO_ORDER == ("tensorrt", "ort-cuda", "torch-cuda", "ort-cpu")


def test_cpu_machine_gets_ort_cpu_and_is_told_why(manifest):
    choice = choose_backend(CPU_ONLY, manifest)
    assert choice.backend == "ort-cpu"
    assert [b for b, _ in choice.skipped] == ["tensorrt", "ort-cuda", "torch-cuda"]
    assert all("no CUDA GPU" in why for _, why in choice.skipped)


def test_gpu_with_everything_gets_tensorrt(manifest):
    assert choose_backend(FULL_GPU, manifest).backend == "tensorrt"


def test_tensorrt_needs_cuda_python_for_buffers(manifest):
    env = Environment(cuda_devices=("GPU",), has_tensorrt=True,
                      ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    choice = choose_backend(env, manifest)
    assert choice.backend == "ort-cuda" and "cuda-python" in choice.skipped[0][1]


def test_the_lent_h200_gets_torch_on_cuda_and_without_weights_ort_cpu(manifest):
    """torch 2.11 + CPU-only onnxruntime + no TensorRT, as docs/SPEC.md §10 describes the lent box."""
    choice = choose_backend(H200_LENT, manifest)
    assert choice.backend == "torch-cuda"
    assert "tensorrt is not installed" in choice.skipped[0][1]
    assert "no CUDAExecutionProvider" in choice.skipped[1][1]
    manifest["weights"] = None
    choice = choose_backend(H200_LENT, manifest)
    assert choice.backend == "ort-cpu" and "no torch weights" in dict(choice.skipped)["torch-cuda"]
    assert choose_backend(H200_LENT, {**manifest, "weights": {"file": "encoder.pt"}},
                          allow_torch=False).backend == "ort-cpu"


def test_prefer_overrides_and_fails_loudly_when_impossible(manifest):
    assert choose_backend(FULL_GPU, manifest, "ort-cpu").backend == "ort-cpu"
    assert choose_backend(CPU_ONLY, manifest, "torch-cpu").backend == "torch-cpu"
    with pytest.raises(RuntimeUnavailable, match="'tensorrt' asked for but unavailable: no CUDA GPU"):
        choose_backend(CPU_ONLY, manifest, "tensorrt")
    with pytest.raises(RuntimeUnavailable, match="unknown runtime"):
        choose_backend(CPU_ONLY, manifest, "openvino")
    with pytest.raises(RuntimeUnavailable, match="no encoder runtime can run here"):
        choose_backend(Environment(), manifest)


def test_engine_cache_key_names_model_gpu_and_tensorrt_version():
    key = engine_cache_key("ab" * 32, "NVIDIA H200", "10.9.0.34", "fp16")
    assert key == "abababababababab-nvidia-h200-trt10.9.0.34-fp16-b1-16-64"


def test_tensorrt_backend_module_imports_without_tensorrt():
    import engine.encoder.runtime_tensorrt as mod  # tensorrt is imported only inside the runtime

    assert mod.PROFILE == (1, 16, 64)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
    from engine.encoder.torch_model import build_model
    from integrations.encoder.export import export_onnx

    out = tmp_path_factory.mktemp("rt") / "encoder.onnx"
    export_onnx("coca-s50", out, model=build_model("coca-s50", head=True, seed=1), exporter="torchscript")
    return out.with_suffix(".json")


def test_select_runtime_here_and_env_override(small_export, monkeypatch):
    from engine.encoder.hardware import detect_environment

    rt = select_runtime(small_export)
    if not detect_environment().has_cuda:
        assert rt.name == "ort-cpu"  # CI and the developers' machines have no GPU
    emb, scores = rt.embed(np.zeros((3, 12, 5000), dtype=np.float64))  # float64 is converted
    assert emb.shape == (3, 128) and emb.dtype == np.float32 and scores.shape == (3, 2)
    with pytest.raises(ValueError, match=r"expected \(B, 12, 5000\)"):
        rt.embed(np.zeros((2, 5000, 12), dtype=np.float32))
    # The override (the worker passes TWIWATCH_ENCODER_RUNTIME from its settings) wins, and fails loudly.
    assert select_runtime(small_export, prefer="torch-cpu").name == "torch-cpu"
    with pytest.raises(RuntimeUnavailable):
        select_runtime(small_export, prefer="tensorrt")


def test_large_batches_are_split_transparently(small_export):
    rt = select_runtime(small_export, prefer="ort-cpu")
    x = np.random.default_rng(0).standard_normal((5, 12, 5000)).astype(np.float32)
    whole = rt.embed(x)[0]
    rt.max_batch = 2
    assert np.allclose(rt.embed(x)[0], whole, atol=1e-5)


def test_a_worker_embeds_without_importing_torch(small_export):
    code = f"""
import json, sys
import numpy as np
from engine.encoder.runtime_choice import select_runtime
from engine.encoder.adapter import adapt_batch
from engine.encoder.triage_head import head_disagrees, HeadThresholds
from integrations.datasets.recordings import find_recordings
recs = [r.load() for r in find_recordings({str(ROOT / 'samples')!r})[:4]]
x, mask = adapt_batch(recs)
emb, scores = select_runtime({str(small_export)!r}).embed(x)
print(json.dumps({{"torch": "torch" in sys.modules, "shape": list(emb.shape), "scores": list(scores.shape)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "shape": [4, 128], "scores": [4, 2]}


def test_int8_is_opt_in_close_to_fp32_and_unsupported_precisions_fall_back(small_export, tmp_path, recordings):
    from engine.encoder.adapter import adapt_batch

    x, _ = adapt_batch([r.load() for r in recordings[:6]])
    fp32 = select_runtime(small_export, prefer="ort-cpu")
    int8 = select_runtime(small_export, prefer="ort-cpu", precision="int8", cache_dir=tmp_path)
    assert fp32.describe()["precision"] == "fp32" and int8.describe()["precision"] == "int8"
    (e32, s32), (e8, s8) = fp32.embed(x), int8.embed(x)
    cos = np.sum(e32 * e8, 1) / (np.linalg.norm(e32, axis=1) * np.linalg.norm(e8, axis=1))
    assert cos.min() > 0.999 and np.abs(s32 - s8).max() < 0.02
    assert len(list(tmp_path.glob("*-int8-matmul.onnx"))) == 1  # cached by model hash
    assert select_runtime(small_export, prefer="ort-cpu", precision="fp16").describe()["precision"] == "fp32"
