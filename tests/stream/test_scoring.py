"""The worker's scorer built from settings: the shipped model on real ECGs, FP32 by default, INT8 and the thread
count when configured (TWIWATCH_ENCODER_PRECISION / _THREADS), and the report says which model scored."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import ToolSettings
from stream.scoring import make_scorer
from stream.stages import analyse_only

MANIFEST = Path(__file__).resolve().parents[2] / "models" / "triage-s50" / "encoder.json"


@pytest.fixture(scope="module")
def analysed(recordings):
    s = ToolSettings()
    return [analyse_only(r.load(), None, {}, s) for r in recordings[:6]]


def test_no_manifest_no_scorer():
    assert make_scorer(ToolSettings(encoder_manifest="")) is None


def test_int8_on_request_scores_like_fp32_and_says_so(analysed, tmp_path):
    fp32 = make_scorer(ToolSettings(encoder_manifest=str(MANIFEST), encoder_runtime="ort-cpu"))
    int8 = make_scorer(ToolSettings(encoder_manifest=str(MANIFEST), encoder_runtime="ort-cpu", encoder_precision="int8",
                                encoder_threads=1, encoder_cache_dir=tmp_path))
    assert fp32.runtime.describe()["precision"] == "fp32" and int8.runtime.describe()["precision"] == "int8"
    assert int8.runtime.session.get_session_options().intra_op_num_threads == 1
    assert fp32.model == "coca-s50 triage head" and int8.model == "coca-s50 triage head (int8)"
    a, b = fp32.score(analysed), int8.score(analysed)
    assert all(x is not None for x in a + b)
    for x, y in zip(a, b, strict=True):
        # docs/BENCHMARKS.md: on the test split the largest change is < 0.01 and no abstention-band decision moves
        assert abs(x["twi_present"] - y["twi_present"]) < 0.02
        assert abs(x["ischemic_vs_secondary"] - y["ischemic_vs_secondary"]) < 0.02
