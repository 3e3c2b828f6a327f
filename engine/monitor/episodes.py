"""Per-bed T-wave inversion episodes against the patient's own baseline (docs/SPEC.md §11.8, §4).

Monitors alarm on a per-lead trend against a reference from the same patient, after the change has persisted, with
hysteresis, and raise one event per episode (§11.8); twiwatch does the same for new T inversion:

* **Trend.** Every analysable window adds a point per lead (engine/monitor/window.py).
* **Baseline** per lead: the median T amplitude (and ST at J+60 ms) of that lead's first `baseline_s` worth of
  analysable windows (30 windows of 10 s) for this patient on this bed, source "monitoring (first 5 min)"; or, when
  the caller passes one, the patient's most recent prior 12-lead ECG no older than `prior_max_age_s` at the first
  window, source "prior 12-lead ECG of <date>". The prior serves only the named chest leads V1..V6 by default:
  monitors place limb electrodes on the torso (Mason-Likar), which shifts limb-lead amplitudes and axis against a
  resting ECG, so limb leads keep the monitoring baseline unless `prior_limb_leads`; approximated (MCL1) and
  unknown-position (V, ECG) leads always do. Each event says which source its leads use.
* **Candidate lead**: analysable, its T now inverted (<= -0.05 mV, the engine's flat limit), and either its
  baseline was upright or flat (>= -0.05 mV) and the T is now more than `depth_mv` below the isoelectric level, or
  the T has fallen by at least `depth_mv` below its baseline into inversion. A baseline that already met the
  criterion (inverted by more than `depth_mv`) never makes a candidate: nothing new can be claimed there; one
  inverted by less (a flat T measured at -0.06 mV, say) needs the full fall. aVR never counts (§4.1). A biphasic T
  counts by its dominant lobe.
* **Qualifying window**: a candidate with a contiguous candidate neighbour (§4.2: aVL-I, II-aVF, aVF-III, Vn-Vn+1;
  an approximated lead is analysed as the lead it stands for), or a candidate of unknown position (its own baseline
  only, never contiguous with anything), or a candidate on a single-lead stream (one independent ECG lead with a
  baseline: limb leads count as at most two, III and the augmented leads being combinations of I and II).
* **Opening**: `persistence_s` (60 s) of qualifying windows. A window that can judge the pending leads (one of them
  analysable) and does not qualify resets the count; windows where none of them is analysable, and missing
  windows, pause it for up to `pause_max_s` (2 min), after which it resets.
* **Closing**: every analysable lead of the episode back within `close_within_mv` (0.05 mV) of its baseline for
  `close_persist_s` (60 s) (pauses as above; a deeper window resets it), or `silence_s` (2 min) without windows
  ("signal lost"; also when the episode's leads stay unanalysable that long). Those leads then cannot open a new
  episode for `refractory_s` (5 min).
* **Versions**: "opened" is version 1; "updated" only on material change (a lead joins, a depth moves by
  `material_depth_mv` since the last report) and at most once per `min_update_interval_s`; "resolved" always.
  Reported depths are medians over the last `depth_window_s` of analysable windows, so one window does not move them.
  A reasoning model's reading of the opening window is a material change too (`annotated`): one version, whenever
  it arrives, that neither waits for nor restarts the update interval (it comes once per episode).

The state is a JSON-ready dict (it lives in faust tables / Kafka changelogs) and bounded: at most `trend_points`
trend points per lead, baseline accumulation up to its window count, a few recent values per lead.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.record import (
    MARK_UNKNOWN_POSITION,
    UNKNOWN_CHEST_LEAD,
    UNKNOWN_ECG_LEAD,
    lead_order,
)

STATE_SCHEMA = 1
FLAT_MV = 0.05  # engine/measure.py FLAT_MV: below this a T wave is flat, neither upright nor inverted
LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL_LEADS = ("V1", "V2", "V3", "V4", "V5", "V6")
# docs/SPEC.md §4.2: neighbours in the Cabrera sequence (aVL, I, -aVR, II, aVF, III; aVR never counts, so I-II are
# not neighbours) and in V1..V6.
CONTIGUOUS: dict[str, frozenset[str]] = {}
for _a, _b in [("aVL", "I"), ("II", "aVF"), ("aVF", "III")] + [(f"V{i}", f"V{i + 1}") for i in range(1, 6)]:
    CONTIGUOUS[_a] = CONTIGUOUS.get(_a, frozenset()) | {_b}
    CONTIGUOUS[_b] = CONTIGUOUS.get(_b, frozenset()) | {_a}
EPS = 1e-6


@dataclass(frozen=True)
class MonitorRules:
    window_s: float = 10.0
    baseline_s: float = 300.0
    persistence_s: float = 60.0
    pause_max_s: float = 120.0
    depth_mv: float = 0.1
    close_within_mv: float = 0.05
    close_persist_s: float = 60.0
    silence_s: float = 120.0
    refractory_s: float = 300.0
    material_depth_mv: float = 0.05
    min_update_interval_s: float = 300.0
    prior_max_age_s: float = 7 * 86400.0
    prior_limb_leads: bool = False  # use the prior 12-lead ECG for limb leads too (see the module docstring)
    depth_window_s: float = 60.0  # reported depths: median over this much of the lead's recent analysable windows
    trend_points: int = 90  # trend history kept per lead (15 min of 10-s windows)

    @property
    def baseline_windows(self) -> int:
        return max(1, int(round(self.baseline_s / self.window_s)))

    @property
    def recent_windows(self) -> int:
        return max(1, int(round(self.depth_window_s / self.window_s)))


@dataclass(frozen=True)
class EpisodeEvent:
    kind: str  # "opened" | "updated" | "resolved"
    episode_start_s: float  # epoch s of the first window of the persistence run that opened the episode
    at_s: float  # epoch s of the window (or the silence) that produced the event
    leads: tuple[str, ...]
    depth_mv: dict[str, float]  # current depth below baseline per lead (positive = below)
    baseline_source: str  # "monitoring (first 5 min)" | "prior 12-lead ECG of <date>" | both, each with its leads
    baseline_mv: dict[str, float]
    reason: str
    version: int  # 1 for opened, +1 per update/resolution

    def to_dict(self) -> dict:
        d = asdict(self)
        d["leads"] = list(self.leads)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EpisodeEvent:
        return cls(**{**d, "leads": tuple(d["leads"])})


def baseline_from_prior(summary: Any) -> dict[str, float]:
    """T amplitudes of the analysable leads of a prior strip's summary (engine.result.PriorSummary or its dict), the
    `prior` that new_state takes."""
    lead_t = summary.get("lead_t") if isinstance(summary, Mapping) else summary.lead_t
    out = {}
    for lead, e in (lead_t or {}).items():
        if e and e.get("quality") == "ok" and e.get("amplitude_mv") is not None:
            out[lead] = float(e["amplitude_mv"])
    return out


def new_state(rules: MonitorRules, *, prior: dict[str, float] | None = None, prior_label: str | None = None,
              prior_time_s: float | None = None) -> dict:
    """A bed's state for a new patient. `prior`: lead -> T amplitude (mV) of the patient's most recent prior
    12-lead ECG (baseline_from_prior), `prior_label` its date as shown in events; with `prior_time_s` (epoch s of
    its acquisition) a prior older than rules.prior_max_age_s at the first window is not used."""
    return {
        "schema": STATE_SCHEMA,
        # the rules travel with each call; the baseline's length is kept only to name it in events
        "baseline_s": float(rules.baseline_s),
        "last_window_s": None,
        "prior": ({"t": {k: float(v) for k, v in prior.items()}, "label": prior_label or "unknown date",
                   "time_s": prior_time_s, "used": None} if prior else None),
        "baseline": {},  # lead -> {"t": mV, "st": mV | None, "source": "monitoring" | "prior"}
        "accum": {},  # lead -> {"t": [...], "st": [...]} until the lead's baseline is fixed
        "recent": {},  # lead -> last few analysable T amplitudes
        "pending": None,  # {"start_s", "qual_s", "paused_s", "leads"}
        "episode": None,
        "refractory": {},  # lead -> epoch s until which it cannot open a new episode
        "silenced": False,
        "trend": {"t_s": [], "leads": {}},  # columnar: leads -> [[t_mv, st_mv, ok] | None] aligned with t_s
    }


def step(state: dict, window_start_s: float, points: Mapping[str, Any], lead_marks: Mapping[str, str],
         rules: MonitorRules) -> tuple[dict, list[EpisodeEvent]]:
    """One window (points from analyse_window, lead_marks from the window's record). Windows arrive in order; a
    window at or before the last processed one is ignored, so a restart that recomputes windows changes nothing."""
    ws = float(window_start_s)
    last = state.get("last_window_s")
    if last is not None and ws <= last + EPS:
        return state, []
    st = _copy(state)
    events: list[EpisodeEvent] = []
    pts = {k: (p if hasattr(p, "quality") else _point(p)) for k, p in points.items()}
    if last is not None:
        gap = ws - (last + rules.window_s)
        if gap >= rules.silence_s - EPS:
            st, lost = silence(st, last + rules.window_s + rules.silence_s, rules)
            events += lost
        if gap > EPS:
            _pause(st, gap, rules)
    else:
        _check_prior(st, ws, rules)
    st["silenced"] = False
    st["last_window_s"] = ws

    ok = {n: p for n, p in pts.items() if p.quality == "ok" and p.t_amplitude_mv is not None}
    _learn_baseline(st, ok, lead_marks, rules)
    _trend(st, ws, pts, rules)
    for n, p in ok.items():
        rec = st["recent"].setdefault(n, [])
        rec.append(round(float(p.t_amplitude_mv), 4))
        del rec[:-rules.recent_windows]

    base = st["baseline"]
    cand = {n for n, p in ok.items() if n in base and _is_candidate(n, p.t_amplitude_mv, base[n]["t"], rules)
            and st["refractory"].get(n, -1e300) <= ws}
    inverted = {n for n, p in ok.items() if n in base and n != "aVR" and p.t_amplitude_mv < -rules.depth_mv - EPS}
    qualifying = _qualifying(cand, inverted, pts, base, lead_marks)

    ep = st["episode"]
    if ep is None:
        opened = _pending_step(st, ws, qualifying, ok, rules)
        if opened is not None:
            events.append(opened)
    else:
        events += _episode_step(st, ws, qualifying, ok, rules)
    return st, events


def silence(state: dict, now_s: float, rules: MonitorRules) -> tuple[dict, list[EpisodeEvent]]:
    """Close an open episode as "signal lost" when no window came for rules.silence_s (the event is dated at the
    end of the last window + silence_s, so repeated calls and replays give the same event). Drops a pending count."""
    last = state.get("last_window_s")
    if last is None or state.get("silenced"):
        return state, []
    lost_at = last + rules.window_s + rules.silence_s
    if now_s + EPS < lost_at:
        return state, []
    st = _copy(state)
    st["silenced"] = True
    st["pending"] = None
    events = []
    if st["episode"] is not None:
        events.append(_resolve(st, lost_at, f"signal lost: no window for {rules.silence_s:g} s", rules))
    return st, events


def close_for_patient_change(state: dict, at_s: float) -> tuple[dict, list[EpisodeEvent]]:
    """A different patient on the bed: resolve the open episode (if any) at `at_s` and return a fresh state (new
    baseline, no prior: to use the new patient's prior, build new_state(..., prior=...) and keep these events).
    Windows at or before the last one processed stay ignored."""
    events = []
    ep = state.get("episode")
    if ep is not None:
        st = _copy(state)
        events.append(_event(st, "resolved", float(at_s), "patient changed on this bed", ep["version"] + 1))
    fresh = new_state(MonitorRules())
    fresh["last_window_s"] = state.get("last_window_s")
    return fresh, events


def annotated(state: dict, episode_start_s: float, at_s: float, reason: str) -> tuple[dict, EpisodeEvent | None]:
    """The next version of the open episode's report for something added beside the measurements (a reasoning
    model's reading): current leads and depths, "updated", version + 1. The update interval is not restarted, so a
    measured change still goes out on its own schedule. (state, None) when the episode named is not the open one."""
    ep = state.get("episode")
    if ep is None or abs(float(ep["start_s"]) - float(episode_start_s)) > EPS:
        return state, None
    st = _copy(state)
    ep = st["episode"]
    ep["version"] += 1
    ev = _event(st, "updated", float(at_s), reason, ep["version"])
    ep["reported"] = dict(ev.depth_mv)
    return st, ev


# ---------------------------------------------------------------------------------------------------------------


def _copy(state: dict) -> dict:
    return json.loads(json.dumps(state))


def _point(d: Mapping[str, Any]):
    from engine.monitor.window import TrendPoint

    return TrendPoint.from_dict(dict(d))


def _check_prior(st: dict, ws: float, rules: MonitorRules) -> None:
    prior = st.get("prior")
    if not prior or prior.get("used") is not None:
        return
    t0 = prior.get("time_s")
    usable = t0 is None or (t0 <= ws + EPS and ws - t0 <= rules.prior_max_age_s)
    prior["used"] = bool(usable)  # its leads take their baseline from it when they first appear analysable


def _learn_baseline(st: dict, ok: Mapping[str, Any], marks: Mapping[str, str], rules: MonitorRules) -> None:
    base, acc = st["baseline"], st["accum"]
    prior = st.get("prior") if (st.get("prior") or {}).get("used") else None
    for n, p in ok.items():
        if n in base:
            continue
        if prior and n in prior["t"] and marks.get(n) is None and (
                n in PRECORDIAL_LEADS or (rules.prior_limb_leads and n in LIMB_LEADS)):
            base[n] = {"t": float(prior["t"][n]), "st": None, "source": "prior"}
            continue
        a = acc.setdefault(n, {"t": [], "st": []})
        a["t"].append(float(p.t_amplitude_mv))
        if p.st_j60_mv is not None:
            a["st"].append(float(p.st_j60_mv))
        if len(a["t"]) >= rules.baseline_windows:
            base[n] = {"t": round(_median(a["t"]), 4), "st": round(_median(a["st"]), 4) if a["st"] else None,
                       "source": "monitoring"}
            del acc[n]


def _trend(st: dict, ws: float, pts: Mapping[str, Any], rules: MonitorRules) -> None:
    tr = st["trend"]
    n_old = len(tr["t_s"])
    tr["t_s"].append(ws)
    for n in pts:
        tr["leads"].setdefault(n, [None] * n_old)
    for n, col in tr["leads"].items():
        p = pts.get(n)
        col.append(None if p is None else [p.t_amplitude_mv, p.st_j60_mv, p.quality == "ok"])
    keep = rules.trend_points
    if len(tr["t_s"]) > keep:
        del tr["t_s"][:-keep]
        for n in list(tr["leads"]):
            col = tr["leads"][n]
            del col[:-keep]
            if all(v is None for v in col):
                del tr["leads"][n]


def _is_candidate(lead: str, t: float, b: float, rules: MonitorRules) -> bool:
    if lead == "aVR" or b < -rules.depth_mv - EPS or t > -FLAT_MV:
        return False
    fallen = (b - t) >= rules.depth_mv - EPS
    return fallen or (b >= -FLAT_MV - EPS and t < -rules.depth_mv - EPS)


def _kind(lead: str, marks: Mapping[str, str]) -> str:
    if marks.get(lead) == MARK_UNKNOWN_POSITION or lead in (UNKNOWN_CHEST_LEAD, UNKNOWN_ECG_LEAD):
        return "unknown"
    if lead in LIMB_LEADS:
        return "limb"
    if lead in PRECORDIAL_LEADS:
        return "precordial"
    return "other"


def _qualifying(cand: set[str], inverted: set[str], pts: Mapping[str, Any], base: Mapping[str, Any],
                marks: Mapping[str, str]) -> dict[str, str]:
    """Qualifying candidates -> why (the rule that admits each).

    A newly inverted lead (`cand`) next to a lead inverted now (`inverted`, whatever its baseline) qualifies: the
    contiguous group meets the TWI criterion now and did not at baseline, the meaning of "new" for strips too
    (docs/SPEC.md §4.5). Only the newly inverted leads enter the episode, so its depth and closing are judged on
    what changed."""
    if not cand:
        return {}
    present = [n for n in pts if n in base]
    kinds = [_kind(n, marks) for n in present]
    independent = min(2, kinds.count("limb")) + kinds.count("precordial") + kinds.count("unknown")
    out = {}
    for n in cand:
        k = _kind(n, marks)
        neighbours = CONTIGUOUS.get(n, frozenset())
        if k == "unknown":
            out[n] = "unknown-position lead against its own baseline"
        elif independent == 1:
            out[n] = "single monitored lead"
        elif neighbours & cand:
            out[n] = "contiguous leads"
        elif neighbours & inverted:
            out[n] = "contiguous with a lead inverted before (" + ", ".join(_sorted(neighbours & inverted)) + ")"
    return out


def _pause(st: dict, seconds: float, rules: MonitorRules) -> None:
    """Unanalysable or missing signal: pause the opening (or closing) count; past pause_max_s it resets."""
    pend = st["pending"]
    if pend is not None:
        pend["paused_s"] += seconds
        if pend["paused_s"] > rules.pause_max_s + EPS:
            st["pending"] = None
    ep = st["episode"]
    if ep is not None:
        ep["close_paused_s"] += seconds
        ep["dark_s"] += seconds
        if ep["close_paused_s"] > rules.pause_max_s + EPS:
            ep["close_s"] = 0.0


def _pending_step(st: dict, ws: float, qualifying: dict[str, str], ok: Mapping[str, Any],
                  rules: MonitorRules) -> EpisodeEvent | None:
    pend = st["pending"]
    if qualifying:
        if pend is None:
            pend = st["pending"] = {"start_s": ws, "qual_s": 0.0, "paused_s": 0.0, "leads": [], "why": {}}
        pend["qual_s"] += rules.window_s
        pend["paused_s"] = 0.0
        pend["leads"] = _sorted(set(pend["leads"]) | set(qualifying))
        pend["why"].update(qualifying)
        if pend["qual_s"] >= rules.persistence_s - EPS:
            leads = _sorted(set(qualifying) | (set(pend["leads"]) & set(ok)))
            why = sorted({pend["why"][n] for n in leads if n in pend["why"]})
            st["episode"] = {"start_s": pend["start_s"], "leads": leads, "version": 1, "last_event_s": ws,
                             "reported": {}, "close_s": 0.0, "close_paused_s": 0.0, "dark_s": 0.0}
            st["pending"] = None
            reason = (f"T inverted vs baseline (upright/flat before; now > {rules.depth_mv:g} mV below the "
                      f"isoelectric level or >= {rules.depth_mv:g} mV below baseline) in {', '.join(leads)} "
                      f"({'; '.join(why)}) for {rules.persistence_s:g} s")
            ev = _event(st, "opened", ws, reason, 1)
            st["episode"]["reported"] = dict(ev.depth_mv)
            return ev
        return None
    if pend is not None:
        if set(pend["leads"]) & set(ok):  # the pending leads could be judged and no longer qualify
            st["pending"] = None
        else:
            _pause(st, rules.window_s, rules)
    return None


def _episode_step(st: dict, ws: float, qualifying: dict[str, str], ok: Mapping[str, Any],
                  rules: MonitorRules) -> list[EpisodeEvent]:
    ep = st["episode"]
    joined = [n for n in qualifying if n not in ep["leads"]]
    if joined:
        ep["leads"] = _sorted(set(ep["leads"]) | set(joined))
    base = st["baseline"]
    judged = [n for n in ep["leads"] if n in ok and n in base]
    if not judged:
        _pause(st, rules.window_s, rules)
        if ep["dark_s"] >= rules.silence_s - EPS:
            return [_resolve(st, ws, f"signal lost: episode leads not analysable for {rules.silence_s:g} s", rules)]
    else:
        ep["dark_s"] = 0.0
        ep["close_paused_s"] = 0.0
        within = all(base[n]["t"] - float(ok[n].t_amplitude_mv) <= rules.close_within_mv + EPS for n in judged)
        if within:
            ep["close_s"] += rules.window_s
            if ep["close_s"] >= rules.close_persist_s - EPS:
                return [_resolve(st, ws, f"back within {rules.close_within_mv:g} mV of baseline for "
                                         f"{rules.close_persist_s:g} s", rules)]
        else:
            ep["close_s"] = 0.0
    if ws - ep["last_event_s"] < rules.min_update_interval_s - EPS:
        return []
    depth = _depths(st, ep["leads"])
    rep = ep["reported"]
    new_leads = [n for n in ep["leads"] if n not in rep]
    moved = [n for n in ep["leads"] if n in rep and abs(depth[n] - rep[n]) >= rules.material_depth_mv - EPS]
    if not new_leads and not moved:
        return []
    parts = []
    if new_leads:
        parts.append("leads joined: " + ", ".join(new_leads))
    if moved:
        parts.append("depth changed by >= {:g} mV in {}".format(rules.material_depth_mv, ", ".join(moved)))
    ep["version"] += 1
    ep["last_event_s"] = ws
    ev = _event(st, "updated", ws, "; ".join(parts), ep["version"])
    ep["reported"] = dict(ev.depth_mv)
    return [ev]


def _resolve(st: dict, at_s: float, reason: str, rules: MonitorRules) -> EpisodeEvent:
    ep = st["episode"]
    ev = _event(st, "resolved", at_s, reason, ep["version"] + 1)
    for n in ep["leads"]:
        st["refractory"][n] = at_s + rules.refractory_s
    st["refractory"] = {n: t for n, t in st["refractory"].items() if t > at_s}
    st["episode"] = None
    st["pending"] = None
    return ev


def _depths(st: dict, leads: list[str]) -> dict[str, float]:
    base, rec, rep = st["baseline"], st["recent"], (st["episode"] or {}).get("reported", {})
    out = {}
    for n in leads:
        if n in base and rec.get(n):
            out[n] = round(base[n]["t"] - _median(rec[n]), 3)
        elif n in rep:
            out[n] = rep[n]
    return out


def _event(st: dict, kind: str, at_s: float, reason: str, version: int) -> EpisodeEvent:
    ep = st["episode"]
    leads = tuple(ep["leads"])
    base = st["baseline"]
    depth = _depths(st, list(leads))
    return EpisodeEvent(kind=kind, episode_start_s=float(ep["start_s"]), at_s=float(at_s), leads=leads,
                        depth_mv=depth, baseline_source=_source_text(st, leads),
                        baseline_mv={n: round(base[n]["t"], 3) for n in leads if n in base}, reason=reason,
                        version=int(version))


def _source_text(st: dict, leads: tuple[str, ...]) -> str:
    base = st["baseline"]
    prior = [n for n in leads if base.get(n, {}).get("source") == "prior"]
    mon = [n for n in leads if n not in prior]
    span = float(st.get("baseline_s", 300.0))  # states written before it was kept: the default
    label_mon = f"monitoring (first {span / 60:g} min)" if span % 60 == 0 else f"monitoring (first {span:g} s)"
    label_prior = f"prior 12-lead ECG of {(st.get('prior') or {}).get('label', 'unknown date')}"
    if not prior:
        return label_mon
    if not mon:
        return label_prior
    return f"{label_prior} ({', '.join(prior)}); {label_mon} ({', '.join(mon)})"


def _sorted(leads) -> list[str]:
    return sorted(leads, key=lead_order)


def _median(v: list[float]) -> float:
    s = sorted(v)
    n = len(s)
    return float(s[n // 2]) if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])

