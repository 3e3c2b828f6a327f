"""The head-vs-criteria check, and smoke runs of training, the GPU check's CPU path and the benchmark."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.encoder.triage_head import HeadThresholds, TriageScores, head_disagrees
from engine.result import Triage, TwiGroup

ROOT = Path(__file__).resolve().parents[2]


def _analysis(cls: str, groups: list[list[str]]):
    """The fields head_disagrees reads from an Analysis."""
    twi = [TwiGroup(name="g", leads=g, depths_mv={}, rule="test") for g in groups]
    return SimpleNamespace(triage=Triage(cls), twi=twi, twi_present=bool(twi))


def test_head_agreeing_or_abstaining_says_nothing():
    assert head_disagrees(_analysis("no-twi", []), [0.1, 0.5]) is None
    assert head_disagrees(_analysis("no-twi", []), [0.6, 0.5]) is None  # inside the abstention band
    assert head_disagrees(_analysis("ischemic-pattern", [["V2", "V3"]]), [0.9, 0.9]) is None
    assert head_disagrees(_analysis("indeterminate", [["II", "aVF"]]), [0.0, 0.0]) is None


def test_head_disagreements_are_sentences_that_keep_the_criteria_primary():
    msg = head_disagrees(_analysis("ischemic-pattern", [["V2", "V3"]]), TriageScores(0.05, 0.9))
    assert "TWI unlikely" in msg and "V2, V3" in msg and "criteria stand" in msg
    assert "TWI likely" in head_disagrees(_analysis("no-twi", []), [0.95, 0.5])
    assert "secondary cause" in head_disagrees(_analysis("ischemic-pattern", [["I", "aVL"]]), [0.9, 0.1])
    msg = head_disagrees(_analysis("secondary:lbbb", [["V5", "V6"]]), [0.9, 0.95])
    assert "ischemic pattern" in msg and "lbbb" in msg


def test_thresholds_come_from_the_manifest():
    th = HeadThresholds.from_manifest({"head": {"thresholds": {"twi_low": 0.3, "twi_high": 0.7, "junk": 1}}})
    assert th == HeadThresholds(twi_low=0.3, twi_high=0.7)
    assert head_disagrees(_analysis("no-twi", []), [0.75, 0.5], th) is not None
    with pytest.raises(ValueError):
        TriageScores.from_row([0.1])


def test_training_runs_end_to_end_on_the_samples(tmp_path):
    """samples/ has the PTB-XL and LUDB layouts: one epoch over it exercises data, splits, export and the card."""
    pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
    from integrations.encoder.train import train

    m = train(ROOT / "samples", tmp_path / "out", epochs=1, n_boot=20, workers=1, cache_dir=tmp_path / "cache",
              ship_to=tmp_path / "ship", log=lambda *_: None)
    assert m["epochs_run"] == 1 and set(m["data"]) == {"train", "val", "test"}
    assert all(p not in m["data"]["train"] for p in ("fold10",))
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert "Research only" in card and "95 %" in card and "Limits" in card
    manifest = json.loads((tmp_path / "out" / "encoder.json").read_text())
    assert manifest["head"]["thresholds"]["twi_high"] == 0.8 and manifest["weights"]
    shipped = json.loads((tmp_path / "ship" / "encoder.json").read_text())
    assert shipped["weights"] is None and (tmp_path / "ship" / "encoder.onnx").is_file()
    from engine.encoder.manifest import load_manifest

    load_manifest(tmp_path / "ship" / "encoder.json")  # both graphs shipped, hashes checked
    assert (tmp_path / "ship" / shipped["onnx"]["ort_cpu"]["file"]).is_file()


def test_splits_never_read_fold_10_and_are_patient_disjoint():
    from integrations.encoder import training_data as td

    items = td.find_items(ROOT / "samples")
    assert {it.split for it in items} <= set(td.SPLITS)
    td.check_patient_disjoint(items)
    assert td.ludb_split(9) == "test" and td.ludb_split(7) == "val" and td.ludb_split(1) == "train"
    with pytest.raises(ValueError, match="held-out"):
        td.ludb_split(8)


def test_gpu_check_cpu_fallback_runs(tmp_path):
    pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
    out = tmp_path / "gpu.json"
    cmd = ["bash", "scripts/gpu_check.sh", "--device", "cpu", "--quick", "--exporter", "torchscript",
           "--json", str(out)]
    done = subprocess.run(cmd,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FLOP basis per ECG" in done.stdout and "TensorRT: NOT EXERCISED" in done.stdout
    res = json.loads(out.read_text())
    assert res["parity_ok"] and res["variant"] == "coca-s50" and res["tensorrt"]["exercised"] is False
    fp32 = next(r for r in res["torch"] if r["precision"] == "fp32")
    assert fp32["parity"]["max_abs_diff"] <= 1e-4 and set(fp32["batches"]) == {"1", "8"}


def test_benchmark_smoke(tmp_path):
    pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "bench/encoder.py", "--json", str(out), "--quick", "--exporter", "torchscript"]
    done = subprocess.run(cmd,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert {"ort_cpu_b1_ratio", "ort_cpu_b16_ratio", "torch_eager_b16_ecg_per_s", "ort_cpu_b16_ecg_per_s"} <= set(res)
    assert max(res["parity_max_abs_diff_vs_torch"].values()) <= 1e-4
