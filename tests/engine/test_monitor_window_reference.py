"""The monitor window path's trend points are unchanged by speed work: real windows against a stored reference.

The reference (tests/engine/data/monitor_window_points.json) holds analyse_window's points on the real 500 Hz
recordings of samples/ cut as a monitor sends them (I, II, III and V2 or V5 at 250 Hz; also at 500 Hz, the own-rate
path, and at 360 Hz, the resampled path; and with lead-off flags on a stretch of lead II). A change to the window
path that is meant to change its output regenerates it on purpose:
    python -m tests.engine.test_monitor_window_reference --write
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from engine.monitor.window import analyse_window
from tests.engine.test_monitor_window import _monitor_window, _real_500hz_records

REFERENCE = Path(__file__).resolve().parent / "data" / "monitor_window_points.json"
TOLERANCE_MV = 1e-9  # float noise only


def _windows():
    for rec in _real_500hz_records():
        for chest in ("V2", "V5"):
            yield f"{rec.source_id}:{chest}:250", _monitor_window(rec, chest)
        yield f"{rec.source_id}:V5:500", _monitor_window(rec, "V5", fs_out=500.0)
        yield f"{rec.source_id}:V2:360", _monitor_window(rec, "V2", fs_out=360.0)
        w = _monitor_window(rec, "V2")
        flagged = np.zeros(w.signal.shape, dtype=bool)
        flagged[1, 700:1100] = True  # 1.6 s of lead II off: interpolated over, and noted
        yield f"{rec.source_id}:V2:250:flagged", w.replace(flagged=flagged)


def _points() -> dict[str, dict]:
    return {name: {lead: p.to_dict() for lead, p in analyse_window(w).items()} for name, w in _windows()}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE_MV)
    return a == b


def test_window_points_equal_the_reference():
    ref = json.loads(REFERENCE.read_text())
    got = json.loads(json.dumps(_points()))  # the points as the trend message carries them
    assert got.keys() == ref.keys()
    ok_points = 0
    for name, leads in ref.items():
        assert got[name].keys() == leads.keys(), name
        for lead, point in leads.items():
            for key, value in point.items():
                assert _same(got[name][lead][key], value), (name, lead, key, got[name][lead][key], value)
            ok_points += point["quality"] == "ok"
    assert ok_points >= 300  # the reference is real trend points, not a file of refusals


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        REFERENCE.write_text(json.dumps(_points(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE}")
