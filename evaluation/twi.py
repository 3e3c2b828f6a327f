"""`twiwatch evaluate twi`: TWI detection and secondary causes, ours and NeuroKit2 on the same records in the same run.

Data: `--data DIR` is a folder holding `ptbxl/` (PTB-XL: ptbxl_database.csv, records100/, records500/) and/or `ludb/`
(LUDB, at any depth up to three: the shared copy and the shipped samples both work), or a PTB-XL folder itself.

References (docs/EVALUATION.md):
* PTB-XL record level: the SCP code INVT ("INVT code"), and the report text saying T waves are inverted in English or
  German ("report text says inverted", evaluation.ptbxl_labels.parse_report). Both are reported; they differ.
* PTB-XL lead level: on records whose report names the inverted leads, a lead is positive when named; aVR is never
  scored (its T is normally inverted and reports do not mention it).
* LUDB record level: the docs/SPEC.md §4 rule applied to the annotation-derived references
  (evaluation.ludb.reference_twi); lead level: annotation-derived T amplitude < -0.1 (aVR excluded).
* ST depression (engine only, 4th UDMI, engine/st.py): record level vs PTB-XL STD_ and vs the report text saying the
  ST segments are depressed; lead level vs the leads the text names.
* Secondary causes: PTB-XL CLBBB / CRBBB / LVH / PACE / WPW codes (any likelihood), LUDB "Complete left/right bundle
  branch block", "Left ventricular hypertrophy", any "Cardiac pacing" entry; against the engine's lbbb, rbbb,
  lvh-strain, ventricular-pacing and wpw findings (NeuroKit2 has no such checks).
Predictions: record TWI = at least one docs/SPEC.md §4 group (engine.criteria for every method); lead TWI =
evaluation.methods definitions.
PTB-XL is run at 100 Hz for every record of folds 1-9 and again at 500 Hz where this copy has the 500 Hz signal
(pacing spikes need >= 400 Hz).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.criteria import TWI_DEPTH_MV
from engine.record import STANDARD_LEADS, ordered_standard
from evaluation import ludb, ptbxl_labels
from evaluation.delineation import SPLITS, _environment, evaluate_records, write_report
from evaluation.methods import OURS, run_ours
from evaluation.metrics import Bootstrap, binary_counts, binary_metrics, fmt
from evaluation.neurokit_baseline import METHODS, run_neurokit

SCORED_LEADS = tuple(x for x in STANDARD_LEADS if x != "aVR")
ENGINE_CAUSE = {"lbbb": "lbbb", "rbbb": "rbbb", "lvh": "lvh-strain", "pacing": "ventricular-pacing", "wpw": "wpw"}
RATES = (100, 500)
WHAT = "TWI (record and lead level) and secondary causes vs PTB-XL labels / report text and LUDB-derived references"
DEFINITIONS = {
    "record_twi_prediction": "at least one docs/SPEC.md §4 group (engine.criteria: T inverted > 0.1 mV with prominent "
                             "R in >= 2 contiguous leads)",
    "lead_twi_prediction": f"lead T inverted deeper than {TWI_DEPTH_MV} mV on its dominant lobe (ours: negative/"
                           "biphasic t_polarity with t_amplitude_mv < -0.1; NeuroKit2: median T-peak amplitude "
                           "< -0.1); aVR never scored",
    "ptbxl_invt": "SCP code INVT present (any likelihood; PTB-XL gives INVT likelihood 0 = present, unknown)",
    "ptbxl_report_text": "report says T waves are inverted (EN/DE parser, evaluation/ptbxl_labels.py); lead level on "
                         "records whose report names the leads",
    "ludb_reference": "docs/SPEC.md §4 rule on annotation-derived T amplitude (annotated T peak minus PR level) and "
                      "R/S; amplitudes relative (each lead scaled to 1.0 peak-to-peak in this copy)",
    "secondary": "PTB-XL CLBBB/CRBBB/LVH/PACE/WPW (any likelihood); LUDB complete LBBB/RBBB, LVH, any pacing entry; "
                 "engine findings lbbb/rbbb/lvh-strain/ventricular-pacing/wpw",
    "st_depression": "engine only: 4th UDMI groups (engine/st.py) vs PTB-XL STD_ and vs the report text saying the ST "
                     "segments are depressed; lead level vs the leads the text names",
}


def score_ptbxl(ptbxl_dir: str, row: ptbxl_labels.PtbxlRow, rate: int, methods: tuple[str, ...]) -> dict[str, Any]:
    """Ours and NeuroKit2 on one PTB-XL record (plain data: runs in a worker process)."""
    rec = ptbxl_labels.read_record(Path(ptbxl_dir), row, rate)
    results = {OURS: run_ours(rec)}
    sig, names = ordered_standard(rec)
    nk, _ = run_neurokit(np.asarray(sig, dtype=float), names, rec.fs, methods)
    results.update(nk)
    return {"ecg_id": row.ecg_id, "rate": rate, "methods": {
        m: {"twi_groups": r.twi_groups, "lead_twi": r.lead_twi, "secondary": r.secondary, "cpu_s": r.cpu_s,
            "st_groups": r.st_groups, "lead_st": r.st_depression, "errors": len(r.errors)} for m, r in results.items()}}


def _find_parts(data_dir: Path) -> tuple[Path | None, Path | None]:
    data_dir = Path(data_dir)
    try:
        ptbxl = ptbxl_labels.find_ptbxl(data_dir)
    except FileNotFoundError:
        ptbxl = None
    lroot = data_dir / "ludb" if (data_dir / "ludb").is_dir() else None
    try:
        ludb_dir = ludb.find_ludb(lroot) if lroot else None
    except FileNotFoundError:
        ludb_dir = None
    if ptbxl is None and ludb_dir is None:
        raise FileNotFoundError(f"neither PTB-XL (ptbxl_database.csv) nor LUDB found under {data_dir}")
    return ptbxl, ludb_dir


def _lead_counts(records: list[dict], method: str, ref_leads: list[set[str]],
                 scored: list[list[str]]) -> dict[str, np.ndarray]:
    c = {k: np.zeros(len(records)) for k in ("tp", "fp", "fn", "tn")}
    for i, r in enumerate(records):
        pred = r["methods"][method]["lead_twi"]
        for lead in scored[i]:
            t, p = lead in ref_leads[i], bool(pred.get(lead, False))
            c["tp" if t and p else "fn" if t else "fp" if p else "tn"][i] += 1
    return c


def _record_level(boot: Bootstrap, truth: list[bool], records: list[dict], names: list[str]) -> dict[str, Any]:
    out = {}
    preds = {m: [bool(r["methods"][m]["twi_groups"]) for r in records] for m in names}
    counts = {m: binary_counts(truth, preds[m]) for m in names}
    for m in names:
        out[m] = binary_metrics(boot, counts[m])
    if OURS in names:
        o = counts[OURS]
        for m in names:
            if m != OURS:
                b = counts[m]
                out[m]["ours_minus_this"] = {
                    "sensitivity": boot.ratio_diff(o["tp"], o["tp"] + o["fn"], b["tp"], b["tp"] + b["fn"]),
                    "specificity": boot.ratio_diff(o["tn"], o["tn"] + o["fp"], b["tn"], b["tn"] + b["fp"]),
                }
    return out


def _secondary(boot: Bootstrap, labels: list[dict[str, bool]], records: list[dict], causes: tuple[str, ...]) -> dict:
    out = {}
    for cause in causes:
        truth = [lab.get(cause, False) for lab in labels]
        pred = [bool(r["methods"][OURS]["secondary"].get(ENGINE_CAUSE[cause], False)) for r in records]
        out[cause] = {"engine_finding": ENGINE_CAUSE[cause], **binary_metrics(boot, binary_counts(truth, pred))}
    return out


def _st_depression(boot: Bootstrap, n_boot: int, records: list[dict], rs: list, parsed: list) -> dict:
    """Engine only: record-level 4th UDMI ST-depression groups vs PTB-XL STD_ and vs the report text, and per lead
    vs the leads the text names as ST-depressed (records whose report names them; aVR not scored)."""
    pred = [bool(r["methods"][OURS].get("st_groups")) for r in records]
    std = ["STD_" in x.codes for x in rs]
    text = [p.st_depression.present for p in parsed]
    named = [i for i, p in enumerate(parsed) if p.st_depression.leads_named]
    lead_boot = Bootstrap(len(named), n_boot=n_boot)
    c = {k: np.zeros(len(named)) for k in ("tp", "fp", "fn", "tn")}
    for k, i in enumerate(named):
        ref = parsed[i].st_depression.leads
        for lead, p in records[i]["methods"][OURS].get("lead_st", {}).items():
            if lead == "aVR":
                continue
            t = lead in ref
            c["tp" if t and p else "fn" if t else "fp" if p else "tn"][k] += 1
    return {
        "record_vs_std_code": binary_metrics(boot, binary_counts(std, pred)),
        "record_vs_report_text": binary_metrics(boot, binary_counts(text, pred)),
        "lead_vs_report_text": binary_metrics(lead_boot, c),
        "records_with_named_leads": len(named),
    }


FORM_ST_T = ("NT_", "LOWT", "STD_", "STE_", "TAB_")  # PTB-XL "form" statements about ST-T (not a diagnostic class)


def scp_classes(ptbxl_dir: Path) -> dict[str, str]:
    """SCP code -> PTB-XL diagnostic class (NORM, MI, STTC, CD, HYP), from scp_statements.csv; the ST-T form
    statements FORM_ST_T are put in STTC."""
    import csv

    path = Path(ptbxl_dir) / "scp_statements.csv"
    out: dict[str, str] = {}
    if path.exists():
        with open(path, newline="") as f:
            out = {row[""]: row["diagnostic_class"] for row in csv.DictReader(f) if row.get("diagnostic_class")}
    out.update({c: "STTC" for c in FORM_ST_T})
    return out


def false_positive_breakdown(per_record: list[dict], rows: dict[int, ptbxl_labels.PtbxlRow],
                             classes: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Records a method calls TWI although neither INVT nor the report text says so: how many carry another PTB-XL
    statement of class STTC (ST/T change: NDT, NST_, ISC*, DIG, STD_, NT_, LOWT ...), MI, CD (conduction) or HYP
    (hypertrophy), and how many carry none of those (normal or rhythm statements only)."""
    out = {}
    for m in names:
        fp = [r for r in per_record if r[m] and not r["invt"] and not r["text"]
              and not ptbxl_labels.parse_report(rows[r["ecg_id"]].report).says_inverted]
        cls = [{classes.get(c) for c in rows[r["ecg_id"]].codes} for r in fp]
        d = {"records": len(fp)}
        for k in ("STTC", "MI", "CD", "HYP"):
            d[f"with_{k}"] = sum(k in c for c in cls)
        d["with_none_of_these"] = sum(not (c & {"STTC", "MI", "CD", "HYP"}) for c in cls)
        out[m] = d
    return out


def summarize_ptbxl(records: list[dict], rows: dict[int, ptbxl_labels.PtbxlRow], names: list[str], n_boot: int) -> dict:
    boot = Bootstrap(len(records), n_boot=n_boot)
    rs = [rows[r["ecg_id"]] for r in records]
    parsed = [ptbxl_labels.parse_report(x.report) for x in rs]
    named = [i for i, p in enumerate(parsed) if p.leads_named]
    lead_boot = Bootstrap(len(named), n_boot=n_boot)
    sub = [records[i] for i in named]
    ref_leads = [set(parsed[i].leads) for i in named]
    scored = [list(SCORED_LEADS)] * len(named)
    langs: dict[str, int] = {}
    for p in parsed:
        langs[p.language] = langs.get(p.language, 0) + 1
    invt = [x.invt for x in rs]
    text = [p.says_inverted for p in parsed]
    return {
        "records": len(records),
        "languages": langs,
        "invt_positive": int(sum(invt)), "text_positive": int(sum(text)),
        "invt_and_text": int(sum(a and b for a, b in zip(invt, text, strict=True))),
        "records_with_named_leads": len(named),
        "twi_record_vs_invt": _record_level(boot, invt, records, names),
        "twi_record_vs_report_text": _record_level(boot, text, records, names),
        "twi_lead_vs_report_text": {m: binary_metrics(lead_boot, _lead_counts(sub, m, ref_leads, scored))
                                    for m in names},
        "secondary_vs_scp": _secondary(boot, [x.secondary() for x in rs], records, tuple(ptbxl_labels.SECONDARY_CODES)),
        "st_depression": _st_depression(boot, n_boot, records, rs, parsed),
        "cpu_ms_per_record": {m: 1000 * float(np.median([r["methods"][m]["cpu_s"] for r in records])) for m in names},
    }


def summarize_ludb(records: list[dict], labels: dict[int, dict[str, bool]], names: list[str], n_boot: int) -> dict:
    boot = Bootstrap(len(records), n_boot=n_boot)
    truth = [bool(r["ref_twi_groups"]) for r in records]
    ref_leads, scored = [], []
    for r in records:
        amps = {lead: v["t_amp"] for lead, v in r["ref"].items() if v["t_amp"] is not None and lead != "aVR"}
        ref_leads.append({lead for lead, a in amps.items() if a < -TWI_DEPTH_MV})
        scored.append(sorted(amps))
    return {
        "records": len(records),
        "reference_twi_records": int(sum(truth)),
        "twi_record_vs_ludb_derived": _record_level(boot, truth, records, names),
        "twi_lead_vs_ludb_derived": {m: binary_metrics(boot, _lead_counts(records, m, ref_leads, scored))
                                     for m in names},
        "secondary_vs_ludb_labels": _secondary(boot, [labels.get(r["id"], {}) for r in records], records,
                                               ludb.SECONDARY_LABELS),
    }


def run_twi(data_dir: Path, json_path: Path, *, limit: int | None = None, plots_dir: Path | None = None,
            progress: bool = True, methods: tuple[str, ...] = METHODS, workers: int | None = None, n_boot: int = 2000,
            rates: tuple[int, ...] = RATES, cinc_dir: Path | None = None) -> dict[str, Any]:
    """Run ours and NeuroKit2 on PTB-XL (folds 1-9; 100 Hz all, 500 Hz where present) and LUDB (available ids), score
    TWI and secondary causes, write JSON (and a PNG when plots_dir is given), print a summary; returns the report.
    `limit` caps the records of each part (PTB-XL per rate, LUDB), first by id."""
    from evaluation.progress import parallel_map

    ptbxl_dir, ludb_dir = _find_parts(Path(data_dir))
    names = [OURS] + [f"nk-{m}" for m in methods]
    report: dict[str, Any] = {"what": WHAT, "data_dir": str(data_dir), "environment": _environment(),
                              "definitions": DEFINITIONS}
    if ptbxl_dir is not None:
        rows = ptbxl_labels.load_rows(ptbxl_dir)
        by_id = {r.ecg_id: r for r in rows}
        report["ptbxl"] = {"dir": str(ptbxl_dir), "rows_folds_1_9": len(rows), "rates": {}}
        for rate in rates:
            have = [r for r in rows if ptbxl_labels.signal_path(ptbxl_dir, r, rate) is not None]
            if limit is not None:
                have = have[:limit]
            if not have:
                continue
            recs = parallel_map(score_ptbxl, [(str(ptbxl_dir), r, rate, methods) for r in have], workers=workers,
                                progress=progress, label=f"PTB-XL {rate} Hz")
            s = summarize_ptbxl(recs, by_id, names, n_boot)
            s["per_record"] = [{"ecg_id": r["ecg_id"], "invt": by_id[r["ecg_id"]].invt,
                                "text": sorted(ptbxl_labels.parse_report(by_id[r["ecg_id"]].report).leads),
                                **{m: r["methods"][m]["twi_groups"] for m in names}} for r in recs]
            s["twi_without_invt_or_text"] = false_positive_breakdown(s["per_record"], by_id, scp_classes(ptbxl_dir),
                                                                     names)
            report["ptbxl"]["rates"][str(rate)] = s
    if ludb_dir is not None:
        ids = ludb.record_ids(ludb_dir)
        if limit is not None:
            ids = ids[:limit]
        recs = evaluate_records(ludb_dir, ids, methods=methods, workers=workers, progress=progress)
        labels = ludb.diagnoses(ludb_dir)
        report["ludb"] = {"dir": str(ludb_dir), "splits": {}}
        for sp in SPLITS:
            sub = [r for r in recs if sp == "all" or r["split"] == sp]
            if sub:
                report["ludb"]["splits"][sp] = summarize_ludb(sub, labels, names, n_boot)
    if cinc_dir is not None:
        from evaluation.ood import print_summary, run_cinc

        report["cinc"] = run_cinc(cinc_dir, n_boot=n_boot, workers=workers, progress=progress)
        if progress:
            print_summary({"cinc": report["cinc"]})
    if plots_dir is not None:
        report["plots"] = {"twi_record_level": _plot(report, names, Path(plots_dir) / "twi_record_level.png")}
    write_report(report, json_path)
    if progress:
        print_twi_summary(report)
    return report


def _panels(report: dict[str, Any]) -> list[tuple[str, dict]]:
    panels = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        panels.append((f"PTB-XL {rate} Hz vs INVT (n={s['records']})", s["twi_record_vs_invt"]))
        panels.append((f"PTB-XL {rate} Hz vs report text (n={s['records']})", s["twi_record_vs_report_text"]))
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        if sp == "all":
            panels.append((f"LUDB all vs LUDB-derived (n={s['records']})", s["twi_record_vs_ludb_derived"]))
    return panels


def _plot(report: dict[str, Any], names: list[str], path: Path) -> str:
    from evaluation.plots import _plt

    plt = _plt()
    panels = _panels(report)
    k_panels = max(1, len(panels))
    fig, axes = plt.subplots(1, k_panels, figsize=(4.2 * k_panels, 3.8), squeeze=False, sharey=True)
    for ax, (title, d) in zip(axes[0], panels, strict=False):
        x = np.arange(len(names))
        for k, metric in enumerate(("sensitivity", "specificity")):
            v = [d[m][metric]["value"] for m in names]
            ci = [d[m][metric]["ci"] for m in names]
            vals = np.array([np.nan if a is None else 100 * a for a in v])
            lo = np.array([np.nan if c[0] is None else 100 * c[0] for c in ci])
            hi = np.array([np.nan if c[1] is None else 100 * c[1] for c in ci])
            err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=err, capsize=2, label=metric)
        ax.set_xticks(x, names, rotation=30, fontsize=8)
        ax.set_title(title, fontsize=8)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("%")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Record-level TWI (docs/SPEC.md §4 rule), 95 % bootstrap CI", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def print_twi_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=True, width=220)
    t = Table(title="TWI: sensitivity / specificity / PPV (95 % bootstrap CI over records)")
    for col in ("data", "reference", "positives/negatives", "method", "sensitivity", "specificity", "PPV"):
        t.add_column(col)

    def rows(data: str, ref: str, d: dict) -> None:
        for m, x in d.items():
            t.add_row(data, ref, f"{x['positives']}/{x['negatives']}", m, fmt(x["sensitivity"]), fmt(x["specificity"]),
                      fmt(x["ppv"]))

    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        data = f"PTB-XL {rate} Hz ({s['records']})"
        rows(data, "INVT code (record)", s["twi_record_vs_invt"])
        rows(data, "report text (record)", s["twi_record_vs_report_text"])
        rows(data, f"report text (lead; {s['records_with_named_leads']} rec)", s["twi_lead_vs_report_text"])
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        rows(f"LUDB {sp} ({s['records']})", "LUDB-derived (record)", s["twi_record_vs_ludb_derived"])
        rows(f"LUDB {sp} ({s['records']})", "LUDB-derived (lead)", s["twi_lead_vs_ludb_derived"])
    con.print(t)
    t2 = Table(title="Secondary causes (engine only; NeuroKit2 has none)")
    for col in ("data", "label", "engine finding", "pos/neg", "sensitivity", "specificity", "PPV"):
        t2.add_column(col)
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        for cause, x in s["secondary_vs_scp"].items():
            t2.add_row(f"PTB-XL {rate} Hz", ptbxl_labels.SECONDARY_CODES[cause], x["engine_finding"],
                       f"{x['positives']}/{x['negatives']}", fmt(x["sensitivity"]), fmt(x["specificity"]),
                       fmt(x["ppv"]))
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        for cause, x in s["secondary_vs_ludb_labels"].items():
            t2.add_row(f"LUDB {sp}", cause, x["engine_finding"], f"{x['positives']}/{x['negatives']}",
                       fmt(x["sensitivity"]), fmt(x["specificity"]), fmt(x["ppv"]))
    con.print(t2)
    t3 = Table(title="4th UDMI ST depression (engine only): horizontal/downsloping >= 0.05 mV at J in >= 2 "
                     "contiguous leads")
    for col in ("data", "reference", "pos/neg", "sensitivity", "specificity", "PPV"):
        t3.add_column(col)
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        st_ = s.get("st_depression")
        if not st_:
            continue
        for ref, key in (("STD_ code (record)", "record_vs_std_code"),
                         ("report text (record)", "record_vs_report_text"),
                         (f"report text (lead; {st_['records_with_named_leads']} rec)", "lead_vs_report_text")):
            x = st_[key]
            t3.add_row(f"PTB-XL {rate} Hz", ref, f"{x['positives']}/{x['negatives']}", fmt(x["sensitivity"]),
                       fmt(x["specificity"]), fmt(x["ppv"]))
    con.print(t3)
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        con.print(f"PTB-XL {rate} Hz: {s['records']} records, languages {s['languages']}, INVT {s['invt_positive']}, "
                  f"report text says inverted {s['text_positive']} (both {s['invt_and_text']}), named leads in "
                  f"{s['records_with_named_leads']}; CPU ms/record " +
                  ", ".join(f"{m} {v:.1f}" for m, v in s["cpu_ms_per_record"].items()))
