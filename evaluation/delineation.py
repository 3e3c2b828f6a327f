"""`twiwatch evaluate delineation`: our engine and NeuroKit2 on the same LUDB records, in the same run, scored against
the cardiologists' annotations inside each lead's annotated span (definitions in evaluation.ludb and
docs/EVALUATION.md).

Per method and per split (tune = id % 4 == 1, the only records the engine was tuned on; rest = id % 4 in (2, 3); all):
QRS detection sensitivity/PPV; T-wave detection sensitivity/PPV (T peak within 150 ms); T-peak and T-offset errors
(detected - annotated, ms: median, mean, SD, median |error|); per-lead T-polarity accuracy against the annotation-
derived reference; all with 95 % bootstrap CIs over records; paired differences ours - NeuroKit2.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.record import STANDARD_LEADS
from evaluation import ludb
from evaluation.methods import OURS, LeadMarks, run_ours
from evaluation.metrics import Bootstrap, error_summary, fmt
from evaluation.neurokit_baseline import METHODS, run_neurokit
from evaluation.neurokit_baseline import version as nk_version

POLARITY_CLASSES = ("inverted", "flat", "upright")
PRED_CLASSES = ("inverted", "flat", "upright", "none")
SPLITS = ("tune", "rest", "all")
BA_MAX_QT_S = 0.8  # Bland-Altman pairs: the beat's own annotated QRS onset (not one before an annotation gap)


def score_lead(marks: LeadMarks, waves: list[ludb.Wave], span: ludb.Span, fs: float) -> dict[str, Any]:
    """Detection counts and signed errors (ms) of one method on one lead, inside the lead's annotated span."""
    ms = 1000.0 / fs
    out: dict[str, Any] = {}
    qref = np.array([w.peak for w in waves if w.kind == "N"], dtype=np.int64)
    keep = [k for k in range(marks.r.size) if marks.r[k] >= 0 and span.inside(int(marks.r[k]))]
    r = marks.r[keep]
    on = np.where(marks.qrs_on[keep] >= 0, marks.qrs_on[keep], r)
    off = np.where(marks.qrs_off[keep] >= 0, marks.qrs_off[keep], r)
    on, off = np.minimum(on, r), np.maximum(off, r)
    m = ludb.match(r, qref, ludb.QRS_TOL_S * fs, on=on, off=off)
    out.update(qtp=len(m), qfp=int(r.size - len(m)), qfn=int(qref.size - len(m)))
    tw = [w for w in waves if w.kind == "t"]
    tref = np.array([w.peak for w in tw], dtype=np.int64)
    tk = [k for k in range(marks.t_peak.size) if marks.t_peak[k] >= 0 and span.inside(int(marks.t_peak[k]))]
    tdet = marks.t_peak[tk]
    m = ludb.match(tdet, tref, ludb.T_TOL_S * fs)
    out.update(ttp=len(m), tfp=int(tdet.size - len(m)), tfn=int(tref.size - len(m)))
    qrs = [w for w in waves if w.kind == "N"]
    pk_err, off_err, ba = [], [], []
    for i, j in m:
        pk_err.append(float(tdet[i] - tref[j]) * ms)
        det_off = int(marks.t_off[tk[i]])
        if det_off >= 0:
            off_err.append(float(det_off - tw[j].off) * ms)
            before = [q for q in qrs if q.on < tw[j].peak and tw[j].off - q.on < BA_MAX_QT_S * fs]
            if before:  # Bland-Altman on the QT-like interval: T offset measured from this beat's annotated QRS onset
                ba.append([float(tw[j].off - before[-1].on) * ms, float(det_off - before[-1].on) * ms])
    out.update(pk_err=pk_err, off_err=off_err, ba=ba, t_amp=marks.t_amp)
    return out


def score_record(ludb_dir: str, rid: int, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Everything the reports need from one record (plain data: runs in a worker process)."""
    rec, raw = ludb.read_record(Path(ludb_dir), rid)
    waves = ludb.read_waves(Path(ludb_dir), rid)
    fs, n = rec.fs, raw.shape[1]
    results = {OURS: run_ours(rec)}
    nk, nk_shared = run_neurokit(raw, STANDARD_LEADS, fs, methods)
    results.update(nk)
    refs = {lead: ludb.lead_reference(raw[i], waves[lead], fs)
            for i, lead in enumerate(STANDARD_LEADS) if waves.get(lead)}
    ref_groups, ref_lead = ludb.reference_twi(refs)
    out: dict[str, Any] = {
        "id": rid, "split": ludb.split_of(rid), "fs": fs,
        "ptp": [float(np.ptp(raw[i])) for i in range(raw.shape[0])],
        "ref": {lead: {"t_amp": r.t_amp, "r_amp": r.r_amp, "s_amp": r.s_amp, "n_t": r.n_t} for lead, r in refs.items()},
        "ref_twi_groups": ref_groups,
        "ref_lead_twi": {lead: bool(q) for lead, q in ref_lead.items()},
        "nk_clean_peaks_cpu_s": nk_shared,
        "methods": {},
    }
    for name, res in results.items():
        leads = {}
        for lead in STANDARD_LEADS:
            w = waves.get(lead)
            span = ludb.lead_span(w, n, fs) if w else None
            if span is None:
                continue
            leads[lead] = score_lead(res.leads.get(lead, LeadMarks.empty()), w, span, fs)
        out["methods"][name] = {"cpu_s": res.cpu_s, "errors": res.errors, "twi_groups": res.twi_groups,
                                "lead_twi": res.lead_twi, "secondary": res.secondary, "leads": leads}
    return out


def evaluate_records(ludb_dir: Path, ids: list[int], *, methods: tuple[str, ...] = METHODS, workers: int | None = None,
                     progress: bool = True, label: str = "LUDB") -> list[dict[str, Any]]:
    """score_record over ids, in parallel, with a progress bar; results in id order."""
    from evaluation.progress import parallel_map

    return parallel_map(score_record, [(str(ludb_dir), rid, methods) for rid in ids], workers=workers,
                        progress=progress, label=label)


# --- aggregation ------------------------------------------------------------------------------------------------

def _method_arrays(records: list[dict], method: str) -> dict[str, Any]:
    """Per-record counts/lists of one method (the bootstrap's unit is the record)."""
    keys = ("qtp", "qfp", "qfn", "ttp", "tfp", "tfn")
    c = {k: np.zeros(len(records)) for k in keys}
    pk, off, ba = [], [], []
    pol = {k: np.zeros(len(records)) for k in ("ok", "n", "inv_ok", "inv_n", "up_ok", "up_n", "none")}
    per_lead = {lead: {"ok": np.zeros(len(records)), "n": np.zeros(len(records))} for lead in STANDARD_LEADS}
    conf = np.zeros((len(POLARITY_CLASSES), len(PRED_CLASSES)), dtype=int)
    cpu = []
    for i, r in enumerate(records):
        mres = r["methods"][method]
        cpu.append(mres["cpu_s"])
        rpk, roff = [], []
        for lead, s in mres["leads"].items():
            for k in keys:
                c[k][i] += s[k]
            rpk += s["pk_err"]
            roff += s["off_err"]
            ba += s["ba"]
            ref = r["ref"].get(lead, {}).get("t_amp")
            rc = ludb.polarity_class(ref)
            if rc is None:
                continue
            pred = s["t_amp"]
            pc = "none" if pred is None else ludb.polarity_class(pred)
            conf[POLARITY_CLASSES.index(rc), PRED_CLASSES.index(pc)] += 1
            if rc == "flat":
                continue  # inside the dead zone: not scored
            ok = pred is not None and np.sign(pred) == np.sign(ref)
            pol["n"][i] += 1
            pol["ok"][i] += ok
            pol["none"][i] += pred is None
            pol["inv_n" if rc == "inverted" else "up_n"][i] += 1
            pol["inv_ok" if rc == "inverted" else "up_ok"][i] += ok
            per_lead[lead]["n"][i] += 1
            per_lead[lead]["ok"][i] += ok
        pk.append(rpk)
        off.append(roff)
    return {"c": c, "pk": pk, "off": off, "ba": ba, "pol": pol, "per_lead": per_lead, "conf": conf, "cpu": cpu}


def summarize(records: list[dict], methods: list[str], n_boot: int = 2000) -> dict[str, Any]:
    """Metrics with bootstrap CIs for one set of records."""
    boot = Bootstrap(len(records), n_boot=n_boot)
    arrays = {m: _method_arrays(records, m) for m in methods}
    out: dict[str, Any] = {"records": len(records), "ids": [r["id"] for r in records], "methods": {}, "ours_minus": {}}
    for m, a in arrays.items():
        c, pol = a["c"], a["pol"]
        out["methods"][m] = {
            "qrs": {"sensitivity": boot.ratio(c["qtp"], c["qtp"] + c["qfn"]),
                    "ppv": boot.ratio(c["qtp"], c["qtp"] + c["qfp"]),
                    "annotated": int(c["qtp"].sum() + c["qfn"].sum())},
            "t_wave": {"sensitivity": boot.ratio(c["ttp"], c["ttp"] + c["tfn"]),
                       "ppv": boot.ratio(c["ttp"], c["ttp"] + c["tfp"]),
                       "annotated": int(c["ttp"].sum() + c["tfn"].sum())},
            "t_peak_error_ms": error_summary(boot, a["pk"]),
            "t_offset_error_ms": error_summary(boot, a["off"]),
            "t_polarity": {
                "accuracy": boot.ratio(pol["ok"], pol["n"]),
                "on_inverted": boot.ratio(pol["inv_ok"], pol["inv_n"]),
                "on_upright": boot.ratio(pol["up_ok"], pol["up_n"]),
                "no_answer": int(pol["none"].sum()),
                "confusion": {"rows_reference": list(POLARITY_CLASSES), "cols_predicted": list(PRED_CLASSES),
                              "counts": a["conf"].tolist()},
                "per_lead": {lead: boot.ratio(v["ok"], v["n"]) for lead, v in a["per_lead"].items()},
            },
            "cpu_ms_per_record": {"median": 1000 * float(np.median(a["cpu"])) if a["cpu"] else None,
                                  "mean": 1000 * float(np.mean(a["cpu"])) if a["cpu"] else None},
            "errors": sum(len(r["methods"][m]["errors"]) for r in records),
        }
    if OURS in arrays:
        o = arrays[OURS]
        for m in methods:
            if m == OURS:
                continue
            b = arrays[m]
            out["ours_minus"][m] = {
                "t_polarity_accuracy": boot.ratio_diff(o["pol"]["ok"], o["pol"]["n"], b["pol"]["ok"], b["pol"]["n"]),
                "t_polarity_on_inverted": boot.ratio_diff(o["pol"]["inv_ok"], o["pol"]["inv_n"],
                                                          b["pol"]["inv_ok"], b["pol"]["inv_n"]),
                "t_sensitivity": boot.ratio_diff(o["c"]["ttp"], o["c"]["ttp"] + o["c"]["tfn"],
                                                 b["c"]["ttp"], b["c"]["ttp"] + b["c"]["tfn"]),
                "t_ppv": boot.ratio_diff(o["c"]["ttp"], o["c"]["ttp"] + o["c"]["tfp"],
                                         b["c"]["ttp"], b["c"]["ttp"] + b["c"]["tfp"]),
            }
    return out


def scaling_check(records: list[dict]) -> dict[str, Any]:
    """Peak-to-peak amplitude of every lead of every record read (the LUDB copy here is normalised to 1.0)."""
    ptp = np.array([r["ptp"] for r in records]) if records else np.zeros((0, 12))
    if ptp.size == 0:
        return {"leads": 0}
    return {"leads": int(ptp.size), "min": float(ptp.min()), "max": float(ptp.max()),
            "max_abs_dev_from_1": float(np.abs(ptp - 1.0).max()),
            "all_exactly_1mV_pp": bool(np.allclose(ptp, 1.0, atol=1e-6))}


def run_delineation(ludb_dir: Path, json_path: Path, *, records: list[int] | None = None, split: str | None = None,
                    plots_dir: Path | None = None, progress: bool = True, methods: tuple[str, ...] = METHODS,
                    workers: int | None = None, n_boot: int = 2000) -> dict[str, Any]:
    """Run ours and NeuroKit2 on the LUDB records (all available, a split, or a list), score both, write JSON (and
    PNG plots when plots_dir is given), print a summary; returns the report dict."""
    ludb_dir = ludb.find_ludb(Path(ludb_dir))
    ids = ludb.record_ids(ludb_dir, split=split, records=records)
    if not ids:
        raise ValueError(f"no LUDB records to evaluate under {ludb_dir} (split={split}, records={records})")
    recs = evaluate_records(ludb_dir, ids, methods=methods, workers=workers, progress=progress)
    names = [OURS] + [f"nk-{m}" for m in methods]
    report: dict[str, Any] = {
        "what": "delineation vs LUDB annotations (inside each lead's annotated span)",
        "ludb_dir": str(ludb_dir),
        "environment": _environment(),
        "definitions": {
            "splits": "tune: id % 4 == 1 (the only records the engine's thresholds were tuned on); "
                      "rest: id % 4 in (2, 3); "
                      "all: both. Ids divisible by 4 are held out and never read.",
            "qrs_match": "annotated QRS peak inside a detected QRS onset..offset or within "
                         f"{ludb.QRS_TOL_S * 1000:.0f} ms of it, one-to-one",
            "t_match": f"detected T peak within {ludb.T_TOL_S * 1000:.0f} ms of the annotated T peak, one-to-one",
            "errors": "signed, detected minus annotated (ms), over matched T waves",
            "span": f"first..last annotation of the lead, and within {ludb.SPAN_MARGIN_S * 1000:.0f} ms of an "
                    "annotated wave",
            "polarity_reference": "median over annotated T waves of raw signal at the annotated T peak minus the "
                                  "mean over the annotated PR segment (P offset..QRS onset; the 20 ms before QRS "
                                  "onset without a P)",
            "dead_zone": f"|reference| < {ludb.DEAD_ZONE} (signal units; relative on this LUDB copy) is 'flat' and "
                         "not scored",
            "polarity_prediction": "sign of the method's lead-level T amplitude (ours: t_amplitude_mv of the "
                                   "median beat; NeuroKit2: median over beats of its cleaned signal at its T peak "
                                   "minus its PR level); "
                                   "a lead without an answer counts as wrong",
        },
        "scaling": scaling_check(recs),
        "splits": {},
    }
    for sp in SPLITS:
        sub = [r for r in recs if sp == "all" or r["split"] == sp]
        if sub:
            report["splits"][sp] = summarize(sub, names, n_boot=n_boot)
    report["errors_sample"] = {m: [f"{r['id']}: {e}" for r in recs for e in r["methods"][m]["errors"]][:20]
                               for m in names}
    if plots_dir is not None:
        from evaluation import plots

        report["plots"] = plots.delineation_plots(recs, report, names, Path(plots_dir))
    write_report(report, json_path)
    if progress:
        print_delineation_summary(report)
    return report


def write_report(report: dict[str, Any], json_path: Path) -> None:
    """The evaluation JSON (both commands), numpy values made plain."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _environment() -> dict[str, str]:
    import engine

    return {"python": sys.version.split()[0], "platform": platform.platform(), "engine": engine.__version__,
            "neurokit2": nk_version(), "numpy": np.__version__, "cpus": str(os.cpu_count())}


def summary_table(report: dict[str, Any]):
    """A rich Table of the headline numbers, one row per split and method."""
    from rich.table import Table

    t = Table(title="Delineation vs LUDB annotations (95 % bootstrap CI over records)")
    for col in ("split", "method", "QRS sens", "QRS PPV", "T sens", "T PPV", "T peak err ms med | mean±SD",
                "T off err ms med | mean±SD", "T polarity acc", "on inverted T", "CPU ms/rec"):
        t.add_column(col)
    for sp, s in report["splits"].items():
        for m, r in s["methods"].items():
            pe, oe = r["t_peak_error_ms"], r["t_offset_error_ms"]
            err = lambda e: "n/a" if e["median"]["value"] is None else (  # noqa: E731
                f"{e['median']['value']:+.1f} | {e['mean']['value']:+.1f}±{e['sd']['value']:.1f}")
            t.add_row(f"{sp} ({s['records']})", m, fmt(r["qrs"]["sensitivity"]), fmt(r["qrs"]["ppv"]),
                      fmt(r["t_wave"]["sensitivity"]), fmt(r["t_wave"]["ppv"]), err(pe), err(oe),
                      fmt(r["t_polarity"]["accuracy"]), fmt(r["t_polarity"]["on_inverted"]),
                      f"{r['cpu_ms_per_record']['median']:.1f}")
    return t


def print_delineation_summary(report: dict[str, Any]) -> None:
    from rich.console import Console

    con = Console(stderr=True, width=220)
    con.print(summary_table(report))
    sc = report["scaling"]
    if sc.get("leads"):
        con.print(f"LUDB lead peak-to-peak over {sc['leads']} leads: min {sc['min']:.6f}, max {sc['max']:.6f} "
                  f"(all exactly 1.0: {sc['all_exactly_1mV_pp']})")
    for sp, s in report["splits"].items():
        for m, d in s["ours_minus"].items():
            con.print(f"{sp}: ours - {m}: polarity accuracy {fmt(d['t_polarity_accuracy'])}, on inverted "
                      f"{fmt(d['t_polarity_on_inverted'])}, T sens {fmt(d['t_sensitivity'])}, T PPV {fmt(d['t_ppv'])}")
