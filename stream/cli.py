"""`twiwatch`: one CLI, composed from each package's own commands. Research use only, not for clinical use.

Processes (worker, MLLP bridge, reasoner shim, FHIR sink) have their entry points in `stream`; developer tools in
`stream.devtools`; offline tools in `integrations.cli` and `evaluation.cli`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from evaluation.cli import app as evaluate_app
from integrations.cli import app as integrations_app
from stream.config import dashboard_settings, fhir_sink_settings, mllp_settings, tool_settings, worker_settings
from stream.devtools.cli import app as devtools_app
from stream.devtools.fhir_cli import app as fhir_server_app
from stream.reasoner_main import app as reasoner_app

console = Console(stderr=True)
app = typer.Typer(
    help="twiwatch: finds new T-wave inversions in streaming ECGs (HL7 v2 / FHIR over Kafka) and reports them as "
    "FHIR DiagnosticReports. RESEARCH USE ONLY, NOT FOR CLINICAL USE.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = typer.Typer(help="Kafka topics twiwatch uses.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
users_app = typer.Typer(help="The review dashboard's local accounts (its store: TWIWATCH_DASHBOARD_DB_URL).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics (partitions, replication and the size limit from config)."""
    from stream.topics import ensure_topics, topic_specs

    s = tool_settings()
    created = ensure_topics(s, topic_specs(s))
    console.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """The topics and what each carries."""
    from stream.topics import topic_specs

    for spec in topic_specs(tool_settings()):
        console.print(f"[bold]{spec.name}[/bold]  {spec.purpose}")


@app.command()
def worker(loglevel: str = typer.Option("info", help="faust log level")) -> None:
    """Run the faust-streaming worker (decode -> per-patient analysis -> DiagnosticReport)."""
    from stream.worker_main import run_worker

    run_worker(worker_settings(), loglevel=loglevel)


@app.command()
def mllp(
    host: str | None = typer.Option(None, help="listen address (default TWIWATCH_MLLP_HOST)"),
    port: int | None = typer.Option(None, help="listen port (default TWIWATCH_MLLP_PORT)"),
) -> None:
    """Receive HL7 v2 over MLLP and write it to Kafka; ACK AA only once the broker has it."""
    from stream.mllp_main import serve_bridge

    serve_bridge(mllp_settings(), host=host, port=port)


@app.command()
def decode(
    file: Path = typer.Argument(..., help="one message: HL7 v2 (\\r or \\n segment ends) or FHIR JSON/XML"),
    kind: str = typer.Option("auto", "--kind",
                             help="auto (the sender's rule decides, as in the worker) | strip | chunk"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the summary here"),
) -> None:
    """Decode one message file exactly as the worker would and print what it holds (exit 0) or the dead letter's
    code and reason (exit 2). Uses the site's sender rules (TWIWATCH_SENDERS) and HL7 settings."""
    import json

    from integrations.describe import describe_message

    if kind not in ("auto", "strip", "chunk"):
        raise typer.BadParameter("--kind must be auto, strip or chunk")
    s = worker_settings()
    summary = describe_message(file.read_bytes(), kind=kind, rules=s.sender_rules(),  # type: ignore[arg-type]
                               **s.hl7_decode_options())
    text = json.dumps(summary, indent=2)
    if json_path:
        json_path.write_text(text + "\n")
    print(text)
    raise typer.Exit(2 if summary.get("error") else 0)


@app.command("fhir-sink")
def fhir_sink() -> None:
    """Write every report version from the reports topic to a FHIR server (TWIWATCH_FHIR_SINK_URL): idempotent, in
    order, through outages; permanent refusals to the delivery dead-letter topic."""
    from stream.fhir_sink_main import run_sink

    run_sink(fhir_sink_settings())


@app.command()
def dashboard(
    host: str | None = typer.Option(None, help="listen address (default TWIWATCH_DASHBOARD_HOST; 0.0.0.0 in a pod)"),
    port: int | None = typer.Option(None, help="listen port (default TWIWATCH_DASHBOARD_PORT)"),
) -> None:
    """Run the review dashboard: consumes the report and analysis topics into its store, serves the queue and alert
    pages (login required), publishes reviewers' actions to the adjudications topic. Research use only."""
    from stream.dashboard_main import run_dashboard

    run_dashboard(dashboard_settings(), host=host, port=port)


def _users_store():
    from integrations.dashboard import store
    from stream.dashboard_main import store_url

    url = store_url(dashboard_settings())
    store.migrate(url)
    engine = store.make_engine(url)
    return store, engine, store.session_factory(engine)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="the account name (shown in the audit trail; not published)"),
    role: str = typer.Option("reviewer", help="reviewer | admin (admin: users, audit trail, export)"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Add a local account (argon2id-hashed password). Without --password-stdin the password is prompted for."""
    import sys

    if role not in ("reviewer", "admin"):
        raise typer.BadParameter("--role must be reviewer or admin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        console.print("refused: passwords have at least 12 characters")
        raise typer.Exit(2)
    store, engine, factory = _users_store()
    try:
        with factory() as s:
            store.add_user(s, name, role, password)
            s.commit()
    except store.AccountExists:
        console.print(f"refused: an account named {name!r} exists already")
        raise typer.Exit(1) from None
    except ValueError as exc:
        console.print(f"refused: {exc}")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(f"added {name} ({role})")


@users_app.command("list")
def users_list() -> None:
    """The accounts: name, role, active."""
    store, engine, factory = _users_store()
    try:
        with factory() as s:
            for account in store.list_users(s):
                print(f"{account.name}\t{account.role}\t{'active' if account.active else 'disabled'}")
    finally:
        engine.dispose()


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="the account to disable (its sessions end)")) -> None:
    """Disable an account: it can no longer log in and its open sessions end."""
    store, engine, factory = _users_store()
    try:
        with factory() as s:
            store.disable_user(s, name)
            s.commit()
    except store.UnknownAccount:
        console.print(f"no account named {name!r}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"disabled {name}")


def _compose() -> None:
    for group in (devtools_app, integrations_app):
        for command in group.registered_commands:
            app.registered_commands.append(command)
        for sub in group.registered_groups:
            app.registered_groups.append(sub)
    app.add_typer(reasoner_app, name="reasoner")
    app.add_typer(fhir_server_app, name="fhir-server")
    # `twiwatch evaluate ...` is the evaluation package's own command group (also `python -m evaluation ...`)
    app.add_typer(evaluate_app, name="evaluate")


_compose()


def main() -> None:
    logging.basicConfig(level=tool_settings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter hides our own lines
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per FHIR request (URLs can name patients)
    app()


if __name__ == "__main__":
    main()
