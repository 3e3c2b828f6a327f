"""Label checks by eye, blind to the engine (issue: "label checks by eye are done blind to the engine's output").

`make_set` picks the `ood/` records where the engine and the SNOMED labels disagree on TWI or complete RBBB, mixes
them with as many records where they agree (chosen by a hash of the record name, not by their look), shuffles them
and draws each as an anonymous case: the 12 leads as recorded (0.5-Hz high-pass for display only), on a 1 mm grid
at 25 mm/s and 10 mm/mV, with no name, no label and no engine output. The key (case -> record, why it is in the set)
is written apart from the drawings, for the scorer only. A reviewer fills in one judgment per case (template
written beside the drawings); `score` then compares the reviewer with the labels and with the engine.

The questions asked of every case, whatever it was chosen for, so the reviewer cannot tell why a case is there:
- `twi_leads`: the leads with a T wave inverted by at least 1 mm (0.1 mV), [] if none;
- `qrs_ge_120`: QRS at least 120 ms (3 small squares) in the widest leads;
- `rbbb`: "complete" (QRS >= 120 ms with rsR' or a wide notched R in V1/V2 and a wide slurred S in I and V6),
  "incomplete" (the same morphology, QRS under 120 ms), or "no";
- `readable`: false when noise or a missing lead prevents an answer.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.monitor.episodes import CONTIGUOUS
from evaluation.cinc import find_cinc, load_rows, read_record

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
QUESTIONS = {"twi_leads": [], "qrs_ge_120": None, "rbbb": None, "readable": True, "note": ""}


def _rank(name: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()


def choose(twi_rows: list[dict], sec_rows: list[dict], salt: str) -> dict[str, list[str]]:
    """record -> why it is in the set (one or more of: twi-disagree, twi-agree, rbbb-disagree, rbbb-agree)."""
    why: dict[str, list[str]] = {}

    def add(names, reason):
        for n in names:
            why.setdefault(n, []).append(reason)

    called = {r["name"] for r in twi_rows if r["triage"] in ("ischemic-pattern", "indeterminate")}
    negative = [r["name"] for r in twi_rows if r["twi_negative"]]
    labelled = [r["name"] for r in twi_rows if r["twi_label"]]
    twi_off = sorted(n for n in negative if n in called) + sorted(n for n in labelled if n not in called)
    twi_on = sorted(n for n in labelled if n in called)
    twi_on += sorted((n for n in negative if n not in called), key=lambda n: _rank(n, salt))[:len(twi_off)]
    add(twi_off, "twi-disagree")
    add(twi_on, "twi-agree")
    rb_off = sorted(r["name"] for r in sec_rows if r["labels"]["rbbb"] != r["secondary"]["rbbb"])
    rb_on = sorted((r["name"] for r in sec_rows if r["labels"]["rbbb"] == r["secondary"]["rbbb"]),
                   key=lambda n: _rank(n, salt))[:len(rb_off)]
    add(rb_off, "rbbb-disagree")
    add(rb_on, "rbbb-agree")
    return why


def _panel(record, x, fs: float, leads, t0: float, span: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = int(t0 * fs), min(x.shape[1], int((t0 + span) * fs))
    t = t0 + np.arange(b - a) / fs
    fig, axes = plt.subplots(len(leads), 1, figsize=(20, 30), dpi=80)
    for ax, lead in zip(axes, leads, strict=True):
        ax.set_xlim(t0, t0 + span)
        ax.set_ylim(-1.5, 1.5)
        ax.set_xticks(np.arange(t0, t0 + span + 1e-3, 0.2))
        ax.set_xticks(np.arange(t0, t0 + span + 1e-3, 0.04), minor=True)
        ax.set_yticks(np.arange(-1.5, 1.501, 0.5))
        ax.set_yticks(np.arange(-1.5, 1.501, 0.1), minor=True)
        ax.grid(which="major", color="#f4a0a0", linewidth=0.8)
        ax.grid(which="minor", color="#fbdede", linewidth=0.4)
        ax.tick_params(labelbottom=False, labelleft=False, length=0)
        if lead in record.leads:
            ax.plot(t, np.clip(x[record.leads.index(lead), a:b], -1.5, 1.5), color="black", linewidth=1.0)
        ax.text(t0 + span * 0.005, 1.15, lead if lead in record.leads else f"{lead} (absent)", fontsize=18,
                weight="bold")
    fig.suptitle(title + "; small square 40 ms x 0.1 mV, large square 200 ms x 0.5 mV", fontsize=16)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw(record, cases_dir: Path, case: str) -> None:
    """Three drawings of one case: all 12 leads over 10 s, then limb and chest leads over 3 s (3.5-6.5 s, a fixed
    stretch, not chosen by content) at a scale where a 1-mm T wave and a 120-ms QRS can be read."""
    from scipy.signal import butter, sosfiltfilt

    fs = record.fs
    x = sosfiltfilt(butter(2, 0.5, "highpass", fs=fs, output="sos"), np.asarray(record.signal, np.float64), axis=1)
    _panel(record, x, fs, LEADS, 0.0, 10.0, cases_dir / f"{case}-overview.png", f"{case}: 10 s, 25 mm/s, 10 mm/mV")
    _panel(record, x, fs, LEADS[:6], 3.5, 3.0, cases_dir / f"{case}-limb.png", f"{case}: limb leads, 3 s")
    _panel(record, x, fs, LEADS[6:], 3.5, 3.0, cases_dir / f"{case}-chest.png", f"{case}: chest leads, 3 s")


def make_set(cinc: Path, twi_json: Path, secondary_json: Path, cases_dir: Path, key_path: Path,
             salt: str = "blind-1") -> dict[str, Any]:
    twi_rows = json.loads(Path(twi_json).read_text())["cinc"]["per_record"]
    sec_rows = json.loads(Path(secondary_json).read_text())["cinc"]["per_record"]
    why = choose(twi_rows, sec_rows, salt)
    rows = {r.name: r for r in load_rows(find_cinc(cinc))}
    order = sorted(why, key=lambda n: _rank(n, salt + ":order"))
    cases_dir.mkdir(parents=True, exist_ok=True)
    key = {}
    for i, name in enumerate(order, 1):
        case = f"case-{i:02d}"
        draw(read_record(rows[name]), cases_dir, case)
        key[case] = {"record": name, "why": why[name]}
    template = {case: dict(QUESTIONS) for case in key}
    (cases_dir / "judgments.template.json").write_text(json.dumps(template, indent=1) + "\n")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps({"salt": salt, "twi_json": str(twi_json), "secondary_json": str(secondary_json),
                                    "cases": key}, indent=1) + "\n")
    return {"cases": len(key)}


def reviewer_twi(leads: list[str]) -> bool:
    """TWI by the reviewer: two contiguous leads inverted by >= 0.1 mV (docs/SPEC.md §4.2; aVR never counts)."""
    s = set(leads)
    return any(CONTIGUOUS.get(n, frozenset()) & s for n in s)


def score(key_path: Path, judgments_path: Path) -> dict[str, Any]:
    key = json.loads(Path(key_path).read_text())
    judged = json.loads(Path(judgments_path).read_text())
    twi = {r["name"]: r for r in json.loads(Path(key["twi_json"]).read_text())["cinc"]["per_record"]}
    sec = {r["name"]: r for r in json.loads(Path(key["secondary_json"]).read_text())["cinc"]["per_record"]}
    out: dict[str, Any] = {"cases": [], "twi": {}, "rbbb": {}}
    for case, k in sorted(key["cases"].items()):
        j = judged.get(case) or {}
        name = k["record"]
        t, s = twi[name], sec[name]
        row = {"case": case, "record": name, "why": k["why"], "readable": j.get("readable", True),
               "reviewer_twi": reviewer_twi(j.get("twi_leads") or []), "reviewer_twi_leads": j.get("twi_leads"),
               "label_twi": t["twi_label"], "label_twi_negative": t["twi_negative"],
               "engine_twi": t["triage"] in ("ischemic-pattern", "indeterminate"), "engine_triage": t["triage"],
               "reviewer_rbbb": j.get("rbbb"), "reviewer_qrs_ge_120": j.get("qrs_ge_120"),
               "label_rbbb": s["labels"]["rbbb"], "engine_rbbb": s["secondary"]["rbbb"], "engine_qrs_ms": s["qrs_ms"],
               "note": j.get("note", "")}
        out["cases"].append(row)
    for topic, label_key, engine_key, rev in (
            ("twi", "label_twi", "engine_twi", lambda r: r["reviewer_twi"]),
            ("rbbb", "label_rbbb", "engine_rbbb", lambda r: r["reviewer_rbbb"] == "complete")):
        rows = [r for r in out["cases"] if any(w.startswith(topic) for w in r["why"]) and r["readable"]]
        off = [r for r in rows if r[label_key] != r[engine_key]]
        on = [r for r in rows if r[label_key] == r[engine_key]]
        out[topic] = {
            "disagreements_judged": len(off),
            "reviewer_sides_with_label": sum(rev(r) == r[label_key] for r in off),
            "reviewer_sides_with_engine": sum(rev(r) == r[engine_key] for r in off),
            "agreements_judged": len(on),
            "reviewer_agrees_with_both": sum(rev(r) == r[label_key] for r in on),
            "unreadable": sum(1 for r in out["cases"] if any(w.startswith(topic) for w in r["why"])
                              and not r["readable"]),
        }
    return out
