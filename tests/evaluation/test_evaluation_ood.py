"""`twiwatch evaluate secondary` on the shipped samples (PTB-XL folds 1-9 and the two CinC records in samples/ood):
the same code path as the full run in docs/EVALUATION.md, on real records, small enough for CI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # until pyproject's package list names evaluation*, import it from the checkout
    sys.path.insert(0, str(ROOT))

from evaluation import cinc  # noqa: E402
from evaluation.ood import CAUSES, run_secondary  # noqa: E402

SAMPLES = ROOT / "samples"


def test_secondary_on_samples(tmp_path):
    report = run_secondary(SAMPLES, SAMPLES / "ood", tmp_path / "s.json", n_boot=200, workers=1, progress=False)
    assert json.loads((tmp_path / "s.json").read_text())["cinc"]["summary"]["all"]["records"] == 2
    p = report["ptbxl"]["100"]
    assert p["records"] >= 25
    for cause in ("lbbb", "rbbb", "rbbb-incomplete", "lbbb-incomplete", "lvh", "pacing"):
        assert p[cause]["positives"] + p[cause]["negatives"] == p["records"]
    assert p["rbbb"]["tp"] >= 1  # PTB-XL 269 (CRBBB) is in the samples
    c = report["cinc"]
    per = {r["name"]: r for r in c["per_record"]}
    assert per["JS20052"]["labels"]["rbbb"] and per["A0023"]["rhythm"] == "af"
    assert {r["split"] for r in per.values()} <= {"tune", "untouched"}
    assert per["JS20052"]["split"] == cinc.split_of("JS20052")
    assert set(c["summary"]["all"]["secondary"]) == set(CAUSES)
    assert c["excluded_records"] == []
