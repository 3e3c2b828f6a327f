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
    for lead in ("V4", "V5", "V6"):
        lr = a.leads[lead]
        assert lr.quality == "ok"
        assert lr.t_polarity == "positive", (lead, lr.t_polarity, lr.t_amplitude_mv)
    assert not a.twi


def test_lobes_on_shapes():
    x = np.linspace(0, np.pi, 101)
    upright = 0.3 * np.sin(x)

    def lobes(wave, onset=0):
        pk = int(np.argmax(np.abs(wave)))
        return t_lobes(wave[:onset], wave[onset:pk + 1], wave[pk:])

    rising = np.concatenate([np.linspace(-0.2, 0.0, 40), upright])  # S wave still coming up, then an upright T
    assert lobes(rising) == (0.3, 0.0)
    dipped = np.concatenate([-0.15 * np.sin(x[:50] * 2), upright])  # falls into a real negative lobe first
    pos, neg = lobes(dipped)
    assert pos == 0.3 and neg < -0.14
    terminal = np.concatenate([upright, -0.2 * np.sin(x)])  # positive-negative (terminal lobe after the peak)
    assert lobes(terminal)[1] < -0.19
    plus_minus = np.concatenate([0.2 * np.sin(x), -0.3 * np.sin(x)])  # +/- with the inverted lobe dominant
    assert lobes(plus_minus) == (0.2, -0.3)
    assert lobes(plus_minus, onset=50) == (0.2, -0.3)  # onset on the apex of the smaller lobe: still counted
    sag = np.concatenate([-0.1 * np.sin(x), upright])  # an ST sag that ends before the T onset is not the T
    assert lobes(sag, onset=101)[1] == 0.0
