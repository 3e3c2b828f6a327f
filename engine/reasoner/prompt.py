"""The prompt ECG-R1 was trained with (docs/SPEC.md §6), and the one marker backends translate.

`<ecg>` marks where the signal goes, as in the authors' ms-swift template. Each backend maps it to its own form:
the in-process vLLM backend to the plugin's placeholder tokens, the HTTP backend to an `ecg` content part.
Exactly one ECG per prompt: the authors' vLLM processor allows one (`limit_mm_per_prompt["ecg"] = 1`).
"""
from __future__ import annotations

from engine.reasoner.errors import ReasonerInputError

ECG_MARKER = "<ecg>"
# Wording used by the authors (docs/SPEC.md §6); it says "image" even when only the signal is given, as in training.
ECGR1_INSTRUCTION = (
    "Interpret the provided ECG image, identify key features and abnormalities in each lead, and generate a "
    "clinical diagnosis that is supported by the observed evidence."
)
ECGR1_PROMPT = ECG_MARKER + ECGR1_INSTRUCTION
# The default system message of the authors' `ecg_r1` chat template (ms-swift registration); sent so that the
# served conversation matches the one the model was tuned on.
ECGR1_SYSTEM_PROMPT = (
    "You are a helpful, harmless clinical ECG assistant. Provide concise, evidence-based interpretations."
)
ECGR1_MAX_TOKENS = 2048
ECGR1_TEMPERATURE = 0.0


def split_prompt(prompt: str) -> tuple[str, str]:
    """(text before the ECG, text after it). No marker: the ECG goes first, as in the authors' prompt."""
    count = prompt.count(ECG_MARKER)
    if count > 1:
        raise ReasonerInputError(f"prompt has {count} {ECG_MARKER} markers; ECG-R1 takes one ECG", "prompt")
    if count == 0:
        return "", prompt
    before, after = prompt.split(ECG_MARKER)
    return before, after
