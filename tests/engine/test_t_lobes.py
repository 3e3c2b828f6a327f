"""T-wave lobes (engine/measure.py `t_lobes`) on real median beats: a lobe before the T peak counts only when the
signal falls (rises) into it after the T onset, so a depressed ST segment still coming up into an upright T is not
an inverted T lobe, and the T is not called biphasic."""
from __future__ import annotations

import numpy as np

from engine.analyze import analyze
from engine.measure import t_lobes
from tests.support.records import load_wfdb, ptbxl_path


def test_depressed_st_into_an_upright_t_is_not_a_biphasic_t():
    """PTB-XL 941 (100 Hz): ST depressed in V4-V6 and I, a low upright T after it (checked on the plotted median
    beat). Before the rule these leads read "biphasic" from the ST segment's depth."""
    a = analyze(load_wfdb(ptbxl_path(941), "ptbxl/941"))
    for lead in ("I", "V4", "V5", "V6"):
        lr = a.leads[lead]
        assert lr.quality == "ok"
        assert lr.t_polarity == "positive", (lead, lr.t_polarity, lr.t_amplitude_mv)
    assert not a.twi


def test_lobes_on_shapes():
    x = np.linspace(0, np.pi, 101)
    upright = 0.3 * np.sin(x)
    rising = np.concatenate([np.linspace(-0.2, 0.0, 40), upright])  # S wave still coming up, then an upright T
    assert t_lobes(rising, int(np.argmax(rising))) == (0.3, 0.0)
    dipped = np.concatenate([-0.15 * np.sin(x[:50] * 2), upright])  # falls into a real negative lobe first
    pos, neg = t_lobes(dipped, int(np.argmax(dipped)))
    assert pos == 0.3 and neg < -0.14
    terminal = np.concatenate([upright, -0.2 * np.sin(x)])  # positive-negative (terminal lobe after the peak)
    assert t_lobes(terminal, int(np.argmax(terminal)))[1] < -0.19
