"""`python -m evaluation delineation|twi|serial|markdown ...`: the same commands as `twiwatch evaluate ...`
(evaluation/cli.py defines them once)."""
from __future__ import annotations

import typer

from evaluation.cli import app

PROG = "python -m evaluation"


def main(argv: list[str] | None = None) -> None:
    """Run one command in this process (tests); errors raise instead of exiting."""
    typer.main.get_command(app).main(args=argv, prog_name=PROG, standalone_mode=False)


if __name__ == "__main__":
    app(prog_name=PROG)
