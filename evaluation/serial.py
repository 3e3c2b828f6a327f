"""`twiwatch evaluate serial`: new vs prior TWI on PTB-XL's serial ECGs (patients with two or more ECGs in folds 1-9).

Pairs: each patient's ECGs ordered by `recording_date` (ties by ecg_id); every consecutive (prior, current) pair.
"Consecutive" is within the rows we have (folds 1-9 of this copy): an ECG of the patient outside them is not seen.

Ours: `engine.analyze.analyze(prior)` gives the prior's `Analysis.summary` (the PriorSummary the stream keeps per
patient), then `analyze(current, priors=[that summary])` gives the record-level novelty: "new" | "persistent" |
"unknown" | "none" (no TWI group now). Rules in engine/novelty.py.
NeuroKit2 (`--methods`, default dwt): its TWI groups come from engine.criteria on its own T/R/S measures
(evaluation.neurokit_baseline); its prior summary is built from the same per-lead T amplitudes, and engine.novelty
decides novelty with the same rule, so only the delineation differs.

References (per ECG, as in evaluation/twi.py): "INVT code" (SCP code INVT) and "report text says inverted"
(evaluation.ptbxl_labels.parse_report). A pair is reference-"new" when the current ECG is positive and the prior
negative, "persistent" when both are positive, "negative" when the current is negative (whatever the prior was).
Metrics per reference, rate and method: sensitivity = called "new" among reference-new pairs; specificity = not called
"new" among reference-negative pairs; PPV = reference-new among pairs called "new" (reference-persistent pairs called
"new" count against it); and the full table of calls per reference class. 95 % bootstrap CIs resample PATIENTS
(a patient's pairs move together: they share ECGs).

Rates: 100 Hz for every pair; 500 Hz for the pairs whose two ECGs both have a 500 Hz file here (same pairs, a subset).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.record import EcgRecord
from engine.result import SUMMARY_SCHEMA_VERSION, PriorSummary, TwiGroup
from evaluation import ptbxl_labels
from evaluation.methods import OURS, MethodResult
from evaluation.metrics import Bootstrap, fmt
from evaluation.ptbxl_labels import PtbxlRow

RATES = (100, 500)
DEFAULT_METHODS = ("dwt",)
REF_CLASSES = ("new", "persistent", "negative")
CALLS = ("new", "persistent", "unknown", "none")
WHAT = "New vs prior TWI on PTB-XL serial ECGs (consecutive ECGs of one patient, folds 1-9)"
# Per-ECG reference: is the ECG TWI-positive? Same two references as evaluation/twi.py.
REFERENCES: dict[str, Callable[[PtbxlRow], bool]] = {
    "invt": lambda row: row.invt,
    "report_text": lambda row: ptbxl_labels.parse_report(row.report).says_inverted,
}
DEFINITIONS = {
    "pairs": "each patient's ECGs of folds 1-9 ordered by recording_date (ties by ecg_id); every consecutive "
             "(prior, current) pair; 500 Hz: the pairs whose two ECGs both have a 500 Hz file here",
    "ours": "analyze(prior).summary is the prior; analyze(current, priors=[it]).novelty (engine/novelty.py: a group "
            "is persistent when the prior had a group sharing >= 2 of its leads or >= 2 contiguous of its leads "
            "were already inverted to -(0.1 - 0.05) mV or deeper; unknown when the prior cannot tell; else new)",
    "neurokit": "NeuroKit2 TWI groups (engine.criteria on its measures); prior summary from its per-lead T "
                "amplitudes (polarity by engine.measure.classify_polarity, quality ok where it gave an amplitude); "
                "novelty by engine.novelty.assign_novelty",
    "invt": "SCP code INVT present (any likelihood)",
    "report_text": "report says T waves are inverted (EN/DE parser, evaluation/ptbxl_labels.py)",
    "reference_class": "new: current positive and prior negative; persistent: both positive; negative: current "
                       "negative (resolved = prior positive, current negative, is counted inside negative)",
    "sensitivity": "called new / reference-new pairs",
    "specificity": "not called new / reference-negative pairs",
    "ppv": "reference-new / pairs called new",
    "ci": "95 % percentile bootstrap resampling patients (fixed seed)",
}


@dataclass(frozen=True)
class Pair:
    patient_id: str
    prior: PtbxlRow
    current: PtbxlRow


# --- pairing -----------------------------------------------------------------------------------------------------

def recording_dates(rows: Sequence[PtbxlRow]) -> dict[int, str]:
    """ecg_id -> recording_date for the rows that have one (load_rows reads it, and never a fold-10 row)."""
    return {r.ecg_id: r.recording_date for r in rows if r.recording_date}


def serial_patients(rows: Sequence[PtbxlRow], dates: dict[int, str]) -> dict[str, list[PtbxlRow]]:
    """patient_id -> that patient's ECGs in time order (recording_date, then ecg_id), for patients with >= 2 ECGs.
    PTB-XL writes dates as 'YYYY-MM-DD hh:mm:ss', so string order is time order. Patients are ordered by their
    first ECG's id, so `--limit` takes the same patients on every run."""
    by_patient: dict[str, list[PtbxlRow]] = {}
    for r in rows:
        if r.fold == ptbxl_labels.HELD_OUT_FOLD:  # load_rows never returns these; refuse them from anywhere else too
            raise ValueError(f"PTB-XL ecg_id {r.ecg_id} is in the held-out fold 10")
        by_patient.setdefault(r.patient_id, []).append(r)
    serial = {p: sorted(ecgs, key=lambda r: (dates.get(r.ecg_id, ""), r.ecg_id))
              for p, ecgs in by_patient.items() if len(ecgs) >= 2}
    return dict(sorted(serial.items(), key=lambda kv: min(r.ecg_id for r in kv[1])))


def consecutive_pairs(patients: dict[str, list[PtbxlRow]]) -> list[Pair]:
    """Every (prior, current) pair of consecutive ECGs: the engine compares with the most recent prior only."""
    return [Pair(p, a, b) for p, ecgs in patients.items() for a, b in zip(ecgs, ecgs[1:], strict=False)]


def reference_class(prior_positive: bool, current_positive: bool) -> str:
    if not current_positive:
        return "negative"
    return "persistent" if prior_positive else "new"


# --- analysis (one patient per task: runs in a worker process) ---------------------------------------------------

def _neurokit_summary(result: MethodResult, source_id: str) -> PriorSummary:
    """A PriorSummary from a NeuroKit2 MethodResult: its per-lead T amplitude and polarity (the same classification
    run_neurokit uses for its criteria) and its TWI groups, so engine.novelty can compare against it."""
    from engine.measure import classify_polarity

    lead_t = {}
    for lead, marks in result.leads.items():
        amp = marks.t_amp
        lead_t[lead] = ({"polarity": None, "amplitude_mv": None, "quality": "not-analysable"} if amp is None else
                        {"polarity": classify_polarity(amp, max(amp, 0.0), min(amp, 0.0)), "amplitude_mv": amp,
                         "quality": "ok"})
    return PriorSummary(schema_version=SUMMARY_SCHEMA_VERSION, source_id=source_id, acquired_at=None, lead_t=lead_t,
                        twi_groups=[list(g) for g in result.twi_groups])


def _neurokit_novelty(result: MethodResult, prior: PriorSummary) -> str:
    from engine.novelty import assign_novelty

    groups = [TwiGroup(name="", leads=list(g), depths_mv={}, rule="neurokit2") for g in result.twi_groups]
    return assign_novelty(groups, [prior])


def analyse_patient(ptbxl_dir: str, patient_id: str, pairs: list[Pair], rate: int,
                    methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """Novelty calls for one patient's pairs at one rate. Each ECG's prior summary is computed once and reused: the
    summary does not depend on the priors given (only the novelty does)."""
    from engine.analyze import analyze
    from engine.record import ordered_standard
    from evaluation.neurokit_baseline import run_neurokit

    records: dict[int, EcgRecord] = {}
    ours: dict[int, PriorSummary] = {}  # ecg_id -> its Analysis.summary
    nk: dict[int, dict[str, MethodResult]] = {}  # ecg_id -> {"nk-dwt": MethodResult, ...}

    def record(row: PtbxlRow) -> EcgRecord:
        if row.ecg_id not in records:
            records[row.ecg_id] = ptbxl_labels.read_record(Path(ptbxl_dir), row, rate)
        return records[row.ecg_id]

    def neurokit(row: PtbxlRow) -> dict[str, MethodResult]:
        if methods and row.ecg_id not in nk:
            rec = record(row)
            sig, names = ordered_standard(rec)
            nk[row.ecg_id], _ = run_neurokit(np.asarray(sig, dtype=float), names, rec.fs, methods)
        return nk.get(row.ecg_id, {})

    out = []
    for pair in pairs:
        p, c = pair.prior, pair.current
        if p.ecg_id not in ours:  # first ECG of a chain: analysed without priors, only for its summary
            ours[p.ecg_id] = analyze(record(p)).summary
        a = analyze(record(c), priors=[ours[p.ecg_id]])
        ours[c.ecg_id] = a.summary
        calls = {OURS: {"novelty": a.novelty, "current_groups": [list(g.leads) for g in a.twi],
                        "prior_groups": ours[p.ecg_id].twi_groups}}
        nk_p, nk_c = neurokit(p), neurokit(c)
        for m, res in nk_c.items():
            prior = _neurokit_summary(nk_p[m], f"ptbxl:{p.ecg_id}")
            calls[m] = {"novelty": _neurokit_novelty(res, prior), "current_groups": res.twi_groups,
                        "prior_groups": prior.twi_groups}
        out.append({"patient_id": patient_id, "prior": p.ecg_id, "current": c.ecg_id, "rate": rate,
                    "calls": calls})
        records.pop(p.ecg_id, None)  # the prior's signal is no longer needed (its summaries are kept)
    return out


# --- scoring -----------------------------------------------------------------------------------------------------

def _per_patient(patient_index: np.ndarray, n_patients: int, values: np.ndarray) -> np.ndarray:
    """Per-pair 0/1 values summed per patient: the bootstrap resamples patients, so it needs per-patient counts."""
    return np.bincount(patient_index, weights=values.astype(float), minlength=n_patients)


def score(pairs: list[dict[str, Any]], ref: dict[int, bool], names: list[str], n_boot: int) -> dict[str, Any]:
    """Reference counts and, per method, sensitivity / specificity / PPV of "new" calls and the table of calls per
    reference class, with CIs over patients. `ref`: ecg_id -> TWI-positive under this reference."""
    patients = sorted({p["patient_id"] for p in pairs})
    pidx = np.array([patients.index(p["patient_id"]) for p in pairs], dtype=int)
    cls = np.array([reference_class(ref[p["prior"]], ref[p["current"]]) for p in pairs], dtype=object)
    resolved = sum(ref[p["prior"]] and not ref[p["current"]] for p in pairs)
    boot = Bootstrap(len(patients), n_boot=n_boot)
    out: dict[str, Any] = {k: int((cls == k).sum()) for k in REF_CLASSES}
    out["negative_prior_positive"] = int(resolved)
    out["methods"] = {}
    for m in names:
        call = np.array([p["calls"][m]["novelty"] for p in pairs], dtype=object)
        is_new, ref_new, ref_neg = call == "new", cls == "new", cls == "negative"
        per = lambda v: _per_patient(pidx, len(patients), v)  # noqa: E731
        out["methods"][m] = {
            "sensitivity": boot.ratio(per(is_new & ref_new), per(ref_new)),
            "specificity": boot.ratio(per(~is_new & ref_neg), per(ref_neg)),
            "ppv": boot.ratio(per(is_new & ref_new), per(is_new)),
            "called_new": int(is_new.sum()),
            "calls": {k: {c: int(((cls == k) & (call == c)).sum()) for c in CALLS} for k in REF_CLASSES},
        }
    return out


def _days_between(pairs: list[dict[str, Any]], dates: dict[int, str]) -> dict[str, Any]:
    """How far apart prior and current are (days): what "new" means depends on it (hours in one admission, or years)."""
    from datetime import datetime

    days = []
    for p in pairs:
        a, b = dates.get(p["prior"]), dates.get(p["current"])
        if a and b:
            days.append((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 86400.0)
    if not days:
        return {"n": 0}
    q = np.percentile(days, [25, 50, 75])
    return {"n": len(days), "p25": float(q[0]), "median": float(q[1]), "p75": float(q[2]),
            "within_1_day": int(sum(d < 1 for d in days)), "over_1_year": int(sum(d > 365 for d in days))}


def summarize_rate(pairs: list[dict[str, Any]], rows: dict[int, PtbxlRow], dates: dict[int, str], names: list[str],
                   n_boot: int) -> dict[str, Any]:
    ecgs = {p["prior"] for p in pairs} | {p["current"] for p in pairs}
    refs = {name: {i: bool(f(rows[i])) for i in ecgs} for name, f in REFERENCES.items()}
    return {
        "patients": len({p["patient_id"] for p in pairs}),
        "pairs": len(pairs),
        "ecgs": len(ecgs),
        # same recording_date to the second: in this copy these are the same recording filed twice (kept, ordered by
        # ecg_id as asked; counted so that a reader can discount them)
        "pairs_same_recording_time": sum(dates.get(p["prior"]) == dates.get(p["current"]) for p in pairs),
        "days_between": _days_between(pairs, dates),
        "references": {name: score(pairs, ref, names, n_boot) for name, ref in refs.items()},
        "per_pair": [{**p, "dates": [dates.get(p["prior"]), dates.get(p["current"])],
                      "invt": [refs["invt"][p["prior"]], refs["invt"][p["current"]]],
                      "report_text": [refs["report_text"][p["prior"]], refs["report_text"][p["current"]]]}
                     for p in pairs],
    }


def run_serial(data_dir: Path, json_path: Path, *, limit: int | None = None, progress: bool = True,
               methods: tuple[str, ...] = DEFAULT_METHODS, workers: int | None = None, n_boot: int = 2000,
               rates: tuple[int, ...] = RATES) -> dict[str, Any]:
    """Pair each serial patient's consecutive ECGs (folds 1-9), call novelty with ours (and NeuroKit2), score against
    the INVT and report-text references, write JSON, print a summary; returns the report.
    `limit`: at most this many serial patients (in order of their first ecg_id)."""
    from evaluation.delineation import _environment, write_report
    from evaluation.progress import parallel_map

    ptbxl_dir = ptbxl_labels.find_ptbxl(Path(data_dir))
    rows = ptbxl_labels.load_rows(ptbxl_dir)  # fold 10 dropped as the CSV is read
    by_id = {r.ecg_id: r for r in rows}
    dates = recording_dates(rows)
    patients = serial_patients(rows, dates)
    if limit is not None:
        patients = dict(list(patients.items())[:limit])
    pairs = consecutive_pairs(patients)
    names = [OURS] + [f"nk-{m}" for m in methods]
    report: dict[str, Any] = {
        "what": WHAT, "data_dir": str(data_dir), "environment": _environment(), "definitions": DEFINITIONS,
        "methods": names,
        "neurokit": (f"NeuroKit2 {', '.join(methods)}: TWI groups and prior summary from its own measures, novelty by "
                     "engine.novelty (the same rule as ours)") if methods else "NeuroKit2 not run (--methods empty)",
        "ptbxl": {"dir": str(ptbxl_dir), "rows_folds_1_9": len(rows), "serial_patients": len(patients),
                  "serial_ecgs": sum(len(v) for v in patients.values()), "pairs": len(pairs), "rates": {}},
    }
    for rate in rates:
        have = [p for p in pairs if ptbxl_labels.signal_path(ptbxl_dir, p.prior, rate) is not None
                and ptbxl_labels.signal_path(ptbxl_dir, p.current, rate) is not None]
        by_patient: dict[str, list[Pair]] = {}
        for p in have:
            by_patient.setdefault(p.patient_id, []).append(p)
        tasks = [(str(ptbxl_dir), pid, ps, rate, methods) for pid, ps in by_patient.items()]
        done = parallel_map(analyse_patient, tasks, workers=workers, progress=progress,
                            label=f"PTB-XL serial {rate} Hz (patients)")
        report["ptbxl"]["rates"][str(rate)] = summarize_rate([x for d in done for x in d], by_id, dates, names,
                                                            n_boot)
    write_report(report, json_path)
    if progress:
        print_serial_summary(report)
    return report


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per rate, reference and method (shared by the printed summary and evaluation.markdown)."""
    rows = []
    for rate, s in report["ptbxl"]["rates"].items():
        for ref, r in s["references"].items():
            for m, x in r["methods"].items():
                pc = x["calls"]["persistent"]
                rows.append([f"{rate} Hz", ref.replace("_", " "), f"{s['patients']}/{s['pairs']}",
                             f"{r['new']}/{r['persistent']}/{r['negative']}", m, fmt(x["sensitivity"]),
                             fmt(x["specificity"]), fmt(x["ppv"]),
                             " / ".join(str(pc[c]) for c in CALLS)])
    return rows


SUMMARY_HEADER = ["rate", "reference", "patients/pairs", "ref new/persistent/negative", "method",
                  "sensitivity (new)", "specificity (not new)", "PPV of new",
                  "ref-persistent called new / persistent / unknown / none"]


def print_serial_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="New vs prior TWI on PTB-XL serial ECGs (95 % bootstrap CI over patients)")
    for col in SUMMARY_HEADER:
        t.add_column(col)
    for r in summary_rows(report):
        t.add_row(*r)
    con = Console(stderr=True, width=220)
    con.print(t)
    con.print(report["neurokit"])
