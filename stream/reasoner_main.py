"""`twiwatch reasoner serve`: the ECG-R1 serving shim process (integrations.reasoner.serve, docs/REASONER.md)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from stream.config import reasoner_serve_settings as settings

console = Console(stderr=True)
app = typer.Typer(help="ECG-R1 reasoning: the OpenAI-compatible serving shim in front of vLLM.", no_args_is_help=True)


@app.command("serve")
def reasoner_serve(
    model: Path | None = typer.Option(None, "--model", help="local ECG-R1 model directory "
                                         "(default TWIWATCH_REASONER_SERVE_MODEL_PATH)"),
    ecg_tower: Path | None = typer.Option(None, "--ecg-tower", help="local ECG encoder checkpoint "
                                             "cpt_wfep_epoch_20.pt (default TWIWATCH_REASONER_SERVE_ECG_TOWER, "
                                             "else the model config's ecg_tower_path)"),
    host: str | None = typer.Option(None, help="listen address (default TWIWATCH_REASONER_SERVE_HOST)"),
    port: int | None = typer.Option(None, help="port (default TWIWATCH_REASONER_SERVE_PORT)"),
    max_inflight: int | None = typer.Option(None, "--max-inflight", min=1,
                                               help="generations at once "
                                               "(default TWIWATCH_REASONER_SERVE_MAX_INFLIGHT)"),
    max_queue: int | None = typer.Option(None, "--max-queue", min=0,
                                            help="requests waiting beyond those; then 429 "
                                            "(default TWIWATCH_REASONER_SERVE_MAX_QUEUE)"),
    served_name: str | None = typer.Option(None, "--served-name",
                                              help="model name to answer to (default TWIWATCH_REASONER_MODEL)"),
    standin: bool = typer.Option(False, "--standin", help="serve the STAND-IN generator instead: NOT ECG-R1, it "
                                 "replays hand-written fixture outputs (tests and demos)"),
    standin_output: str = typer.Option("cycle", "--standin-output", help="with --standin: the fixture output id "
                                       "to replay (integrations/reasoner/standin_outputs.json), or 'cycle'"),
    standin_delay: float = typer.Option(0.0, "--standin-delay", min=0.0,
                                        help="with --standin: seconds each answer takes (a model's latency)"),
) -> None:
    """Serve ECG-R1 over HTTP (POST /v1/chat/completions with the `ecg` content part; /healthz, /metrics)."""
    from engine.reasoner.errors import ReasonerUnavailable
    from integrations.reasoner.serve import StandinGenerator, VllmGenerator, run

    s = settings()
    model_path = model or (Path(s.reasoner_serve_model_path) if s.reasoner_serve_model_path else None)
    if standin:
        if model is not None or ecg_tower is not None:
            raise typer.BadParameter("--standin runs no model: drop --model / --ecg-tower")
        try:
            generator = StandinGenerator(standin_output, delay_s=standin_delay)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
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
            raise typer.Exit(2) from None
    style = "[bold red]" if standin else "[bold]"
    code = run(generator, host=host or s.reasoner_serve_host, port=s.reasoner_serve_port if port is None else port,
               served_name=name, max_inflight=max_inflight or s.reasoner_serve_max_inflight,
               max_queue=s.reasoner_serve_max_queue if max_queue is None else max_queue,
               max_request_bytes=s.max_message_bytes,
               announce=lambda line: console.print(style + escape(line), highlight=False))
    raise typer.Exit(code)


