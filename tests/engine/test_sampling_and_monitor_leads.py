"""Sampling variety and monitoring lead sets: the same real records at 100, 250, 500 and 1000 Hz give the same T
polarity in >= 97 % of leads; 2-4-lead monitoring windows (docs/SPEC.md §11.7) run through every step."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.analyze import analyze
from engine.record import make_record
from tests.support.records import SAMPLES, load_wfdb, ludb_path

RECORDS = [("ludb", 1), ("ludb", 3), ("ludb", 6), ("ludb", 10), ("ludb", 11), ("ludb", 21), ("ood", "A0023"),
           ("ood", "JS20052")]


def _load(kind, rid):
    if kind == "ludb":
        return load_wfdb(ludb_path(rid), f"ludb/{rid}")
    return load_wfdb(SAMPLES / "ood" / rid, f"ood/{rid}")


def _at(rec, fs_new: int):
    up, down = fs_new, int(rec.fs)
    g = np.gcd(up, down)
    x = resample_poly(np.asarray(rec.signal, dtype=np.float64), up // g, down // g, axis=1)
    return make_record(x, rec.leads, float(fs_new), f"{rec.source_id}@{fs_new}")


def test_t_polarity_agrees_across_sampling_rates():
    same = total = 0
    for kind, rid in RECORDS:
        rec = _load(kind, rid)
        ref = analyze(rec)
        for fs in (100, 250, 1000):
            a = analyze(_at(rec, fs))
            for n, lr in ref.leads.items():
                if lr.quality != "ok" or lr.t_polarity is None or a.leads[n].quality != "ok":
                    continue
                total += 1
                same += a.leads[n].t_polarity == lr.t_polarity
    assert total > 200
    assert same / total >= 0.97, (same, total)


@pytest.mark.parametrize("leads", [("I", "II"), ("II", "V1"), ("I", "II", "V5"), ("I", "II", "III", "V2"),
                                   ("MLII", "V5")])
def test_monitoring_windows_run_every_step(leads):
    rec = _load("ood", "JS20052")
    names = [{"MLII": "II"}.get(x, x) for x in leads]
    x = np.stack([np.asarray(rec.signal[rec.leads.index(n)], dtype=np.float64) for n in names])
    for fs in (125, 250):
        win = make_record(_at(make_record(x, names, rec.fs, "w"), fs).signal, leads, float(fs), "monitor-window")
        a = analyze(win)
        assert a.triage.cls in ("no-twi", "indeterminate", "ischemic-pattern") or a.triage.cls.startswith("secondary")
        assert {f.cause for f in a.secondary} >= {"lbbb", "rbbb", "lvh", "ventricular-pacing"}
        assert any(lr.quality == "ok" for lr in a.leads.values())
        if "V1" not in leads:
            rbbb = next(f for f in a.secondary if f.cause == "rbbb")
            assert any("V1 absent" in e for e in rbbb.evidence)
