"""The encoder and ECG-R1 on monitor episodes (docs/SPEC.md §11.9 "Models"): which episodes get them, what each
version says about them, and the record the stage keeps per episode so every later version says the same.

Both models take 12 leads at 500 Hz (docs/SPEC.md §6). An episode opened on a stream whose window carries the 12
standard leads (limb leads derived from I and II count, as for strips; a monitoring approximation such as MCL1 does
not) gets the encoder's head on its opening window and, when a reasoner is configured, one ECG-R1 reading of that
window. An episode from 2-4-lead monitoring says that no reasoning was requested and why.

The per-episode record (`models` in the stream's table entry, keyed by report id) is JSON:
{"reasoning": "not-12-lead" | "off" | "requested" | "answered" | "not-requested", "leads": [...], "head": {...} |
None, "model_versions": {...}, "result": the reasoning as the report has it, "review": with each claim's verdict,
"event": the last version's EpisodeEvent, "where": the stream's bed, device and patient when the episode opened}.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.analyze import analyze
from engine.record import MARK_APPROXIMATION, STANDARD_LEADS, EcgRecord
from engine.result import Analysis
from integrations.fhir.narrative import reasoning_sentence

# An ECG-R1 reading of an episode's opening window, sent by the reason agent onto the chunks topic under the stream's
# key: the monitor stage, the one writer of episode reports, merges it in the stream's own order.
REASONED = b"TWREAS1"
KEPT = 8  # episode records kept per stream beyond the open one and those waiting for a reading
REASON = "ECG-R1 reading of the window that opened the episode added"
_LIMB_FROM_I_II = {"III", "aVR", "aVL", "aVF"}


def twelve_lead(leads: Sequence[str], marks: Mapping[str, str]) -> bool:
    """All 12 standard leads, measured (not approximated by monitoring leads); III and the augmented leads may be
    derived from I and II, as the encoder's adapter and ECG-R1's normaliser do."""
    have = {lead for lead in leads if marks.get(lead) != MARK_APPROXIMATION}
    if {"I", "II"} <= have:
        have |= _LIMB_FROM_I_II
    return set(STANDARD_LEADS) <= have


def opening_record(leads: Sequence[str], marks: Mapping[str, str], *, reasoner: bool) -> dict[str, Any]:
    """The record of an episode as it opens (before the encoder has scored its window)."""
    if not twelve_lead(leads, marks):
        return {"reasoning": "not-12-lead", "leads": list(leads), "head": None}
    return {"reasoning": "requested" if reasoner else "off", "leads": list(leads), "head": None}


def legacy_record(leads: Sequence[str]) -> dict[str, Any]:
    """For an episode opened before the stage kept records (nothing was requested for it)."""
    return {"reasoning": "not-requested", "leads": list(leads), "head": None}


def reasoning_note(record: Mapping[str, Any]) -> str:
    state = record.get("reasoning")
    if state == "not-12-lead":
        leads = record.get("leads") or []
        return (f"No reasoning was requested: the encoder and ECG-R1 take 12 leads at 500 Hz, and this stream "
                f"carries {len(leads)} lead(s) ({', '.join(leads)}).")
    if state == "off":
        return "No reasoning was requested: reasoning is off (no reasoner configured)."
    if state == "requested":
        return "ECG-R1 reading of the window that opened the episode requested (reasoning review pending)."
    if state == "answered":
        return reasoning_sentence(record.get("result") or {})
    return "No reasoning was requested for this monitor episode."


def opening_analysis(window: EcgRecord) -> Analysis:
    """The strip analysis of the opening window (no priors): the measurements the head's disagreement and the
    reading's claims are checked against. The engine is deterministic, so the reason agent's copy is the same."""
    return analyze(window, [])


def kept(records: Mapping[str, Any]) -> dict[str, Any]:
    """The records a stream keeps: those of open episodes and those waiting for a reading, then the newest others up
    to KEPT (a redelivered reading of a dropped one finds no record and is dropped too)."""
    needed = {rid for rid, r in records.items()
              if r.get("reasoning") == "requested" or (r.get("event") or {}).get("kind") != "resolved"}
    others = [rid for rid in records if rid not in needed][-KEPT:]
    return {rid: r for rid, r in records.items() if rid in needed or rid in others}
