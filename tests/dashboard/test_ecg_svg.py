"""The ECG and trend SVGs drawn from real recordings: true-scale geometry (mm user units, 1/5 mm grid, 25 mm/s,
10 mm/mV), T-wave marks where the engine put the fiducials, and the reasoner's claims read with their verdicts."""
from __future__ import annotations

import base64
import dataclasses
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from engine.analyze import analyze
from integrations.dashboard.web.ecg_svg import MM_PER_MV, MM_PER_S, SignalError, render_ecg
from integrations.dashboard.web.trend_svg import render_trend
from integrations.dashboard.web.view import local_time, reasoning_claims
from tests.support.dashboard_messages import signal_of

NS = {"s": "http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def lvh(ptbxl):
    """PTB-XL 281 (high-lateral TWI, LVH strain) at 100 Hz: its signal and the engine's analysis with beats."""
    record = ptbxl["281"].load()
    result = analyze(record, [])
    analysis = result.to_dict()
    for lead, lr in result.leads.items():
        analysis["leads"][lead]["beats"] = [dataclasses.asdict(b) for b in lr.beats]
    return record, signal_of(record), analysis


def _points(polyline) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in polyline.get("points").split()])


def test_twelve_lead_figure_is_drawn_at_true_scale(lvh):
    record, signal, analysis = lvh
    root = ET.fromstring(render_ecg(signal, analysis, twi_leads={"I", "aVL"}, svg_id="t"))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("260mm", "140mm", "0 0 260 140")
    minor = root.find(".//s:path[@class='ecg-grid-minor']", NS).get("d")
    major = root.find(".//s:path[@class='ecg-grid-major']", NS).get("d")
    major_xs = [float(x) for x in re.findall(r"M([\d.]+) 0V", major)]
    assert np.allclose(np.diff(major_xs), 5.0) and major_xs[-1] == 260
    xs = sorted({float(x) for x in re.findall(r"M([\d.]+) 0V", minor)} | set(major_xs))
    assert np.allclose(np.diff(xs), 1.0) and len(xs) == 261  # a line every mm, every fifth bold
    traces = root.findall(".//s:polyline", NS)
    assert len(traces) == 13
    # The rhythm strip (lead II, 10 s): 25 mm per second, 10 mm per mV, against the record itself.
    strip = _points(traces[-1])
    assert strip[-1, 0] - strip[0, 0] == pytest.approx((len(strip) - 1) / record.fs * MM_PER_S, abs=0.02)
    lead_ii = record.signal[record.leads.index("II")]
    uv = np.clip(np.rint(lead_ii.astype(np.float64) * 1000), -32767, 32767)
    drawn_mv = -(strip[:, 1] - strip[:, 1].mean()) / MM_PER_MV
    assert np.allclose(drawn_mv, (uv - uv.mean()) / 1000, atol=0.002)
    cal = root.find(".//s:path[@class='ecg-cal']", NS).get("d")
    heights = [float(v) for v in re.findall(r"V([\d.]+)", cal)]
    assert abs(heights[0] - heights[1]) == pytest.approx(10.0)  # the 1 mV pulse is 10 mm tall
    # T marks: every t peak / t offset fiducial inside a drawn window, none outside.
    expected = 0
    for col, leads in enumerate([["I", "II", "III"], ["aVR", "aVL", "aVF"], ["V1", "V2", "V3"], ["V4", "V5", "V6"]]):
        lo, hi = col * 2.5 * record.fs, (col + 1) * 2.5 * record.fs
        for lead in leads:
            expected += sum(lo <= b[k] < hi for b in analysis["leads"][lead]["beats"] for k in ("t_peak", "t_offset")
                            if b[k] is not None)
    expected += sum(b[k] is not None for b in analysis["leads"]["II"]["beats"] for k in ("t_peak", "t_offset"))
    assert int(root.get("data-t-marks")) == expected > 20
    labels = {t.text for t in root.findall(".//s:text", NS) if "lead-twi" in (t.get("class") or "")}
    assert labels == {"I (TWI)", "aVL (TWI)"}


def test_few_leads_are_drawn_as_strips_and_bad_signals_refused(lvh):
    _, signal, _ = lvh
    two = {**signal, "leads": {k: signal["leads"][k] for k in ("II", "aVF")}, "derived": ["aVF"],
           "flagged": {"II": [[100, 150]]}}
    root = ET.fromstring(render_ecg(two))
    assert root.get("height") == "70mm" and len(root.findall(".//s:polyline", NS)) == 2
    shaded = root.find(".//s:rect[@class='flagged']", NS)
    assert float(shaded.get("width")) == pytest.approx(50 / signal["fs"] * MM_PER_S)  # 0.5 s at 100 Hz: 12.5 mm
    assert "aVF (derived)" in {t.text for t in root.findall(".//s:text", NS)}
    with pytest.raises(SignalError):
        render_ecg({"fs": 500, "dtype": "float32", "leads": {}})
    with pytest.raises(SignalError):
        render_ecg({"fs": 500, "leads": {"I": "not base64!"}})
    odd = {"fs": 500, "leads": {"I": base64.b64encode(b"\x01\x02\x03").decode()}}
    with pytest.raises(SignalError):
        render_ecg(odd)


def test_episode_trend_shows_baseline_and_span():
    points = [{"t": f"2024-05-01T10:{m:02d}:00Z", "lead": {"V5": {"t_mv": 0.3 - 0.01 * m, "st_j60_mv": 0.0,
                                                                  "quality": "ok"}}} for m in range(40)]
    episode = {"episode_id": "e1", "state": "resolved", "start": "2024-05-01T10:10:00Z",
               "end": "2024-05-01T10:30:00Z", "leads": ["V5"], "baseline_mv": {"V5": 0.3}, "trend": points}
    root = ET.fromstring(render_trend(episode))
    span = root.find(".//s:rect[@class='episode-span']", NS)
    assert float(span.get("width")) == pytest.approx(240 * 20 / 39, rel=1e-3)
    assert root.find(".//s:path[@class='trend-baseline']", NS) is not None
    assert len(_points(root.find(".//s:polyline", NS))) == 40


def test_claims_and_times():
    lines = ["3 claims checked: 1 supported, 1 contradicted, 1 unverifiable",
             "CONTRADICTED: T inverted in V1 (V1: T +0.15 mV, positive)", "supported: T inverted in I, aVL",
             "unverifiable: no ST elevation"]
    claims = reasoning_claims({"cross_check": lines})
    assert [(c["text"], c["verdict"]) for c in claims] == [
        ("T inverted in V1", "contradicted"), ("T inverted in I, aVL", "supported"),
        ("no ST elevation", "unverifiable")]
    assert claims[0]["evidence"] == "V1: T +0.15 mV, positive"
    assert local_time("2024-05-01T10:00:00Z", "Europe/Berlin") == "2024-05-01 12:00:00 CEST (UTC+02:00)"
    assert local_time("2024-01-01T10:00:00+00:00", "America/New_York") == "2024-01-01 05:00:00 EST (UTC-05:00)"
