"""The per-bed episode machine (engine/monitor/episodes.py) on trend points of real windows from samples/.

The stream: PTB-XL patient 361's ECG 1809 (T upright or flat in V4-V6) repeated as the baseline, then the same
patient's ECG 1844 (T newly inverted in V4 and V5), each window a different rotation of the strip so that windows
straddle the joins as epoch-aligned monitor windows do."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from engine.monitor import (
    EpisodeEvent,
    MonitorRules,
    TrendPoint,
    analyse_window,
    annotated,
    baseline_from_prior,
    close_for_patient_change,
    new_state,
    silence,
    step,
)
from engine.record import make_record
from tests.support.records import load_wfdb, ptbxl_path

R = MonitorRules()
T0 = 1_700_000_000.0  # epoch seconds, a multiple of 10


def _variants(eid: int, leads: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None, n: int = 4):
    rec = load_wfdb(ptbxl_path(eid), f"ptbxl-{eid}")
    idx = [rec.leads.index(x) for x in (leads or rec.leads)]
    out = []
    for k in range(n):
        sig = np.roll(rec.signal[idx], -int(k * 0.29 * rec.n_samples), axis=1)
        w = make_record(sig, list(names or leads or rec.leads), rec.fs, "x", kind="chunk")
        out.append((analyse_window(w), dict(w.lead_marks)))
    return out


@pytest.fixture(scope="module")
def twelve():
    lost = {n: TrendPoint(n, "not-analysable", ("sender flagged 100% of samples (saturation/invalid)",))
            for n in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")}
    return {"before": _variants(1809), "after": _variants(1844), "lost": [(lost, {})]}


@pytest.fixture(scope="module")
def monitor4():
    kw = {"leads": ("I", "II", "III", "V5"), "names": ("I", "II", "III", "V")}
    return {"before": _variants(1809, **kw), "after": _variants(1844, **kw)}


class Bed:
    """Feeds windows in order, 10 s apart, and collects events."""

    def __init__(self, state=None, t=T0, rules=R):
        self.state, self.t, self.rules, self.events = state or new_state(rules), t, rules, []

    def feed(self, variants, count: int) -> list[EpisodeEvent]:
        got = []
        for i in range(count):
            pts, marks = variants[i % len(variants)]
            self.state, ev = step(self.state, self.t, pts, marks, self.rules)
            got += ev
            self.t += self.rules.window_s
        self.events += got
        return got

    def skip(self, seconds: float) -> None:
        self.t += seconds


def _baseline(bed: Bed, variants) -> None:
    assert bed.feed(variants, 30) == []


def _open(bed: Bed, s) -> EpisodeEvent:
    _baseline(bed, s["before"])
    ev = bed.feed(s["after"], 6)
    assert [e.kind for e in ev] == ["opened"]
    return ev[0]


def test_baseline_is_the_median_of_the_first_5_minutes(twelve):
    bed = Bed()
    bed.feed(twelve["before"], 29)
    assert bed.state["baseline"] == {}
    bed.feed(twelve["before"], 1)
    base = bed.state["baseline"]
    v4 = [p["V4"].t_amplitude_mv for p, _ in twelve["before"]]
    assert base["V4"]["source"] == "monitoring"
    assert min(v4) <= base["V4"]["t"] <= max(v4)
    assert "V3" not in base  # never analysable in 1809 (baseline wander): no baseline, never judged
    bed.feed(twelve["after"], 3)
    assert bed.state["baseline"] == base  # fixed once learnt
    assert json.loads(json.dumps(bed.state)) == bed.state


def test_opens_after_60_s_and_not_before(twelve):
    bed = Bed()
    _baseline(bed, twelve["before"])
    first = bed.t
    assert bed.feed(twelve["after"], 5) == []
    ev = bed.feed(twelve["after"], 1)
    assert len(ev) == 1
    e = ev[0]
    assert (e.kind, e.version, e.leads) == ("opened", 1, ("V4", "V5"))
    assert e.episode_start_s == first and e.at_s == first + 50
    assert e.baseline_source == "monitoring (first 5 min)"
    assert 0.2 <= e.depth_mv["V4"] <= 0.3 and 0.15 <= e.depth_mv["V5"] <= 0.25
    assert set(e.baseline_mv) == {"V4", "V5"}
    assert "contiguous" in e.reason
    assert EpisodeEvent.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_unanalysable_windows_pause_the_count_then_reset_it(twelve):
    bed = Bed()
    _baseline(bed, twelve["before"])
    bed.feed(twelve["after"], 3)
    assert bed.feed(twelve["lost"], 12) == []  # 120 s paused: the count survives
    assert [e.kind for e in bed.feed(twelve["after"], 3)] == ["opened"]

    bed = Bed()
    _baseline(bed, twelve["before"])
    bed.feed(twelve["after"], 3)
    bed.feed(twelve["lost"], 13)  # 130 s: reset
    assert bed.feed(twelve["after"], 5) == []
    assert [e.kind for e in bed.feed(twelve["after"], 1)] == ["opened"]

    bed = Bed()
    _baseline(bed, twelve["before"])
    bed.feed(twelve["after"], 5)
    bed.skip(60)  # missing windows pause too
    assert [e.kind for e in bed.feed(twelve["after"], 1)] == ["opened"]


def test_an_analysable_window_without_the_change_resets_the_count(twelve):
    bed = Bed()
    _baseline(bed, twelve["before"])
    bed.feed(twelve["after"], 5)
    bed.feed(twelve["before"], 1)
    assert bed.feed(twelve["after"], 5) == []
    assert [e.kind for e in bed.feed(twelve["after"], 1)] == ["opened"]


def test_closes_after_60_s_back_within_0_05_mv(twelve):
    bed = Bed()
    opened = _open(bed, twelve)
    bed.feed(twelve["after"], 3)
    assert bed.feed(twelve["before"], 5) == []
    ev = bed.feed(twelve["before"], 1)
    assert [e.kind for e in ev] == ["resolved"]
    assert ev[0].version == 2 and ev[0].episode_start_s == opened.episode_start_s
    assert ev[0].reason == "back within 0.05 mV of baseline for 60 s"
    assert all(d <= 0.05 for d in ev[0].depth_mv.values())


def test_signal_lost_after_2_minutes_of_silence(twelve):
    bed = Bed()
    _open(bed, twelve)
    last_end = bed.t  # end of the last window
    st, ev = silence(bed.state, last_end + 119, R)
    assert ev == [] and st is bed.state
    st, ev = silence(bed.state, last_end + 300, R)
    lost = [("resolved", last_end + 120, "signal lost: no window for 120 s")]
    assert [(e.kind, e.at_s, e.reason) for e in ev] == lost
    assert silence(st, last_end + 400, R)[1] == []  # once
    # the same silence seen by the next window instead of a timer gives the same event
    bed2 = Bed()
    _open(bed2, twelve)
    bed2.skip(300)
    ev2 = bed2.feed(twelve["after"], 1)
    assert ev2[0] == ev[0]


def test_refractory_period_before_the_same_leads_open_again(twelve):
    bed = Bed()
    _open(bed, twelve)
    resolved = bed.feed(twelve["before"], 6)[-1]
    assert resolved.kind == "resolved"
    # inverted again at once: nothing while the leads are refractory (5 min), then the 60-s persistence
    ev = bed.feed(twelve["after"], 30)
    assert ev == []
    ev = bed.feed(twelve["after"], 6)
    assert [e.kind for e in ev] == ["opened"]
    assert ev[0].episode_start_s == resolved.at_s + R.refractory_s


def _deeper(variants, lead: str, by: float):
    return [({**p, lead: dataclasses.replace(p[lead], t_amplitude_mv=p[lead].t_amplitude_mv - by)}, m)
            for p, m in variants]


def test_versions_only_on_material_change_and_at_most_one_update_per_5_minutes(twelve):
    bed = Bed()
    opened = _open(bed, twelve)
    same = bed.feed(twelve["after"], 40)  # unchanged for 400 s: no update
    assert same == []
    deeper = _deeper(twelve["after"], "V4", 0.1)
    ev = bed.feed(deeper, 6)
    assert [(e.kind, e.version) for e in ev] == [("updated", 2)]
    assert "V4" in ev[0].reason and ev[0].depth_mv["V4"] >= opened.depth_mv["V4"] + 0.05
    # another material change within 5 min of the update waits for the interval
    deepest = _deeper(twelve["after"], "V4", 0.25)
    updates = bed.feed(deepest, 30)
    assert [(e.kind, e.version) for e in updates] == [("updated", 3)]
    assert updates[0].at_s - ev[0].at_s >= R.min_update_interval_s
    # resolution is always reported, even right after an update
    bed.feed(deeper, 20)  # material again (shallower by 0.15 mV), but within 5 min of the last update
    res = bed.feed(twelve["before"], 6)
    assert [(e.kind, e.version) for e in res] == [("resolved", 4)]
    assert res[0].at_s - updates[0].at_s < R.min_update_interval_s


def test_a_reading_added_is_one_version_outside_the_update_interval(twelve):
    """A reasoning model's reading (stream/monitor/stage.py on_reasoned): the next version at once, with the current
    leads and depths; it neither waits for nor restarts the 5-minute interval of measured updates."""
    bed = Bed()
    opened = _open(bed, twelve)
    bed.feed(twelve["after"], 2)
    assert annotated(bed.state, opened.episode_start_s + 10, bed.t, "reading") == (bed.state, None)  # not this one
    state, ev = annotated(bed.state, opened.episode_start_s, bed.t - R.window_s, "reading added")
    assert (ev.kind, ev.version, ev.leads, ev.reason) == ("updated", 2, opened.leads, "reading added")
    assert state["episode"]["last_event_s"] == opened.at_s and bed.state["episode"]["version"] == 1  # a copy
    bed.state = state
    ev = bed.feed(_deeper(twelve["after"], "V4", 0.1), 30)
    assert [(e.kind, e.version) for e in ev] == [("updated", 3)]
    assert ev[0].at_s - opened.at_s == R.min_update_interval_s  # on the measured updates' own schedule
    res = bed.feed(twelve["before"], 6)
    assert [e.kind for e in res] == ["resolved"] and annotated(bed.state, opened.episode_start_s, bed.t, "x")[1] is None


def test_a_new_lead_joining_is_a_material_change(twelve):
    bed = Bed()
    opened = _open(bed, twelve)
    joined = [({**p, "V6": dataclasses.replace(p["V6"], t_amplitude_mv=-0.2, t_polarity="inverted")}, m)
              for p, m in twelve["after"]]
    ev = bed.feed(joined, 30)
    assert [e.kind for e in ev] == ["updated"]
    assert ev[0].leads == ("V4", "V5", "V6") and "joined: V6" in ev[0].reason
    assert ev[0].at_s - opened.at_s == R.min_update_interval_s  # joined at once, reported when allowed


def test_patient_change_closes_and_starts_a_new_baseline(twelve):
    bed = Bed()
    opened = _open(bed, twelve)
    st, ev = close_for_patient_change(bed.state, bed.t)
    assert [(e.kind, e.version, e.reason) for e in ev] == [("resolved", 2, "patient changed on this bed")]
    assert ev[0].episode_start_s == opened.episode_start_s
    assert st["baseline"] == {} and st["episode"] is None
    bed.state = st
    assert bed.feed(twelve["after"], 35) == []  # the new patient's baseline is their inverted T
    assert close_for_patient_change(bed.state, bed.t)[1] == []


def test_restart_recomputes_the_same_windows_and_state_round_trips(twelve):
    seq = [twelve["before"]] * 30 + [twelve["after"]] * 10 + [twelve["before"]] * 8
    flat = [v[i % len(v)] for i, v in enumerate(seq)]
    st = new_state(R)
    snapshots, events = [], []
    for i, (pts, marks) in enumerate(flat):
        st, ev = step(st, T0 + 10 * i, pts, marks, R)
        events += ev
        snapshots.append(json.dumps(st))
    assert [e.kind for e in events] == ["opened", "resolved"]
    # a restart from the changelog at window 33 replays everything from window 0: old windows are ignored
    st2 = json.loads(snapshots[33])
    replayed = []
    for i, (pts, marks) in enumerate(flat):
        st2, ev = step(st2, T0 + 10 * i, {k: p.to_dict() for k, p in pts.items()}, marks, R)
        replayed += ev
    assert replayed == [e for e in events if e.at_s > T0 + 330]
    assert json.dumps(st2) == snapshots[-1]
    assert step(st2, T0, flat[0][0], {}, R) == (st2, [])


def test_a_single_unknown_position_lead_opens_alone(monitor4):
    bed = Bed()
    _baseline(bed, monitor4["before"])
    ev = bed.feed(monitor4["after"], 6)
    assert [(e.kind, e.leads) for e in ev] == [("opened", ("V",))]
    assert "unknown-position" in ev[0].reason


def test_a_named_limb_lead_alone_cannot_open_when_its_neighbour_is_analysable(twelve):
    iii = [({**p, "III": dataclasses.replace(p["III"], t_amplitude_mv=-0.25, t_polarity="inverted")}, m)
           for p, m in twelve["before"]]
    bed = Bed()
    _baseline(bed, twelve["before"])
    assert bed.feed(iii, 20) == []  # aVF (its neighbour) present, analysable and upright
    # on a single-lead stream the same change in that one lead opens
    solo_before = [({"II": p["II"]}, m) for p, m in twelve["before"]]
    solo_after = [({"II": dataclasses.replace(p["II"], t_amplitude_mv=-0.25, t_polarity="inverted")}, m)
                  for p, m in twelve["before"]]
    bed = Bed()
    _baseline(bed, solo_before)
    ev = bed.feed(solo_after, 6)
    assert [(e.kind, e.leads) for e in ev] == [("opened", ("II",))] and "single monitored lead" in ev[0].reason


def test_prior_12_lead_baseline(twelve):
    prior = {"lead_t": {n: {"polarity": "positive", "amplitude_mv": p.t_amplitude_mv, "quality": "ok"}
                        for n, p in twelve["before"][0][0].items() if p.ok}}
    base = baseline_from_prior(prior)
    st = new_state(R, prior=base, prior_label="1992-06-30", prior_time_s=T0 - 86400)
    bed = Bed(st)
    ev = bed.feed(twelve["after"], 6)  # no 5-minute wait: the chest leads have the prior as baseline
    assert [e.kind for e in ev] == ["opened"]
    assert ev[0].baseline_source == "prior 12-lead ECG of 1992-06-30"
    assert bed.state["baseline"]["V4"]["source"] == "prior"
    assert "II" not in bed.state["baseline"]  # limb leads: monitoring baseline (electrode placement differs)
    old = new_state(R, prior=base, prior_label="1992-06-30", prior_time_s=T0 - 30 * 86400)
    assert Bed(old).feed(twelve["after"], 6) == []  # too old: monitoring baseline only


def test_a_newly_inverted_lead_next_to_a_lead_inverted_before_opens(twelve):
    # aVF inverted all along, III inverting now: the aVF-III group meets the criterion now and did not at baseline,
    # "new" as for strips (docs/SPEC.md §4.5); only III, what changed, is the episode's lead.
    def inverted(pairs, **mv):
        return [({**p, **{n: dataclasses.replace(p[n], t_amplitude_mv=v, t_polarity="inverted")
                          for n, v in mv.items()}}, m) for p, m in pairs]

    bed = Bed()
    _baseline(bed, inverted(twelve["before"], aVF=-0.2))
    ev = bed.feed(inverted(twelve["before"], aVF=-0.2, III=-0.25), 6)
    assert [(e.kind, e.leads) for e in ev] == [("opened", ("III",))]
    assert "contiguous with a lead inverted before (aVF)" in ev[0].reason
    # the neighbour must be inverted now, not only at baseline
    bed = Bed()
    _baseline(bed, inverted(twelve["before"], aVF=-0.2))
    assert bed.feed(inverted(twelve["before"], aVF=-0.04, III=-0.25), 20) == []


def test_the_monitoring_baseline_is_named_with_its_length(twelve):
    rules = dataclasses.replace(R, baseline_s=150.0)
    bed = Bed(new_state(rules), rules=rules)
    assert bed.feed(twelve["before"], 15) == []
    ev = bed.feed(twelve["after"], 6)
    assert [e.kind for e in ev] == ["opened"] and ev[0].baseline_source == "monitoring (first 150 s)"
