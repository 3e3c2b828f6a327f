"""The torch encoder: architecture, checkpoint loading in the public layout, ONNX export, parity on real ECGs.

Needs torch, onnx and onnxruntime (the `train` extra; CI installs it). Skipped, with the reason, only where absent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[train]')")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")

from engine.encoder.adapter import adapt_batch  # noqa: E402
from engine.encoder.checkpoint import CheckpointError, guess_variant, load_into, load_model  # noqa: E402
from engine.encoder.manifest import ManifestError, load_manifest, sha256_file  # noqa: E402
from engine.encoder.runtime_choice import select_runtime  # noqa: E402
from engine.encoder.torch_model import PackedSelfAttention, build_model, count_parameters  # noqa: E402
from engine.encoder.variants import MODEL_LEADS, get_variant  # noqa: E402
from integrations.encoder.export import export_onnx  # noqa: E402

PARITY_TOL = 1e-4  # FP32, torch eager vs ONNX Runtime CPU


@pytest.fixture(scope="module")
def real_batch(recordings) -> np.ndarray:
    """16 real ECGs from samples/ (LUDB at 500 Hz and PTB-XL at 100 Hz), adapted."""
    picked = recordings[:8] + [r for r in recordings if r.dataset == "ptbxl"][:8]
    batch, _ = adapt_batch([r.load() for r in picked])
    return batch


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The small model with a (random, seeded) head, exported with the default exporter."""
    out = tmp_path_factory.mktemp("export") / "encoder.onnx"
    model = build_model("coca-s50", head=True, seed=3)
    manifest = export_onnx("coca-s50", out, model=model)
    return model, out, manifest


def test_coca_b50_has_the_public_shapes_and_about_86m_parameters():
    model = build_model("coca-b50", head=False)
    state = model.state_dict()
    assert tuple(state["ecg.conv1.weight"].shape) == (768, 12, 50) and "ecg.conv1.bias" not in state
    assert tuple(state["ecg.positional_embedding"].shape) == (101, 768)
    assert tuple(state["ecg.proj"].shape) == (768, 512)
    assert tuple(state["ecg.transformer.resblocks.11.attn.in_proj_weight"].shape) == (2304, 768)
    assert tuple(state["ecg.transformer.resblocks.11.mlp.c_fc.weight"].shape) == (3072, 768)
    assert 85e6 < count_parameters(model.ecg) < 87e6
    assert get_variant("coca-b50").flops_per_ecg()["total"] == pytest.approx(17.6e9, rel=0.01)


def test_packed_attention_is_nn_multiheadattention():
    torch.manual_seed(0)
    ours = PackedSelfAttention(64, 4).eval()
    ref = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    ref.load_state_dict(ours.state_dict())  # same keys, same packing
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5)


def test_the_export_form_of_attention_computes_the_packed_form():
    torch.manual_seed(1)
    attn = PackedSelfAttention(64, 4).eval()
    x = torch.randn(3, 11, 64)
    packed = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    want = packed.view(3, 11, 3, 4, 16).permute(2, 0, 3, 1, 4)
    with torch.no_grad():
        got = torch.stack(attn._export_projections(x))
    assert torch.allclose(got, want, atol=1e-6)


def test_forward_returns_embedding_and_tokens_before_ln_post():
    model = build_model("coca-s50", head=True)
    with torch.no_grad():
        emb, tokens, logits = model(torch.zeros(2, 12, 5000))
        assert emb.shape == (2, 128) and tokens.shape == (2, 101, 128) and logits.shape == (2, 2)
        again = model.ecg.ln_post(tokens[:, 0]) @ model.ecg.proj
    assert torch.allclose(emb, again, atol=1e-6)


def _public_layout(model, tmp_path: Path, name: str, *, wrap: bool, module: bool) -> Path:
    """A file shaped like cpt_wfep_epoch_20.pt: ecg.* plus another tower, maybe under state_dict / module."""
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ecg.")}
    state["text.token_embedding.weight"] = torch.zeros(4, 8)
    state["logit_scale"] = torch.tensor(2.0)
    if module:
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"epoch": 20, "name": "coca", "state_dict": state} if wrap else state
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("wrap,module", [(False, False), (True, False), (False, True), (True, True)])
def test_loads_the_public_layout_wrapped_or_prefixed(tmp_path, wrap, module):
    src = build_model("coca-s50", head=False, seed=11)
    path = _public_layout(src, tmp_path, "ckpt.pt", wrap=wrap, module=module)
    model, report = load_model("coca-s50", path)
    assert report.ok and report.wrapped == wrap and report.stripped_module_prefix == module
    assert report.ignored_outside_tower == 2 and model.head is None  # the public file has no head
    x = torch.randn(1, 12, 5000)
    with torch.no_grad():
        assert torch.equal(model(x)[0], src(x)[0])


def test_mismatched_checkpoint_gives_a_readable_report(tmp_path):
    src = build_model("coca-s50", head=False, seed=1)
    state = {k: v for k, v in src.state_dict().items() if k.startswith("ecg.")}
    del state["ecg.ln_post.bias"]
    state["ecg.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(10, 10)
    state["ecg.attn_pool.query"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as exc:
        load_into(build_model("coca-s50", head=False), path)
    msg = str(exc.value)
    assert "missing 1: ecg.ln_post.bias" in msg
    assert "unexpected 1: ecg.attn_pool.query" in msg
    assert "mis-shaped 1: ecg.transformer.resblocks.0.attn.in_proj_weight file [10, 10] vs model [384, 128]" in msg
    assert "Traceback" not in msg and isinstance(exc.value, ValueError)


def test_wrong_variant_is_named(tmp_path):
    path = _public_layout(build_model("coca-s50", head=False), tmp_path, "s50.pt", wrap=True, module=False)
    with pytest.raises(CheckpointError, match="looks like variant 'coca-s50'"):
        load_model("coca-b50", path)
    assert guess_variant(torch.load(path, weights_only=True)["state_dict"]) == "coca-s50"


def test_unreadable_or_absent_files_are_readable_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist .*never downloaded"):
        load_model("coca-s50", tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_model("coca-s50", junk)
    empty = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, empty)
    with pytest.raises(CheckpointError, match="no 'ecg.\\*' keys"):
        load_model("coca-s50", empty)


def test_export_manifest_contents(exported):
    _, path, manifest = exported
    assert manifest == {k: v for k, v in load_manifest(path).items() if k != "_dir"}
    onnx_spec = manifest["onnx"]
    assert onnx_spec["opset"] >= 17 and onnx_spec["dynamic_batch"]
    assert onnx_spec["sha256"] == sha256_file(path) == manifest["model_sha256"]
    assert onnx_spec["bytes"] == path.stat().st_size
    assert onnx_spec["inputs"] == [{"name": "ecg", "shape": ["batch", 12, 5000], "dtype": "float32"}]
    assert [o["name"] for o in onnx_spec["outputs"]] == ["embedding", "scores"]
    assert manifest["input"]["lead_order"] == list(MODEL_LEADS) and manifest["input"]["sampling_rate_hz"] == 500
    assert manifest["input"]["units"] == "mV" and manifest["embed_dim"] == 128 and manifest["variant"] == "coca-s50"
    assert manifest["versions"]["torch"] and manifest["versions"]["onnx"] and manifest["versions"]["onnxruntime"]
    assert manifest["head"]["outputs"] == ["twi_present", "ischemic_vs_secondary"]
    assert (path.parent / manifest["weights"]["file"]).is_file()
    assert max(manifest["export_check"]["max_abs_diff"].values()) <= PARITY_TOL
    fused = onnx_spec["ort_cpu"]  # ONNX Runtime's CPU fusions, written beside the portable graph
    assert fused["file"] == "encoder.ort-cpu.onnx" and fused["sha256"] == sha256_file(path.parent / fused["file"])
    assert fused["fusions"]["attention"] == 4 and fused["fusions"]["skip_layer_normalization"] >= 4
    assert max(fused["export_check"]["max_abs_diff"].values()) <= PARITY_TOL
    import onnx

    fused_ops = {n.op_type for n in onnx.load(str(path.parent / fused["file"])).graph.node}
    assert {"Attention", "BiasGelu", "SkipLayerNormalization"} <= fused_ops and "Softmax" not in fused_ops

    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch


def test_manifest_catches_a_changed_model_file(exported, tmp_path):
    _, path, _ = exported
    copy = tmp_path / "encoder.onnx"
    copy.write_bytes(path.read_bytes() + b"x")
    (tmp_path / "encoder.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ManifestError, match="does not match"):
        load_manifest(copy)
    copy.write_bytes(path.read_bytes())
    fused = path.parent / "encoder.ort-cpu.onnx"
    (tmp_path / fused.name).write_bytes(fused.read_bytes()[:-1])
    with pytest.raises(ManifestError, match="encoder.ort-cpu.onnx sha256 .* does not match"):
        load_manifest(copy)
    (tmp_path / fused.name).write_bytes(fused.read_bytes())
    (tmp_path / "encoder.pt").write_bytes((path.parent / "encoder.pt").read_bytes() + b"x")  # swapped weights
    with pytest.raises(ManifestError, match="encoder.pt sha256 .* does not match"):
        load_manifest(copy)


@pytest.mark.parametrize("batch", [1, 16])
def test_torch_and_onnxruntime_agree_on_real_ecgs(exported, real_batch, batch):
    model, path, _ = exported
    x = real_batch[:batch]
    with torch.no_grad():
        emb, _, logits = model(torch.from_numpy(x))
    for fused in (True, False):
        rt = select_runtime(path, prefer="ort-cpu", fused=fused)
        assert rt.describe()["graph"] == ("ort-cpu fused" if fused else "portable")
        ort_emb, ort_scores = rt.embed(x)
        assert np.abs(ort_emb - emb.numpy()).max() <= PARITY_TOL
        assert np.abs(ort_scores - torch.sigmoid(logits).numpy()).max() <= PARITY_TOL
    t_emb, t_scores = select_runtime(path, prefer="torch-cpu").embed(x)  # the torch runtime, from saved weights
    assert np.abs(t_emb - emb.numpy()).max() <= 1e-5


def test_torchscript_exporter_with_tokens_agrees_too(tmp_path, real_batch):
    """The fallback the GPU box uses when onnxscript is missing; also the ECG-R1 token output."""
    model = build_model("coca-s50", head=False, seed=5)
    manifest = export_onnx("coca-s50", tmp_path / "ts.onnx", model=model, exporter="torchscript", tokens=True,
                           keep_weights=False)
    assert manifest["onnx"]["exporter"] == "torchscript" and manifest["weights"] is None
    # Its graph does not match the attention fusion: nothing half-fused is shipped, and the manifest says why.
    assert manifest["onnx"]["ort_cpu"]["file"] is None and "attention" in manifest["onnx"]["ort_cpu"]["why_not"]
    assert not (tmp_path / "ts.ort-cpu.onnx").exists()
    assert select_runtime(tmp_path / "ts.onnx", prefer="ort-cpu").describe()["graph"] == "portable"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "ts.onnx"), providers=["CPUExecutionProvider"])
    emb, tokens = sess.run(None, {"ecg": real_batch[:3]})
    with torch.no_grad():
        ref_emb, ref_tokens, _ = model(torch.from_numpy(real_batch[:3]))
    assert tokens.shape == (3, 101, 128)
    assert np.abs(emb - ref_emb.numpy()).max() <= PARITY_TOL
    assert np.abs(tokens - ref_tokens.numpy()).max() <= PARITY_TOL
