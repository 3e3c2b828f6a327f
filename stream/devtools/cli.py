"""Developer tools' commands: the local broker, replay, e2e (optionally through the FHIR sink to a FHIR server) and
the report watcher (`twiwatch kafka|replay|e2e|reports`).

They start or imitate every process, so they read `ToolSettings` (all groups plus the local broker's).
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from stream.config import tool_settings as settings

console = Console(stderr=True)
app = typer.Typer(no_args_is_help=True)
kafka_app = typer.Typer(help="A local single-node Apache Kafka (KRaft) resolved from Maven Central.",
                        no_args_is_help=True)
reports_app = typer.Typer(help="Look at the research-only DiagnosticReports on the reports topic.",
                          no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(reports_app, name="reports")


def _local_kafka():
    from stream.devtools.kafka_local import LocalKafka

    s = settings()
    return LocalKafka(s.cache_dir, s.kafka_version, s.kafka_port, s.max_message_bytes, s.kafka_heap_opts)


@kafka_app.command("up")
def kafka_up(timeout: float = typer.Option(120, help="seconds to wait for the broker to answer")) -> None:
    """Resolve (first time), format and start the broker; wait until it answers."""
    from stream.devtools.kafka_local import up

    console.print(up(_local_kafka(), timeout_s=timeout))


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker cleanly."""
    from stream.devtools.kafka_local import down

    console.print(down(_local_kafka()))


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 when the broker answers, 1 otherwise."""
    from stream.devtools.kafka_local import status

    ok, line = status(_local_kafka())
    console.print(line)
    raise typer.Exit(0 if ok else 1)


@kafka_app.command("wipe")
def kafka_wipe() -> None:
    """Delete the local broker's data (it must be down)."""
    from stream.devtools.kafka_local import wipe

    wipe(_local_kafka())
    console.print("local Kafka data deleted")


@app.command()
def replay(
    source: Path = typer.Argument(None, help="folder of WFDB recordings (LUDB / PTB-XL layout); default: samples/"),
    format: str = typer.Option("mixed", "--format", help="hl7 | fhir | mixed"),
    rate: float = typer.Option(2.0, help="messages per second (0 = as fast as possible)"),
    patients: int | None = typer.Option(None, help="spread over N synthetic patients instead of the real ids"),
    loop: bool = typer.Option(False, help="start again at the end (stop with Ctrl-C)"),
    count: int | None = typer.Option(None, help="stop after this many messages"),
    prefer_500hz: bool = typer.Option(False, help="PTB-XL: use the 500 Hz records where present"),
    monitors: int | None = typer.Option(None, help="stream long recordings as N bedside monitors in 1-s chunks "
                                        "(default source: samples/long)"),
    monitor_format: str = typer.Option("mixed", help="with --monitors: pcd01 | w01 | pocd | mixed"),
    seconds: float | None = typer.Option(None, help="with --monitors: seconds of each bed's stream (default: all)"),
    speed: float = typer.Option(1.0, help="with --monitors: event time per wall time (1 = real time, 0 = flat out)"),
    jitter_ms: float = typer.Option(0.0, help="with --monitors: stamp jitter, +- ms"),
    reorder: float = typer.Option(0.0, help="with --monitors: chance a chunk goes after the next one"),
    duplicates: float = typer.Option(0.0, help="with --monitors: chance a chunk is sent twice"),
    dropout: float = typer.Option(0.0, help="with --monitors: chance a chunk is lost"),
    lead_off: float = typer.Option(0.0, help="with --monitors: chance a chunk has its second lead off (INOP)"),
    patient_change_at: float | None = typer.Option(None, help="with --monitors: seconds in, another patient"),
    stitched: bool = typer.Option(False, help="STITCHED streams: a PTB-XL patient's serial ECGs where the strip "
                                  "analysis finds a new TWI, each strip repeated 3 min (tests the streaming path)"),
) -> None:
    """Stream real ECG recordings into Kafka as if from bedside monitors (HL7) and ECG carts (FHIR)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if monitors is not None or stitched:
        replay_monitors(source, monitors, monitor_format, seconds, speed, stitched,
                        dict(jitter_s=jitter_ms / 1000, reorder=reorder, duplicate=duplicates, dropout=dropout,
                             lead_off=lead_off, patient_change_s=patient_change_at))
        return

    from stream.devtools.replay import FORMATS, default_source, load_recordings, messages, send_all
    from stream.producer import make_producer
    from stream.topics import edge_topic_specs, ensure_topics

    if format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    s = settings()
    ensure_topics(s, edge_topic_specs(s))
    recordings = load_recordings(source or default_source(), prefer_500hz)
    total = count or (None if loop else len(recordings))
    if patients:
        console.print(f"[yellow]synthetic load: {patients} synthetic patient ids (synthetic-N), "
                      "not the recordings' own[/yellow]")
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


def replay_monitors(source: Path | None, n: int | None, fmt: str, seconds: float | None, speed: float, stitched: bool,
                    faults: dict) -> None:
    import time

    from stream.devtools import monitors as mon
    from stream.devtools.replay import default_source, load_recordings
    from stream.producer import make_producer
    from stream.topics import edge_topic_specs, ensure_topics

    if fmt not in mon.MONITOR_FORMATS:
        raise typer.BadParameter(f"--monitor-format must be one of {', '.join(mon.MONITOR_FORMATS)}")
    s = settings()
    ensure_topics(s, edge_topic_specs(s))
    session = int(time.time()) // 60  # each run's beds are new monitors on the broker
    if stitched:
        pairs = mon.stitched_pairs(load_recordings(source or default_source()))
        beds = mon.stitched_beds(pairs, fmt="pocd" if fmt == "mixed" else fmt, session=session)
        console.print(f"[yellow]STITCHED streams ({len(beds)}): serial PTB-XL ECGs, each strip repeated 3 min; "
                      "they test the streaming path, not the detector[/yellow]")
    else:
        folder = source or default_source() / "long"
        beds = mon.monitor_beds(mon.load_long_recordings(folder), n or 1, fmt, session=session)
    t0 = float(int(time.time()))
    seconds = seconds or max(b.record.duration_s for b in beds)
    plan = mon.Plan(beds, t0=t0, seconds=seconds, faults=mon.Faults(**faults))
    console.print(f"{len(beds)} bed(s), up to {seconds:g} s each, speed {speed:g}; chunk feeds need TWIWATCH_SENDERS="
                  f"'{mon.rules_json()}'")
    producer = make_producer(s, client_id="twiwatch-replay-monitors")
    try:
        result = mon.send_paced(producer, mon.chunk_messages(plan, s, run_id=str(int(t0))), t0=t0, speed=speed)
    except KeyboardInterrupt:
        result = {"stopped": True}
    finally:
        producer.close()
    console.print(f"replay done: {result}")


@app.command()
def e2e(
    messages_: int = typer.Option(40, "--messages", help="valid ECG messages to send (half HL7, half FHIR)"),
    json_path: Path = typer.Option(..., "--json", help="where to write the summary"),
    source: Path | None = typer.Option(None, help="recordings folder (default samples/)"),
    timeout: float = typer.Option(300, help="seconds to wait for all outputs"),
    rate: float = typer.Option(0, help="messages per second (0 = all at once: latency then includes queueing)"),
    fhir_server: bool = typer.Option(False, "--fhir-server", help="also start a FHIR server (local HAPI, in "
                                     "memory) and the FHIR sink, and judge what reached the server"),
    fhir_url: str | None = typer.Option(None, help="with --fhir-server: deliver to this FHIR base URL instead "
                                        "(auth and TLS from the TWIWATCH_FHIR_SINK_* settings)"),
) -> None:
    """Start a worker, replay real ECGs plus the bad-input corpus, and summarise what came out."""
    from stream.devtools.e2e import run_e2e, write_summary
    from stream.devtools.replay import default_source

    result = run_e2e(settings(), messages_, source or default_source(), timeout_s=timeout,
                     log=lambda m: console.print(m), rate=rate or None, fhir_server=fhir_server or bool(fhir_url),
                     fhir_url=fhir_url)
    summary, details = result.summary, result.details
    write_summary(summary, json_path)
    console.print_json(json.dumps(summary))
    console.print(f"details: {json.dumps(details)}")
    ok = (summary["reports"] == summary["sent_valid"] and summary["research_flagged"] == summary["reports"]
          and summary["fhir_valid"] == summary["reports"] and summary["deadletter"] == summary["sent_invalid"]
          and summary["duplicates"] == 0
          # e2e runs no reasoner, so each report has one version and one analysis message (docs/SPEC.md §13.1)
          and summary.get("analysis_messages") == summary["reports"])
    if "delivered" in summary:
        ok = ok and (summary["delivered"] == summary["reports"] == summary["delivered_latest"]
                     and summary["delivered_duplicates"] == 0)
    raise typer.Exit(0 if ok else 1)


@reports_app.command("watch")
def reports_watch(
    until_idle: float | None = typer.Option(None, help="stop after this many seconds without a new report"),
    since_ms: int | None = typer.Option(None, help="start at this broker time (ms since epoch); default: now"),
) -> None:
    """Print each report version as it arrives: status, TWI groups, novelty, triage (no patient identifiers)."""
    from stream.devtools.watch import watch_reports

    watch_reports(settings(), until_idle=until_idle, since_ms=since_ms, console=Console())


