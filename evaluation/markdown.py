"""Markdown tables of the evaluation JSON files (what docs/EVALUATION.md quotes), so the document is regenerated from
the numbers the commands wrote rather than retyped.

    .venv/bin/python -m evaluation markdown --delineation docs/results/delineation.json \
        --twi docs/results/twi.json --serial docs/results/serial.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.metrics import fmt
from evaluation.ptbxl_labels import SECONDARY_CODES


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header))] + [_row(r) for r in rows])


def _err(e: dict) -> str:
    if e["median"]["value"] is None:
        return "n/a"
    return (f"{e['median']['value']:+.1f} / {e['mean']['value']:+.1f} ± {e['sd']['value']:.1f} / "
            f"{e['median_abs']['value']:.1f} ({e['median_abs']['ci'][0]:.1f}-{e['median_abs']['ci'][1]:.1f})")


def _abs(e: dict) -> str:
    if "mean_abs" not in e or e["mean_abs"]["value"] is None:  # JSON written before these were computed
        return "n/a"
    a, p = e["mean_abs"], e["p90_abs"]
    return (f"{a['value']:.1f} ({a['ci'][0]:.1f}-{a['ci'][1]:.1f}) / "
            f"{p['value']:.1f} ({p['ci'][0]:.1f}-{p['ci'][1]:.1f})")


def delineation_tables(report: dict[str, Any]) -> str:
    out = []
    rows = []
    for sp, s in report["splits"].items():
        for m, r in s["methods"].items():
            rows.append([f"{sp} ({s['records']})", m, fmt(r["qrs"]["sensitivity"]), fmt(r["qrs"]["ppv"]),
                         fmt(r["t_wave"]["sensitivity"]), fmt(r["t_wave"]["ppv"])])
    out.append("Detection inside each lead's annotated span (QRS: annotated QRS peak inside a detected QRS or within "
               "75 ms of it; T: detected T peak within 150 ms of the annotated one):\n")
    out.append(_table(["split (records)", "method", "QRS sensitivity", "QRS PPV", "T sensitivity", "T PPV"], rows))
    rows = []
    for sp, s in report["splits"].items():
        for m, r in s["methods"].items():
            rows.append([f"{sp}", m, _err(r["t_peak_error_ms"]), _err(r["t_offset_error_ms"]),
                         str(r["t_offset_error_ms"]["median"]["n"])])
    out.append("\nT-peak and T-offset error, detected minus annotated, ms: median / mean ± SD / median |error| "
               "(95 % CI of the median |error|), over matched T waves:\n")
    out.append(_table(["split", "method", "T peak", "T offset", "matched T offsets"], rows))
    rows = []
    for sp, s in report["splits"].items():
        for m, r in s["methods"].items():
            rows.append([sp, m] + [_abs(r[k]) for k in ("t_peak_error_ms", "t_offset_error_ms")])
    out.append("\nThe median |error| moves in whole samples (2 ms at 500 Hz), so methods can tie on it; how far the "
               "errors spread: mean |error| / 90th percentile of |error|, ms (95 % CIs):\n")
    out.append(_table(["split", "method", "T peak", "T offset"], rows))
    rows = []
    for sp, s in report["splits"].items():
        for m, r in s["methods"].items():
            p = r["t_polarity"]
            rows.append([f"{sp}", m, fmt(p["accuracy"]), f"{int(p['accuracy']['den'])}", fmt(p["on_inverted"]),
                         f"{int(p['on_inverted']['den'])}", fmt(p["on_upright"]), str(p["no_answer"]),
                         f"{r['cpu_ms_per_record']['median']:.1f}"])
    out.append("\nPer-lead T polarity against the LUDB-derived reference (leads outside the dead zone; a lead without "
               "an answer counts as wrong):\n")
    out.append(_table(["split", "method", "accuracy", "leads", "on inverted T", "inverted leads", "on upright T",
                       "no answer", "CPU ms/record"], rows))
    rows = []
    for sp, s in report["splits"].items():
        for m, d in s["ours_minus"].items():
            rows.append([sp, f"ours - {m}", fmt(d["t_polarity_accuracy"]), fmt(d["t_polarity_on_inverted"]),
                         fmt(d["t_sensitivity"]), fmt(d["t_ppv"])])
    out.append("\nPaired differences, ours minus NeuroKit2 (percentage points, same bootstrap resamples):\n")
    out.append(_table(["split", "difference", "polarity accuracy", "polarity on inverted T", "T sensitivity",
                       "T PPV"], rows))
    return "\n".join(out)


def _bin_rows(label: str, ref: str, d: dict) -> list[list[str]]:
    return [[label, ref, f"{x['positives']}/{x['negatives']}", m, fmt(x["sensitivity"]), fmt(x["specificity"]),
             fmt(x["ppv"])] for m, x in d.items()]


def twi_tables(report: dict[str, Any]) -> str:
    out = []
    rows: list[list[str]] = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        lab = f"PTB-XL {rate} Hz ({s['records']})"
        rows += _bin_rows(lab, "INVT code", s["twi_record_vs_invt"])
        rows += _bin_rows(lab, "report text says inverted", s["twi_record_vs_report_text"])
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        rows += _bin_rows(f"LUDB {sp} ({s['records']})", "LUDB-derived TWI", s["twi_record_vs_ludb_derived"])
    out.append("Record-level TWI (at least one docs/SPEC.md §4 group):\n")
    out.append(_table(["data (records)", "reference", "pos/neg", "method", "sensitivity", "specificity", "PPV"], rows))
    rows = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        rows += _bin_rows(f"PTB-XL {rate} Hz ({s['records_with_named_leads']} reports naming leads)",
                          "leads the report names", s["twi_lead_vs_report_text"])
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        rows += _bin_rows(f"LUDB {sp} ({s['records']})", "LUDB-derived T < -0.1", s["twi_lead_vs_ludb_derived"])
    out.append("\nLead-level TWI (lead T inverted deeper than 0.1; aVR not scored; pos/neg counted in leads):\n")
    out.append(_table(["data", "reference", "pos/neg leads", "method", "sensitivity", "specificity", "PPV"], rows))
    rows = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        for cause, x in s["secondary_vs_scp"].items():
            rows.append([f"PTB-XL {rate} Hz", SECONDARY_CODES[cause], x["engine_finding"],
                         f"{x['positives']}/{x['negatives']}",
                         fmt(x["sensitivity"]), fmt(x["specificity"]), fmt(x["ppv"])])
    for sp, s in report.get("ludb", {}).get("splits", {}).items():
        for cause, x in s["secondary_vs_ludb_labels"].items():
            rows.append([f"LUDB {sp}", cause, x["engine_finding"], f"{x['positives']}/{x['negatives']}",
                         fmt(x["sensitivity"]), fmt(x["specificity"]), fmt(x["ppv"])])
    out.append("\nSecondary causes (the engine's findings; NeuroKit2 has no such checks):\n")
    out.append(_table(["data", "label", "engine finding", "pos/neg", "sensitivity", "specificity", "PPV"], rows))
    rows = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        st = s.get("st_depression")
        if not st:
            continue
        for ref, key in (("STD_ code (record)", "record_vs_std_code"),
                         ("report text (record)", "record_vs_report_text"),
                         (f"report text (lead; {st['records_with_named_leads']} reports)", "lead_vs_report_text")):
            x = st[key]
            rows.append([f"PTB-XL {rate} Hz", ref, f"{x['positives']}/{x['negatives']}", fmt(x["sensitivity"]),
                         fmt(x["specificity"]), fmt(x["ppv"])])
    if rows:
        out.append("\n4th UDMI ST depression (engine only):\n")
        out.append(_table(["data", "reference", "pos/neg", "sensitivity", "specificity", "PPV"], rows))
    rows = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        for m, d in s.get("twi_without_invt_or_text", {}).items():
            rows.append([f"PTB-XL {rate} Hz", m, str(d["records"]), str(d["with_STTC"]), str(d["with_MI"]),
                         str(d["with_CD"]), str(d["with_HYP"]), str(d["with_none_of_these"])])
    if rows:
        out.append("\nRecords called TWI although neither INVT nor the report text says inverted, by the other PTB-XL "
                   "statements they carry (a record can be in several columns):\n")
        out.append(_table(["data", "method", "records", "ST/T change (STTC)", "infarction (MI)",
                           "conduction (CD)", "hypertrophy (HYP)", "none of these"], rows))
    lines = []
    for rate, s in report.get("ptbxl", {}).get("rates", {}).items():
        lines.append(f"- PTB-XL {rate} Hz: {s['records']} records (folds 1-9); report languages {s['languages']}; INVT "
                     f"{s['invt_positive']}, report text says inverted {s['text_positive']}, "
                     f"both {s['invt_and_text']}; "
                     f"reports naming the inverted leads {s['records_with_named_leads']}; median CPU ms/record " +
                     ", ".join(f"{m} {v:.1f}" for m, v in s["cpu_ms_per_record"].items()) + ".")
    out.append("\n" + "\n".join(lines))
    return "\n".join(out)


def serial_tables(report: dict[str, Any]) -> str:
    """New vs prior TWI on PTB-XL serial ECGs (evaluation/serial.py): the headline table, then every call per
    reference class."""
    from evaluation.serial import CALLS, REF_CLASSES, SUMMARY_HEADER, summary_rows

    px = report["ptbxl"]
    out = [f"PTB-XL folds 1-9: {px['serial_patients']} patients with >= 2 ECGs, {px['serial_ecgs']} ECGs, "
           f"{px['pairs']} consecutive pairs. 95 % bootstrap CIs resample patients.\n",
           _table(SUMMARY_HEADER, summary_rows(report))]
    rows = []
    for rate, s in px["rates"].items():
        for ref, r in s["references"].items():
            for m, x in r["methods"].items():
                rows.append([f"{rate} Hz", ref.replace("_", " "), m] +
                            [" / ".join(str(x["calls"][k][c]) for c in CALLS) for k in REF_CLASSES])
    out.append("\nAll calls, per reference class (called new / persistent / unknown / none):\n")
    out.append(_table(["rate", "reference", "method"] + [f"reference {k}" for k in REF_CLASSES], rows))
    lines = []
    for rate, s in px["rates"].items():
        g = s.get("days_between", {})
        gap = (f"; days between prior and current: median {g['median']:.1f} (IQR {g['p25']:.1f}-{g['p75']:.1f}), "
               f"{g['within_1_day']} within a day, {g['over_1_year']} over a year" if g.get("n") else "")
        lines.append(f"- {rate} Hz: {s['patients']} patients, {s['pairs']} pairs, {s['ecgs']} ECGs; "
                     f"{s.get('pairs_same_recording_time', 0)} pairs with the same recording time to the second" + gap
                     + ".")
    out.append("\n" + "\n".join(lines))
    out.append(f"\n{report['neurokit']}.")
    return "\n".join(out)


def main(delineation: Path | None, twi: Path | None, serial: Path | None = None) -> str:
    parts = []
    if delineation:
        parts.append(delineation_tables(json.loads(Path(delineation).read_text())))
    if twi:
        parts.append(twi_tables(json.loads(Path(twi).read_text())))
    if serial:
        parts.append(serial_tables(json.loads(Path(serial).read_text())))
    return "\n\n".join(parts)
