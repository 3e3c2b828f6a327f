"""The STAND-IN for ECG-R1's answers: hand-written ECG-R1-format outputs (standin_outputs.json, some malformed on
purpose) and their replay. It is NOT ECG-R1 and runs no model; it never reads the signal.

The serving shim serves it (`serve.StandinGenerator`, `twiwatch reasoner serve --standin`) for the demo and the
tests, with faults to inject (latency, hangs, failing generations) set on the generator. The parse and cross-check
tests read the outputs directly.
"""
from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDIN_MODEL = "twiwatch-standin-NOT-ECG-R1 (replays hand-written fixture outputs; no model ran)"
OUTPUTS_PATH = Path(__file__).with_name("standin_outputs.json")


def load_outputs(path: Path = OUTPUTS_PATH) -> dict[str, dict[str, Any]]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return {o["id"]: o for o in doc["outputs"]}


def estimate_tokens(text: str) -> int:
    """A rough token count for replayed text (no tokenizer runs); labelled as an estimate wherever it is shown."""
    return max(1, round(len(text.split()) * 1.3))


@dataclass(frozen=True)
class Replayed:
    output_id: str
    text: str
    completion_tokens: int  # estimated (estimate_tokens)
    finish_reason: str


class Replay:
    """The stand-in's one replay of standin_outputs.json: one output by id, or "cycle" through all in file order.
    Thread-safe."""

    def __init__(self, path: Path = OUTPUTS_PATH) -> None:
        self.outputs = load_outputs(path)
        self._cycle = itertools.cycle(list(self.outputs))
        self._lock = threading.Lock()

    def check(self, output: str) -> None:
        if output != "cycle" and output not in self.outputs:
            raise ValueError(f"no stand-in output {output!r}; have {', '.join(self.outputs)}")

    def next(self, output: str = "cycle", *, max_tokens: int | None = None) -> Replayed:
        """The next output. With max_tokens, a longer output is cut to fit and ends with finish_reason "length",
        as a real server's would."""
        with self._lock:
            out = self.outputs[next(self._cycle) if output == "cycle" else output]
        text, tokens, finish = out["text"], estimate_tokens(out["text"]), out.get("finish_reason", "stop")
        if max_tokens is not None and tokens > max_tokens:
            text = " ".join(text.split()[: max(1, int(max_tokens / 1.3))])
            tokens, finish = min(max_tokens, estimate_tokens(text)), "length"
        return Replayed(out["id"], text, tokens, finish)
