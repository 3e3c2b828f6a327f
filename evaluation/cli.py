"""The evaluation commands, defined once: `twiwatch evaluate ...` mounts this app and `python -m evaluation ...` runs
it, so both accept the same options. Heavy imports (NeuroKit2, matplotlib, the engine) happen inside each command."""
from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Measure the engine against cardiologist annotations and dataset labels, beside NeuroKit2 in "
                  "the same run (needs the eval extra).", no_args_is_help=True)

# Options shared by the commands (one OptionInfo may serve several commands).
JSON_OPT = typer.Option(..., "--json", help="where to write the results")
PLOTS_OPT = typer.Option(None, "--plots", help="folder for the PNG plots")
METHODS_OPT = typer.Option("dwt,peak,prominence", "--methods",
                           help="NeuroKit2 delineators, comma-separated (dwt,peak,prominence)")
WORKERS_OPT = typer.Option(None, "--workers", help="worker processes (default: CPU count, max 8)")
N_BOOT_OPT = typer.Option(2000, "--n-boot", help="bootstrap resamples")
NO_PROGRESS_OPT = typer.Option(False, "--no-progress", help="no progress bar and no printed summary")
SPLITS = ("tune", "rest", "all")


def _methods(text: str) -> tuple[str, ...]:
    return tuple(m for m in text.split(",") if m)


@app.command("delineation")
def delineation(
    ludb: Path = typer.Option(..., "--ludb", help="LUDB folder (data/ + ludb.csv, or a folder above it)"),
    json_path: Path = JSON_OPT,
    split: str | None = typer.Option(None, "--split", help="tune | rest | all (tune = ids ≡ 1 mod 4, used for "
                                        "tuning)"),
    records: str | None = typer.Option(None, "--records", help="comma-separated LUDB ids (never ids divisible "
                                          "by 4)"),
    plots: Path | None = PLOTS_OPT,
    methods: str = METHODS_OPT,
    workers: int | None = WORKERS_OPT,
    n_boot: int = N_BOOT_OPT,
    no_progress: bool = NO_PROGRESS_OPT,
) -> None:
    """QRS and T detection, T-peak/T-offset error and T polarity per lead, ours vs NeuroKit2, with bootstrap CIs."""
    from evaluation.delineation import run_delineation

    if split is not None and split not in SPLITS:
        raise typer.BadParameter("--split must be one of tune, rest, all")
    ids = [int(x) for x in records.split(",")] if records else None
    run_delineation(ludb, json_path, records=ids, split=split, plots_dir=plots, progress=not no_progress,
                    methods=_methods(methods), workers=workers, n_boot=n_boot)


@app.command("twi")
def twi(
    data: Path = typer.Option(..., "--data", help="folder with ptbxl/ and ludb/ (e.g. ../shared/data or samples/)"),
    json_path: Path = JSON_OPT,
    cinc_dir: Path | None = typer.Option(None, "--cinc", help="also: a folder of CinC-format records (SNOMED labels; "
                                         "ours only)"),
    limit: int | None = typer.Option(None, "--limit", help="at most this many records per part (first by id)"),
    plots: Path | None = PLOTS_OPT,
    methods: str = METHODS_OPT,
    workers: int | None = WORKERS_OPT,
    n_boot: int = N_BOOT_OPT,
    no_progress: bool = NO_PROGRESS_OPT,
) -> None:
    """TWI per record and per lead (PTB-XL INVT and report text, LUDB-derived) and secondary causes, with CIs."""
    from evaluation.twi import run_twi

    run_twi(data, json_path, limit=limit, plots_dir=plots, progress=not no_progress, methods=_methods(methods),
            workers=workers, n_boot=n_boot, cinc_dir=cinc_dir)


@app.command("secondary")
def secondary(
    data: Path | None = typer.Option(None, "--data", help="folder with ptbxl/ (folds 1-9 are read; 100 Hz)"),
    cinc_dir: Path | None = typer.Option(None, "--cinc", help="folder of CinC-format records (NAME.hea + .mat)"),
    json_path: Path = JSON_OPT,
    workers: int | None = WORKERS_OPT,
    n_boot: int = N_BOOT_OPT,
    no_progress: bool = NO_PROGRESS_OPT,
) -> None:
    """Secondary causes (LBBB, RBBB, their incomplete forms, LVH by voltage and with strain, pacing) vs PTB-XL codes and
    CinC SNOMED labels, with the CinC quality, TWI and CPU summary; tune/untouched splits."""
    from evaluation.ood import run_secondary

    if data is None and cinc_dir is None:
        raise typer.BadParameter("give --data and/or --cinc")
    run_secondary(data, cinc_dir, json_path, workers=workers, n_boot=n_boot, progress=not no_progress)


@app.command("serial")
def serial(
    data: Path = typer.Option(..., "--data", help="folder with ptbxl/ (e.g. ../shared/data or samples/)"),
    json_path: Path = JSON_OPT,
    limit: int | None = typer.Option(None, "--limit", help="at most this many serial patients (first by ecg_id)"),
    methods: str = typer.Option("dwt", "--methods", help="NeuroKit2 delineators to compare (default dwt; '' for "
                                "none)"),
    workers: int | None = WORKERS_OPT,
    n_boot: int = N_BOOT_OPT,
    no_progress: bool = NO_PROGRESS_OPT,
) -> None:
    """New vs prior TWI on PTB-XL serial ECGs (folds 1-9): our novelty calls (and NeuroKit2's) vs INVT / report text."""
    from evaluation.serial import run_serial

    run_serial(data, json_path, limit=limit, progress=not no_progress, methods=_methods(methods), workers=workers,
               n_boot=n_boot)


@app.command("markdown")
def markdown(
    delineation: Path | None = typer.Option(None, "--delineation", help="a delineation JSON report"),
    twi: Path | None = typer.Option(None, "--twi", help="a twi JSON report"),
    serial: Path | None = typer.Option(None, "--serial", help="a serial JSON report"),
) -> None:
    """Markdown tables of the JSON reports (as in docs/EVALUATION.md)."""
    from evaluation.markdown import main as tables

    print(tables(delineation, twi, serial))


@app.command("monitor")
def monitor(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="folder with long/ and ptbxl/"),
    json_path: Path = JSON_OPT,
    plots: Path | None = typer.Option(Path("docs/results"), "--plots", help="folder for the episode plots"),
    no_stitched: bool = typer.Option(False, "--no-stitched", help="skip the stitched PTB-XL streams"),
    no_progress: bool = NO_PROGRESS_OPT,
) -> None:
    """Monitor streams on event time: false episodes per monitored hour on the long recordings (tune and report
    parts apart) and detection on stitched PTB-XL serial ECGs."""
    from evaluation.monitor import run_monitor

    run_monitor(data, json_path, plots_dir=plots, stitched=not no_stitched, progress=not no_progress)


@app.command("blind-set")
def blind_set(
    cinc: Path = typer.Option(Path("../shared/data/ood"), "--cinc", help="CinC-format records (SNOMED labels)"),
    twi_json: Path = typer.Option(Path("docs/results/twi_ours_ood.json"), "--twi-json",
                                  help="`evaluate twi --cinc` results (the engine's calls)"),
    secondary_json: Path = typer.Option(Path("docs/results/secondary.json"), "--secondary-json",
                                        help="`evaluate secondary --cinc` results"),
    cases: Path = typer.Option(..., "--cases", help="folder for the anonymous drawings and the judgment template"),
    key: Path = typer.Option(..., "--key", help="where the key goes (keep it away from the reviewer)"),
) -> None:
    """Draw the label-check set blind: disagreements and as many agreements, shuffled, no names, no engine output."""
    from evaluation.blind_review import make_set

    typer.echo(json.dumps(make_set(cinc, twi_json, secondary_json, cases, key)))


@app.command("blind-score")
def blind_score(
    key: Path = typer.Option(..., "--key", help="the key written by blind-set"),
    judgments: Path = typer.Option(..., "--judgments", help="the reviewer's filled-in template"),
    json_path: Path = JSON_OPT,
) -> None:
    """Compare a blind reviewer's judgments with the labels and with the engine."""
    from evaluation.blind_review import score

    out = score(key, judgments)
    json_path.write_text(json.dumps(out, indent=1) + "\n")
    typer.echo(json.dumps({k: out[k] for k in ("twi", "rbbb")}))
