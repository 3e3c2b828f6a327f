"""`python -m evaluation delineation|twi|serial ...`: the same as `twiwatch evaluate delineation|twi|serial ...`."""
from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.neurokit_baseline import METHODS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (a function so that tests can compare its options with the twiwatch CLI's)."""
    ap = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("delineation", help="ours vs NeuroKit2 against the LUDB annotations")
    d.add_argument("--ludb", required=True, type=Path, help="LUDB folder (data/ + ludb.csv, or a folder above it)")
    d.add_argument("--split", choices=["tune", "rest", "all"], default=None, help="evaluate only these records")
    d.add_argument("--records", default=None, help="comma-separated LUDB ids (never ids divisible by 4)")
    t = sub.add_parser("twi", help="TWI and secondary causes vs PTB-XL labels/report text and LUDB-derived references")
    t.add_argument("--data", required=True, type=Path, help="folder holding ptbxl/ and/or ludb/")
    t.add_argument("--limit", type=int, default=None, help="at most this many records per part (PTB-XL per rate, LUDB)")
    s = sub.add_parser("serial", help="new vs prior TWI on PTB-XL serial ECGs (folds 1-9)")
    s.add_argument("--data", required=True, type=Path, help="folder holding ptbxl/, or a PTB-XL folder")
    s.add_argument("--limit", type=int, default=None, help="at most this many serial patients (first by ecg_id)")
    s.add_argument("--methods", default="dwt", help="NeuroKit2 delineators to compare (default dwt; '' for none)")
    md = sub.add_parser("markdown", help="markdown tables of the JSON reports (for docs/EVALUATION.md)")
    md.add_argument("--delineation", type=Path, default=None)
    md.add_argument("--twi", type=Path, default=None)
    md.add_argument("--serial", type=Path, default=None)
    for p in (d, t):
        p.add_argument("--plots", type=Path, default=None, help="write PNG plots into this folder")
        p.add_argument("--methods", default=",".join(METHODS), help="NeuroKit2 delineators (dwt,peak,prominence)")
    for p in (d, t, s):
        p.add_argument("--json", required=True, type=Path, help="write the report here")
        p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, max 8)")
        p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
        p.add_argument("--no-progress", action="store_true", help="no progress bar and no printed summary")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if a.cmd == "markdown":
        from evaluation.markdown import main as markdown

        print(markdown(a.delineation, a.twi, a.serial))
        return
    methods = tuple(m for m in a.methods.split(",") if m)
    if a.cmd == "delineation":
        from evaluation.delineation import run_delineation

        records = [int(x) for x in a.records.split(",")] if a.records else None
        run_delineation(a.ludb, a.json, records=records, split=a.split, plots_dir=a.plots, progress=not a.no_progress,
                        methods=methods, workers=a.workers, n_boot=a.n_boot)
    elif a.cmd == "twi":
        from evaluation.twi import run_twi

        run_twi(a.data, a.json, limit=a.limit, plots_dir=a.plots, progress=not a.no_progress, methods=methods,
                workers=a.workers, n_boot=a.n_boot)
    else:
        from evaluation.serial import run_serial

        run_serial(a.data, a.json, limit=a.limit, progress=not a.no_progress, methods=methods, workers=a.workers,
                   n_boot=a.n_boot)


if __name__ == "__main__":
    main()
