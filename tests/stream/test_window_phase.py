"""Window phases (docs/SPEC.md §11.9): each stream's 10-s epochs start at a whole second fixed by its key, so beds'
windows fall due spread over the 10 s instead of all in the same second, and a restart cuts the same windows."""
from __future__ import annotations

from collections import Counter

from stream.config import WorkerSettings
from stream.monitor.stage import assembler_for, window_phase_s


def test_phases_are_whole_seconds_fixed_by_the_key_and_spread_over_the_window():
    keys = [f"stream-{i}" for i in range(1000)]
    phases = [window_phase_s(k, 10.0) for k in keys]
    assert phases == [window_phase_s(k, 10.0) for k in keys]  # same key, same phase (a restart, another worker)
    assert set(phases) == {float(p) for p in range(10)}
    assert max(Counter(phases).values()) < 2 * 1000 / 10  # no second gets much more than its share
    assert window_phase_s("stream-1", 0.5) == 0.0  # windows under a second have no whole-second phase


def test_the_setting_turns_the_phase_off():
    on, off = WorkerSettings(), WorkerSettings(monitor_stagger_windows=False)
    key = next(k for k in (f"k{i}" for i in range(100)) if window_phase_s(k, 10.0) != 0.0)
    assert assembler_for(on, key).phase_s == window_phase_s(key, 10.0)
    assert assembler_for(off, key).phase_s == 0.0
