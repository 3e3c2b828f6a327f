"""`twiwatch`: one CLI for every process and tool. Research use only, not for clinical use."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from evaluation.cli import app as evaluate_app
from stream.config import settings

console = Console(stderr=True)
app = typer.Typer(
    help="twiwatch: finds new T-wave inversions in streaming ECGs (HL7 v2 / FHIR over Kafka) and reports them as "
    "FHIR DiagnosticReports. RESEARCH USE ONLY, NOT FOR CLINICAL USE.",
    no_args_is_help=True,
    add_completion=False,
)
kafka_app = typer.Typer(help="A local single-node Apache Kafka (KRaft) resolved from Maven Central.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics twiwatch uses.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")


def _local_kafka():
    from stream.kafka_local import LocalKafka

    s = settings()
    return LocalKafka(s.cache_dir, s.kafka_version, s.kafka_port, s.max_message_bytes, s.kafka_heap_opts)


@kafka_app.command("up")
def kafka_up(timeout: float = typer.Option(120, help="seconds to wait for the broker to answer")) -> None:
    """Resolve (first time), format and start the broker; wait until it answers."""
    from stream.kafka_local import up

    console.print(up(_local_kafka(), timeout_s=timeout))


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker cleanly."""
    from stream.kafka_local import down

    console.print(down(_local_kafka()))


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 when the broker answers, 1 otherwise."""
    from stream.kafka_local import status

    ok, line = status(_local_kafka())
    console.print(line)
    raise typer.Exit(0 if ok else 1)


@kafka_app.command("wipe")
def kafka_wipe() -> None:
    """Delete the local broker's data (it must be down)."""
    from stream.kafka_local import wipe

    wipe(_local_kafka())
    console.print("local Kafka data deleted")


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics (partitions, replication and the size limit from config)."""
    from stream.topics import ensure_topics

    created = ensure_topics(settings())
    console.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """The topics and what each carries."""
    from stream.topics import topic_specs

    for spec in topic_specs(settings()):
        console.print(f"[bold]{spec.name}[/bold]  {spec.purpose}")


@app.command()
def worker(loglevel: str = typer.Option("info", help="faust log level")) -> None:
    """Run the faust-streaming worker (decode -> per-patient analysis -> DiagnosticReport)."""
    from stream.topics import ensure_topics
    from stream.worker import run_worker

    s = settings()
    ensure_topics(s)
    sys.argv = [sys.argv[0], "worker"]  # faust's Worker parses argv; ours are already consumed
    run_worker(s, loglevel=loglevel)


@app.command()
def mllp(
    host: Optional[str] = typer.Option(None, help="listen address (default TWIWATCH_MLLP_HOST)"),
    port: Optional[int] = typer.Option(None, help="listen port (default TWIWATCH_MLLP_PORT)"),
) -> None:
    """Receive HL7 v2 over MLLP and write it to Kafka; ACK AA only once the broker has it."""
    from stream.mllp_main import serve_bridge

    serve_bridge(settings(), host=host, port=port)


@app.command()
def replay(
    source: Path = typer.Argument(None, help="folder of WFDB recordings (LUDB / PTB-XL layout); default: samples/"),
    format: str = typer.Option("mixed", "--format", help="hl7 | fhir | mixed"),
    rate: float = typer.Option(2.0, help="messages per second (0 = as fast as possible)"),
    patients: Optional[int] = typer.Option(None, help="spread over N synthetic patients instead of the real ids"),
    loop: bool = typer.Option(False, help="start again at the end (stop with Ctrl-C)"),
    count: Optional[int] = typer.Option(None, help="stop after this many messages"),
    prefer_500hz: bool = typer.Option(False, help="PTB-XL: use the 500 Hz records where present"),
) -> None:
    """Stream real ECG recordings into Kafka as if from bedside monitors (HL7) and ECG carts (FHIR)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stream.producer import make_producer
    from stream.replay import FORMATS, default_source, load_recordings, messages, send_all
    from stream.topics import ensure_topics

    if format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    s = settings()
    ensure_topics(s)
    recordings = load_recordings(source or default_source(), prefer_500hz)
    total = count or (None if loop else len(recordings))
    if patients:
        console.print(f"[yellow]synthetic load: {patients} synthetic patient ids (synthetic-N), not the recordings' own[/yellow]")
    producer = make_producer(s, client_id="twiwatch-replay")
    with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console) as progress:
        task = progress.add_task("", total=total)

        def on_sent(item):
            progress.update(task, advance=1, description=f"{item.fmt} {item.record_name}")

        try:
            result = send_all(producer, messages(recordings, format, s, patients=patients, loop=loop, count=count),
                              s, rate=rate or None, on_sent=on_sent)
        except KeyboardInterrupt:
            result = {"stopped": True}
        finally:
            producer.close()
    console.print(f"replay done: {result}")


@app.command()
def e2e(
    messages_: int = typer.Option(40, "--messages", help="valid ECG messages to send (half HL7, half FHIR)"),
    json_path: Path = typer.Option(..., "--json", help="where to write the summary"),
    source: Optional[Path] = typer.Option(None, help="recordings folder (default samples/)"),
    timeout: float = typer.Option(300, help="seconds to wait for all outputs"),
    rate: float = typer.Option(0, help="messages per second (0 = all at once: latency then includes queueing)"),
) -> None:
    """Start a worker, replay real ECGs plus the bad-input corpus, and summarise what came out."""
    from stream.e2e import run_e2e, write_summary
    from stream.replay import default_source

    result = run_e2e(settings(), messages_, source or default_source(), timeout_s=timeout,
                     log=lambda m: console.print(m), rate=rate or None)
    summary, details = result.summary, result.details
    write_summary(summary, json_path)
    console.print_json(json.dumps(summary))
    console.print(f"details: {json.dumps(details)}")
    ok = (summary["reports"] == summary["sent_valid"] and summary["research_flagged"] == summary["reports"]
          and summary["fhir_valid"] == summary["reports"] and summary["deadletter"] == summary["sent_invalid"]
          and summary["duplicates"] == 0)
    raise typer.Exit(0 if ok else 1)


reports_app = typer.Typer(help="Look at the research-only DiagnosticReports on the reports topic.", no_args_is_help=True)
app.add_typer(reports_app, name="reports")


@reports_app.command("watch")
def reports_watch(
    until_idle: Optional[float] = typer.Option(None, help="stop after this many seconds without a new report"),
    since_ms: Optional[int] = typer.Option(None, help="start at this broker time (ms since epoch); default: now"),
) -> None:
    """Print each report version as it arrives: status, TWI groups, novelty, triage (no patient identifiers)."""
    from stream.watch import watch_reports

    watch_reports(settings(), until_idle=until_idle, since_ms=since_ms, console=Console())


model_app = typer.Typer(help="The ECG encoder: export to ONNX.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("export")
def model_export(
    out: Path = typer.Option(..., "--out", help="ONNX file to write (a manifest .json is written beside it)"),
    variant: str = typer.Option("coca-b50", help="coca-b50 (the published ECG-CoCa tower) or coca-s50 (small, CPU)"),
    checkpoint: Optional[Path] = typer.Option(None, help="local checkpoint in the public ECG-CoCa layout (ecg.* keys)"),
    tokens: bool = typer.Option(False, help="also output the 101x768 token sequence (what ECG-R1 consumes)"),
) -> None:
    """Export the encoder to ONNX (dynamic batch, opset 18) with a manifest. Never downloads weights."""
    from engine.encoder.checkpoint import CheckpointError
    from engine.encoder.export import export_onnx

    try:
        manifest = export_onnx(variant, out, checkpoint=checkpoint, tokens=tokens)
    except CheckpointError as exc:
        console.print(f"[red]checkpoint does not fit {variant}:[/red] {exc}")
        raise typer.Exit(2)
    console.print(f"wrote {out} (sha256 {manifest['model_sha256'][:16]}…) and its manifest")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="folder for weights, ONNX export, metrics and MODEL_CARD.md"),
    data: Path = typer.Option(Path("../shared/data"), help="the development data (LUDB, PTB-XL folds 1-9)"),
    variant: str = typer.Option("coca-s50", help="encoder variant"),
    seed: int = typer.Option(0, help="random seed (splits are fixed; the seed sets init and order)"),
    epochs: int = typer.Option(12, help="training epochs"),
    ship_to: Optional[Path] = typer.Option(None, help="also copy the ONNX model, manifest and card here"),
) -> None:
    """Train the small encoder + triage head on patient-disjoint splits (PTB-XL strat_fold, LUDB by record)."""
    from engine.encoder.train import train as run

    metrics = run(data, out, variant=variant, seed=seed, epochs=epochs, ship_to=ship_to,
                  log=lambda m: console.print(m))
    console.print_json(json.dumps(metrics.get("test", metrics), default=str))


# `twiwatch evaluate ...` is the evaluation package's own command group (also `python -m evaluation ...`)
app.add_typer(evaluate_app, name="evaluate")


@app.command()
def analyze(
    record: Path = typer.Argument(..., help="WFDB record path without extension"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the analysis here (default: stdout)"),
) -> None:
    """Analyse one WFDB record with the TWI engine and print the per-lead measures and calls."""
    from engine.analyze import analyze as run

    from integrations.wfdb_io import read_wfdb

    result = run(read_wfdb(record)).to_dict()
    text = json.dumps(result, indent=2, default=str)
    if json_path:
        json_path.write_text(text + "\n")
        console.print(f"wrote {json_path}")
    else:
        print(text)


# --- ECG-R1 reasoning: the serving shim (engine/reasoner/serve.py, docs/REASONER.md) ---
reasoner_app = typer.Typer(help="ECG-R1 reasoning: the OpenAI-compatible serving shim in front of vLLM.",
                           no_args_is_help=True)
app.add_typer(reasoner_app, name="reasoner")


@reasoner_app.command("serve")
def reasoner_serve(
    model: Optional[Path] = typer.Option(None, "--model", help="local ECG-R1 model directory "
                                         "(default TWIWATCH_REASONER_SERVE_MODEL_PATH)"),
    ecg_tower: Optional[Path] = typer.Option(None, "--ecg-tower", help="local ECG encoder checkpoint "
                                             "cpt_wfep_epoch_20.pt (default TWIWATCH_REASONER_SERVE_ECG_TOWER, "
                                             "else the model config's ecg_tower_path)"),
    host: Optional[str] = typer.Option(None, help="listen address (default TWIWATCH_REASONER_SERVE_HOST)"),
    port: Optional[int] = typer.Option(None, help="port (default TWIWATCH_REASONER_SERVE_PORT)"),
    max_inflight: Optional[int] = typer.Option(None, "--max-inflight", min=1,
                                               help="generations at once (default TWIWATCH_REASONER_SERVE_MAX_INFLIGHT)"),
    max_queue: Optional[int] = typer.Option(None, "--max-queue", min=0,
                                            help="requests waiting beyond those; then 429 "
                                            "(default TWIWATCH_REASONER_SERVE_MAX_QUEUE)"),
    served_name: Optional[str] = typer.Option(None, "--served-name",
                                              help="model name to answer to (default TWIWATCH_REASONER_MODEL)"),
    standin: bool = typer.Option(False, "--standin", help="serve the STAND-IN generator instead: NOT ECG-R1, it "
                                 "replays hand-written fixture outputs (tests and demos)"),
    standin_output: str = typer.Option("cycle", "--standin-output", help="with --standin: the fixture output id "
                                       "to replay (engine/reasoner/standin_outputs.json), or 'cycle'"),
    standin_delay: float = typer.Option(0.0, "--standin-delay", min=0.0,
                                        help="with --standin: seconds each answer takes (a model's latency)"),
) -> None:
    """Serve ECG-R1 over HTTP (POST /v1/chat/completions with the `ecg` content part; /healthz, /metrics)."""
    from engine.reasoner.errors import ReasonerUnavailable
    from engine.reasoner.serve import StandinGenerator, VllmGenerator, run

    s = settings()
    model_path = model or (Path(s.reasoner_serve_model_path) if s.reasoner_serve_model_path else None)
    if standin:
        if model is not None or ecg_tower is not None:
            raise typer.BadParameter("--standin runs no model: drop --model / --ecg-tower")
        try:
            generator = StandinGenerator(standin_output, delay_s=standin_delay)
        except ValueError as exc:
            raise typer.BadParameter(str(exc))
        name = served_name  # None: the stand-in's own name, which says it is one
    else:
        if model_path is None:
            raise typer.BadParameter("--model PATH (a local ECG-R1 directory) is required, or --standin")
        tower = ecg_tower or (Path(s.reasoner_serve_ecg_tower) if s.reasoner_serve_ecg_tower else None)
        name = served_name or s.reasoner_model
        try:
            generator = VllmGenerator(model_path, ecg_tower_path=tower, served_name=name)
        except ReasonerUnavailable as exc:
            console.print(f"[red]cannot serve ECG-R1 ({exc.code}):[/red] {exc.reason}")
            raise typer.Exit(2)
    from rich.markup import escape

    style = "[bold red]" if standin else "[bold]"
    code = run(generator, host=host or s.reasoner_serve_host, port=s.reasoner_serve_port if port is None else port,
               served_name=name, max_inflight=max_inflight or s.reasoner_serve_max_inflight,
               max_queue=s.reasoner_serve_max_queue if max_queue is None else max_queue,
               max_request_bytes=s.max_message_bytes,
               announce=lambda line: console.print(style + escape(line), highlight=False))
    raise typer.Exit(code)


def main() -> None:
    logging.basicConfig(level=settings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter hides our own lines
    app()


if __name__ == "__main__":
    main()
