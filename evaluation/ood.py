"""`twiwatch evaluate twi --cinc DIR` and `twiwatch evaluate secondary`: the engine on ECGs from other hospitals
(CinC format, evaluation/cinc.py) and its secondary causes on PTB-XL folds 1-9 and those ECGs.

Per CinC record: lead quality (analysable share by labelled rhythm, rejections counted per reason), TWI, secondary
causes, CPU. Scores, each with 95 % bootstrap CIs over records and given for the hash-drawn "tune" split, the
"untouched" split and all:
* TWI sensitivity: a docs/SPEC.md §4 group on records labelled T-wave inversion (59931005);
* TWI specificity: among records with no T/ST/ischaemia label and no secondary-cause label (cinc.T_ST_ISCHAEMIA,
  cinc.SECONDARY_CODES), a false positive is a record triaged "ischemic-pattern" or "indeterminate" with a TWI group
  (a TWI the engine itself explains as secondary is not a false alarm);
* secondary causes: engine finding vs label (cinc.CAUSE_CODES; PTB-XL CLBBB / CRBBB / LVH / PACE), Se and Sp.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import cinc, ptbxl_labels
from evaluation.metrics import Bootstrap, binary_counts, binary_metrics

SPLITS = ("tune", "untouched", "all")
CAUSES = {"lbbb": "lbbb", "rbbb": "rbbb", "rbbb-incomplete": "rbbb-incomplete", "lbbb-incomplete": "lbbb-incomplete",
          "lvh": "lvh", "lvh-strain": "lvh-strain", "pacing": "ventricular-pacing"}
CINC_LABEL_FOR = {"lbbb": "lbbb", "rbbb": "rbbb", "rbbb-incomplete": "rbbb-incomplete",
                  "lbbb-incomplete": "lbbb-incomplete", "lvh": "lvh", "lvh-strain": "lvh", "pacing": "pacing"}
PTBXL_LABEL_FOR = {"lbbb": "CLBBB", "rbbb": "CRBBB", "rbbb-incomplete": "IRBBB", "lbbb-incomplete": "ILBBB",
                   "lvh": "LVH", "lvh-strain": "LVH", "pacing": "PACE"}
FALSE_ALARM_CLASSES = ("ischemic-pattern", "indeterminate")


def _reason_kind(reason: str) -> str:
    for key in ("flat line", "frozen", "clipped", "sender flagged", "high-frequency", "ST-T varies", "residual"):
        if key in reason:
            return {"residual": "noisy: SNR"}.get(key, key)
    return reason.split(":")[0].split(" (")[0]


def analyse_cinc(row: cinc.CincRow) -> dict[str, Any]:
    from engine.analyze import analyze

    rec = cinc.read_record(row)
    t0 = time.process_time()
    a = analyze(rec)
    cpu = time.process_time() - t0
    return {
        "name": row.name, "split": row.split, "rhythm": row.rhythm, "codes": sorted(row.codes),
        "twi_label": row.twi, "twi_negative": row.twi_negative, "cpu_s": cpu, "qrs_ms": a.qrs_duration_ms,
        "twi_groups": [g.leads for g in a.twi], "triage": a.triage.cls,
        "leads": {n: {"ok": lr.quality == "ok", "reasons": lr.quality_reasons} for n, lr in a.leads.items()},
        "secondary": {f.cause: f.present for f in a.secondary},
        "evidence": {f.cause: f.evidence for f in a.secondary},
        "labels": {c: row.cause(c) for c in cinc.CAUSE_CODES},
    }


def analyse_ptbxl(ptbxl_dir: str, row: ptbxl_labels.PtbxlRow, rate: int) -> dict[str, Any]:
    from engine.analyze import analyze

    a = analyze(ptbxl_labels.read_record(Path(ptbxl_dir), row, rate))
    return {"ecg_id": row.ecg_id, "secondary": {f.cause: f.present for f in a.secondary},
            "labels": {k: v in row.codes for k, v in PTBXL_LABEL_FOR.items()}}


def _quality(recs: list[dict]) -> dict[str, Any]:
    by: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    reasons: Counter = Counter()
    for r in recs:
        by[r["rhythm"]][2] += 1
        for q in r["leads"].values():
            by[r["rhythm"]][1] += 1
            by[r["rhythm"]][0] += q["ok"]
            if not q["ok"]:  # the failing reason: notes (wander, powerline, flagged share) carry "filtered"/"%"
                fails = [x for x in q["reasons"] if "filtered" not in x and "judged on the beats" not in x]
                reasons[_reason_kind(fails[-1] if fails else (q["reasons"] or ["?"])[-1])] += 1
    return {"analysable_share_by_rhythm": {k: {"records": v[2], "leads": v[1], "analysable": v[0],
                                               "share": v[0] / v[1] if v[1] else None} for k, v in sorted(by.items())},
            "rejections_by_reason": dict(reasons.most_common())}


def _cause_metrics(boot: Bootstrap, recs: list[dict], label_of, pred_of) -> dict:
    return binary_metrics(boot, binary_counts([label_of(r) for r in recs], [pred_of(r) for r in recs]))


def summarize_cinc(recs: list[dict], n_boot: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sp in SPLITS:
        sub = [r for r in recs if sp == "all" or r["split"] == sp]
        if not sub:
            continue
        boot = Bootstrap(len(sub), n_boot=n_boot)
        pos = [r for r in sub if r["twi_label"]]
        neg = [r for r in sub if r["twi_negative"]]
        fp = [r["name"] for r in neg if r["twi_groups"] and r["triage"] in FALSE_ALARM_CLASSES]
        b_neg = Bootstrap(len(neg), n_boot=n_boot)
        spec = b_neg.ratio([0.0 if r["name"] in fp else 1.0 for r in neg], [1.0] * len(neg))
        out[sp] = {
            "records": len(sub),
            "quality": _quality(sub),
            "twi": {"positives": len(pos), "found": [r["name"] for r in pos if r["twi_groups"]],
                    "missed": [r["name"] for r in pos if not r["twi_groups"]],
                    "sensitivity_note": "anecdotal: two labelled T-wave inversions in the whole set",
                    "negatives": len(neg), "false_alarms": fp, "specificity": spec,
                    "negatives_with_any_group": sum(bool(r["twi_groups"]) for r in neg)},
            "secondary": {c: {"engine_finding": CAUSES[c], "label": CINC_LABEL_FOR[c],
                              **_cause_metrics(boot, sub, lambda r, c=c: r["labels"][CINC_LABEL_FOR[c]],
                                               lambda r, c=c: bool(r["secondary"].get(CAUSES[c])))}
                          for c in CAUSES},
            "cpu_ms_per_record": {"median": 1000 * float(np.median([r["cpu_s"] for r in sub])),
                                  "p90": 1000 * float(np.percentile([r["cpu_s"] for r in sub], 90))},
        }
    return out


def summarize_ptbxl(recs: list[dict], n_boot: int) -> dict[str, Any]:
    boot = Bootstrap(len(recs), n_boot=n_boot)
    out = {"records": len(recs)}
    for c in PTBXL_LABEL_FOR:
        out[c] = {"engine_finding": CAUSES[c], "label": PTBXL_LABEL_FOR[c],
                  **_cause_metrics(boot, recs, lambda r, c=c: r["labels"][c],
                                   lambda r, c=c: bool(r["secondary"].get(CAUSES[c])))}
    lbbb = [r for r in recs if r["labels"]["lbbb"] and not r["labels"]["pacing"]]
    out["pacing_specificity_against_lbbb"] = {
        "lbbb_records": len(lbbb), "called_paced": [r["ecg_id"] for r in lbbb if r["secondary"].get(CAUSES["pacing"])]}
    return out


def run_cinc(cinc_dir: Path, *, n_boot: int = 2000, workers: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    from evaluation.progress import parallel_map

    d = cinc.find_cinc(Path(cinc_dir))
    rows = cinc.load_rows(d)
    recs = parallel_map(analyse_cinc, [(r,) for r in rows], workers=workers, progress=progress, label="CinC")
    return {"dir": str(d), "split_rule": "tune: first byte of SHA-256(record name) even; untouched: odd",
            "label_sets": {"twi_positive": sorted(cinc.TWI_POSITIVE), "t_st_ischaemia": sorted(cinc.T_ST_ISCHAEMIA),
                           "secondary": sorted(cinc.SECONDARY_CODES),
                           "causes": {k: sorted(v) for k, v in cinc.CAUSE_CODES.items()}},
            "excluded_records": [], "summary": summarize_cinc(recs, n_boot), "per_record": recs}


def run_secondary(data_dir: Path | None, cinc_dir: Path | None, json_path: Path, *, rates: tuple[int, ...] = (100,),
                  n_boot: int = 2000, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    from evaluation.delineation import _environment, write_report
    from evaluation.progress import parallel_map

    report: dict[str, Any] = {"what": "secondary causes vs PTB-XL SCP codes (folds 1-9) and CinC SNOMED labels",
                              "environment": _environment()}
    if data_dir is not None:
        pdir = ptbxl_labels.find_ptbxl(Path(data_dir))
        rows = ptbxl_labels.load_rows(pdir)
        report["ptbxl"] = {}
        for rate in rates:
            have = [r for r in rows if ptbxl_labels.signal_path(pdir, r, rate) is not None]
            recs = parallel_map(analyse_ptbxl, [(str(pdir), r, rate) for r in have], workers=workers,
                                progress=progress, label=f"PTB-XL {rate} Hz")
            report["ptbxl"][str(rate)] = summarize_ptbxl(recs, n_boot)
    if cinc_dir is not None:
        report["cinc"] = run_cinc(cinc_dir, n_boot=n_boot, workers=workers, progress=progress)
    write_report(report, json_path)
    if progress:
        print_summary(report)
    return report


def print_summary(report: dict[str, Any]) -> None:
    from evaluation.metrics import fmt

    for rate, s in report.get("ptbxl", {}).items():
        for c in PTBXL_LABEL_FOR:
            x = s[c]
            print(f"PTB-XL {rate} Hz {x['label']:6s} {x['engine_finding']:18s} {x['tp']}/{x['positives']} "
                  f"Se {fmt(x['sensitivity'])} Sp {fmt(x['specificity'])}")
        print(f"PTB-XL {rate} Hz pacing calls among LBBB: {s['pacing_specificity_against_lbbb']}")
    for sp, s in report.get("cinc", {}).get("summary", {}).items():
        print(f"CinC {sp} ({s['records']}): analysable {s['quality']['analysable_share_by_rhythm']}")
        print(f"  rejections {s['quality']['rejections_by_reason']}")
        t = s["twi"]
        print(f"  TWI found {t['found']} missed {t['missed']}; specificity {fmt(t['specificity'])} "
              f"false alarms {t['false_alarms']} of {t['negatives']}; CPU ms {s['cpu_ms_per_record']}")
        for c, x in s["secondary"].items():
            print(f"  {c:16s} {x['tp']}/{x['positives']} Se {fmt(x['sensitivity'])} Sp {fmt(x['specificity'])}")
