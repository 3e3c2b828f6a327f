"""Commands of the integrations layer that need no running service and no process settings: analyse a WFDB record,
export and train the encoder (`twiwatch analyze|model|train`).
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
app = typer.Typer(no_args_is_help=True)
model_app = typer.Typer(help="The ECG encoder: export to ONNX.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
def analyze(
    record: Path = typer.Argument(..., help="WFDB record path without extension"),
    json_path: Path | None = typer.Option(None, "--json", help="write the analysis here (default: stdout)"),
) -> None:
    """Analyse one WFDB record with the TWI engine and print the per-lead measures and calls."""
    from engine.analyze import analyze as run
    from integrations.datasets.wfdb_io import read_wfdb

    result = run(read_wfdb(record)).to_dict()
    text = json.dumps(result, indent=2, default=str)
    if json_path:
        json_path.write_text(text + "\n")
        console.print(f"wrote {json_path}")
    else:
        print(text)


@model_app.command("export")
def model_export(
    out: Path = typer.Option(..., "--out", help="ONNX file to write (a manifest .json is written beside it)"),
    variant: str = typer.Option("coca-b50", help="coca-b50 (the published ECG-CoCa tower) or coca-s50 (small, CPU)"),
    checkpoint: Path | None = typer.Option(None, help="local checkpoint in the public ECG-CoCa layout (ecg.* keys)"),
    tokens: bool = typer.Option(False, help="also output the 101x768 token sequence (what ECG-R1 consumes)"),
) -> None:
    """Export the encoder to ONNX (dynamic batch, opset 18) with a manifest. Never downloads weights."""
    from engine.encoder.checkpoint import CheckpointError
    from integrations.encoder.export import export_onnx

    try:
        manifest = export_onnx(variant, out, checkpoint=checkpoint, tokens=tokens)
    except CheckpointError as exc:
        console.print(f"[red]checkpoint does not fit {variant}:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"wrote {out} (sha256 {manifest['model_sha256'][:16]}…) and its manifest")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="folder for weights, ONNX export, metrics and MODEL_CARD.md"),
    data: Path = typer.Option(Path("../shared/data"), help="the development data (LUDB, PTB-XL folds 1-9)"),
    variant: str = typer.Option("coca-s50", help="encoder variant"),
    seed: int = typer.Option(0, help="random seed (splits are fixed; the seed sets init and order)"),
    epochs: int = typer.Option(12, help="training epochs"),
    ship_to: Path | None = typer.Option(None, help="also copy the ONNX model, manifest and card here"),
) -> None:
    """Train the small encoder + triage head on patient-disjoint splits (PTB-XL strat_fold, LUDB by record)."""
    from integrations.encoder.train import train as run

    metrics = run(data, out, variant=variant, seed=seed, epochs=epochs, ship_to=ship_to,
                  log=lambda m: console.print(m))
    console.print_json(json.dumps(metrics.get("test", metrics), default=str))


