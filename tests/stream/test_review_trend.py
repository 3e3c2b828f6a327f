"""The reviewers' trend the monitor stage keeps per bed (stream/monitor/stage.py review_step): the baseline period
and the episode, bounded at 720 points however long the episode lasts, in time order, small values."""
from __future__ import annotations

import json

import numpy as np

from engine.monitor.episodes import MonitorRules
from integrations.review.analysis_message import MAX_TREND_POINTS, trend_points
from stream.monitor.stage import fresh_review, review_step, review_trend

LEADS = ("I", "II", "V2")
T0 = 1_700_000_000.0


def _run(windows: int, opens_at: int, rules: MonitorRules) -> dict:
    review, trend = fresh_review(), {"t_s": [], "leads": {lead: [] for lead in LEADS}}
    for k in range(windows):
        trend["t_s"].append(T0 + 10 * k)
        for lead in LEADS:
            trend["leads"][lead].append([0.2 - 1e-4 * k + 1e-9, None if lead == "V2" else 0.01, lead != "I"])
        # the engine keeps its last trend_points windows
        trend = {"t_s": trend["t_s"][-rules.trend_points:],
                 "leads": {n: c[-rules.trend_points:] for n, c in trend["leads"].items()}}
        after = {"trend": trend, "episode": {"start_s": T0} if k >= opens_at else None}
        review = review_step(review, after, [], rules)
    return review


def test_a_long_episode_keeps_the_baseline_period_and_its_whole_span_within_720_points():
    rules = MonitorRules()
    review = _run(4000, 200, rules)  # 11 h of 10-s windows, the episode open from window 200
    merged = review_trend(review)
    times = merged["t_s"]
    assert len(review["baseline"]["t_s"]) == rules.baseline_windows == 30
    assert len(times) <= MAX_TREND_POINTS and times == sorted(set(times))
    assert times[:30] == [T0 + 10 * k for k in range(30)]  # the baseline period, whole
    assert times[30] == T0 + 10 * (200 - rules.trend_points + 1)  # the run-up the engine still had at opening
    assert times[-1] == T0 + 10 * 3999  # the newest window
    assert len(json.dumps(review)) < 60_000  # 3 leads: what the table entry carries
    points = trend_points(merged)
    assert len(points) == len(times)
    assert points[0]["lead"]["I"] == {"t_mv": 0.2, "st_j60_mv": 0.01, "quality": "not-analysable"}
    assert points[-1]["lead"]["V2"]["st_j60_mv"] is None and points[-1]["lead"]["V2"]["quality"] == "ok"


def test_no_episode_no_episode_trend_and_a_short_one_is_whole():
    rules = MonitorRules()
    assert _run(100, 10**9, rules)["episode"] is None
    review = _run(150, 100, rules)  # the run-up the engine holds at opening (90 windows) meets the baseline
    times = review_trend(review)["t_s"]
    assert np.all(np.diff(times) == 10.0) and times[0] == T0 and times[-1] == T0 + 10 * 149
