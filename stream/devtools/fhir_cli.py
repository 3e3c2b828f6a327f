"""`twiwatch fhir-server resolve|up|down|status|wipe`: the development FHIR server (devtools/fhir_local.py).

A developer tool for tests and the demo; the chart never deploys it.
"""
from __future__ import annotations

import typer
from rich.console import Console

from stream.config import tool_settings as settings

console = Console(stderr=True)
app = typer.Typer(help="A local HAPI FHIR JPA server (R4B or R4) resolved from Maven Central, for development.",
                  no_args_is_help=True)
VERSIONS = ("R4B", "R4")


def _local(fhir_version: str | None, port: int | None):
    from stream.devtools.fhir_local import from_settings

    s = settings()
    overrides = {}
    if fhir_version:
        if fhir_version not in VERSIONS:
            raise typer.BadParameter(f"--fhir-version must be one of {', '.join(VERSIONS)}")
        overrides["fhir_version"] = fhir_version
    if port:
        overrides["port"] = port
    return from_settings(s, **overrides)


def _running(port: int | None, fhir_version: str | None):
    """The instance to act on: the named version, else whichever version runs on the port."""
    from stream.devtools.fhir_local import running_pid

    if fhir_version:
        return _local(fhir_version, port)
    candidates = [_local(v, port) for v in VERSIONS]
    return next((f for f in candidates if running_pid(f)), _local(None, port))


@app.command("resolve")
def resolve(fhir_version: str | None = typer.Option(None, "--fhir-version", help="R4B (default) or R4")) -> None:
    """Resolve HAPI FHIR from Maven Central and compile the application class, without starting it (set-up)."""
    from stream.devtools.fhir_local import resolve as fetch

    console.print(f"HAPI FHIR resolved and built in {fetch(_local(fhir_version, None))}")


@app.command("up")
def up(
    fhir_version: str | None = typer.Option(None, "--fhir-version", help="R4B (default) or R4"),
    port: int | None = typer.Option(None, help="port (default TWIWATCH_FHIR_SERVER_PORT, 8080)"),
    timeout: float = typer.Option(240, help="seconds to wait for GET metadata to answer"),
) -> None:
    """Resolve (first time: ~300 MB from Maven Central), start and wait until the server answers."""
    from stream.devtools.fhir_local import up as start

    console.print(start(_local(fhir_version, port), timeout_s=timeout))


@app.command("down")
def down(
    fhir_version: str | None = typer.Option(None, "--fhir-version", help="R4B or R4 (default: whichever runs)"),
    port: int | None = typer.Option(None, help="port (default TWIWATCH_FHIR_SERVER_PORT)"),
) -> None:
    """Stop the server cleanly."""
    from stream.devtools.fhir_local import down as stop

    console.print(stop(_running(port, fhir_version)))


@app.command("status")
def status(
    fhir_version: str | None = typer.Option(None, "--fhir-version", help="R4B or R4 (default: whichever runs)"),
    port: int | None = typer.Option(None, help="port (default TWIWATCH_FHIR_SERVER_PORT)"),
) -> None:
    """Exit 0 when the server answers, 1 otherwise."""
    from stream.devtools.fhir_local import status as check

    ok, line = check(_running(port, fhir_version))
    console.print(line)
    raise typer.Exit(0 if ok else 1)


@app.command("wipe")
def wipe(
    fhir_version: str | None = typer.Option(None, "--fhir-version", help="R4B (default) or R4"),
    port: int | None = typer.Option(None, help="port (default TWIWATCH_FHIR_SERVER_PORT)"),
) -> None:
    """Delete the server's database (it must be down)."""
    from stream.devtools.fhir_local import wipe as remove

    remove(_local(fhir_version, port))
    console.print("local FHIR server database deleted")
