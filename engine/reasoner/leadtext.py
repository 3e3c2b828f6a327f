"""Lead mentions in free text: "V1-V4", "V4,5,6", "II, III and aVF", "leads I and aVL", "inferior leads".

Roman-numeral leads are ambiguous in prose ("Mobitz II", "type I"), so a lone I/II/III counts only after
"lead(s)", "in" or "of", or inside a list with another lead. Named groups follow the localisation table of ECG-R1's
own protocol (inferior II, III, aVF; lateral I, aVL, V5, V6; septal/anterior V1-V4) with the usual refinements
listed in GROUPS. Each span records whether a preposition ("in", "across", ...) precedes it: "TWI in V4-V6"
attaches the leads to the finding before them, "V4-V6 show TWI" to the finding after (claims.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.record import STANDARD_LEADS

PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
GROUPS: dict[str, tuple[str, ...]] = {
    "inferolateral": ("II", "III", "aVF", "I", "aVL", "V5", "V6"),
    "inferior": ("II", "III", "aVF"),
    "high lateral": ("I", "aVL"),
    "lateral precordial": ("V5", "V6"),
    "left precordial": ("V5", "V6"),
    "right precordial": ("V1", "V2", "V3"),
    "anterolateral": ("I", "aVL", "V3", "V4", "V5", "V6"),
    "anteroseptal": ("V1", "V2", "V3", "V4"),
    "septal": ("V1", "V2"),
    "anterior": ("V1", "V2", "V3", "V4"),  # ECG-R1's protocol: "Septal/Anterior: V1-V4"
    "lateral": ("I", "aVL", "V5", "V6"),
    "precordial": PRECORDIAL,
    "chest": PRECORDIAL,
    "limb": LIMB,
    "all": tuple(n for n in STANDARD_LEADS if n != "aVR"),
    "diffuse": tuple(n for n in STANDARD_LEADS if n != "aVR"),
    "widespread": tuple(n for n in STANDARD_LEADS if n != "aVR"),
}
_GROUP_WORDS = {"chest": r"chest\s+leads?", "limb": r"limb\s+leads?", "all": r"all\s+leads",
                "precordial": r"precordial\s+leads?", "high lateral": r"high[\s-]+lateral",
                "lateral precordial": r"lateral\s+precordial", "left precordial": r"left\s+precordial",
                "right precordial": r"right\s+precordial"}
_GROUP_KEYS = sorted(GROUPS, key=len, reverse=True)  # longest first: "inferolateral" before "inferior"
_GROUP_RE = re.compile(
    r"\b(?:" + "|".join(f"(?P<g{i}>{_GROUP_WORDS.get(g, re.escape(g))})" for i, g in enumerate(_GROUP_KEYS))
    + r")\b(?:\s+(?:precordial\s+|limb\s+)?(?:leads?|wall|region|territory)\b)?", re.IGNORECASE)
_TOKEN = r"(?:[aA][vV][rRlLfF]|[vV][1-6]|III|II|I)(?![A-Za-z0-9'\u2019])"
_SEP = r"\s*(?:,\s*(?:and\s+|or\s+|&\s*)?|\s+and\s+|\s+or\s+|&|/|-|\u2013|\u2014|\s+to\s+|\s+through\s+)\s*"
# A bare digit continues a V list ("V4,5,6") unless a unit follows: "V5 and V6, 1 mm", "V6, 1-2 mm deep".
_BARE_DIGIT = r"[1-6](?![0-9]|\.[0-9]|\s*(?:[-\u2013]\s*\d+(?:\.\d+)?\s*)?(?i:mm|mv|ms|%|millim|small\s+box))"
_RUN_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<lead_word>leads?\s+)?(?P<run>" + _TOKEN + r"(?:" + _SEP + r"(?:" + _TOKEN
    + r"|" + _BARE_DIGIT + r"))*)")
_PIECE_RE = re.compile(r"(?P<tok>" + _TOKEN + r"|[1-6])|(?P<range>-|\u2013|\u2014|\bto\b|\bthrough\b)")
_PREP_BEFORE = re.compile(r"\b(?:in|across|throughout|over|involving|from|at|on)\s+(?:the\s+)?(?:leads?\s+)?$",
                          re.IGNORECASE)
_LONE_ROMAN_OK = re.compile(r"\b(?:leads?|in|of)\s+$", re.IGNORECASE)
_JOINER = re.compile(r"\s*(?:,|,?\s*and|,?\s*or|&|/)\s*(?:the\s+|leads?\s+|in\s+)?", re.IGNORECASE)
_CANON = {n.lower(): n for n in STANDARD_LEADS}


@dataclass(frozen=True)
class LeadSpan:
    start: int
    end: int
    leads: tuple[str, ...]
    after_preposition: bool
    group: str | None = None  # "inferior", ... when named by group


def find_lead_spans(text: str) -> list[LeadSpan]:
    runs: list[LeadSpan] = []
    for m in _RUN_RE.finditer(text):
        leads = _expand(m.group("run"))
        if not leads:
            continue
        lone_roman = len(leads) == 1 and leads[0] in ("I", "II", "III")
        if lone_roman and not m.group("lead_word") and not _LONE_ROMAN_OK.search(text[:m.start()]):
            continue
        runs.append(LeadSpan(m.start(), m.end(), leads, _after_prep(text, m.start())))
    spans: list[LeadSpan] = []
    for m in _GROUP_RE.finditer(text):
        name = next(g for i, g in enumerate(_GROUP_KEYS) if m.group(f"g{i}") is not None)
        # "the lateral precordial leads V4-V6": the explicit list is more precise than the group's table.
        explicit = next((r for r in runs if m.start() <= r.start <= m.end() + 3), None)
        if explicit is not None:
            runs.remove(explicit)
            spans.append(LeadSpan(m.start(), explicit.end, explicit.leads, _after_prep(text, m.start()), name))
        else:
            spans.append(LeadSpan(m.start(), m.end(), GROUPS[name], _after_prep(text, m.start()), name))
    return _merge_lists(text, sorted(spans + runs, key=lambda s: s.start))


def _merge_lists(text: str, spans: list[LeadSpan]) -> list[LeadSpan]:
    """'the inferior and lateral leads', 'V1-V3 and aVL': neighbours joined by and/or/comma are one mention."""
    out: list[LeadSpan] = []
    for span in spans:
        if out and _JOINER.fullmatch(text[out[-1].end:span.start]):
            prev = out.pop()
            leads = prev.leads + tuple(n for n in span.leads if n not in prev.leads)
            span = LeadSpan(prev.start, span.end, leads, prev.after_preposition, prev.group or span.group)
        out.append(span)
    return out


def _after_prep(text: str, start: int) -> bool:
    return bool(_PREP_BEFORE.search(text[max(0, start - 40):start]))


def _expand(run: str) -> tuple[str, ...]:
    """'V1-V4' -> V1..V4, 'V4,5,6' / 'V4-6' -> V4..V6, 'II, III and aVF' -> as listed; order kept, no repeats."""
    out: list[str] = []
    pending_range = False
    for m in _PIECE_RE.finditer(run):
        if m.group("range"):
            pending_range = bool(out)
            continue
        tok = m.group("tok")
        if tok.isdigit():  # a bare digit continues a V list: "V4,5,6" / "V4-6"
            if not out or not out[-1].startswith("V"):
                pending_range = False
                continue
            tok = "V" + tok
        name = _CANON.get(tok.lower())
        if name is None:
            continue
        if pending_range and out and out[-1].startswith("V") and name.startswith("V"):
            lo, hi = int(out[-1][1]), int(name[1])
            for k in range(lo + 1, hi + 1) if lo < hi else ():
                _add(out, f"V{k}")
        _add(out, name)
        pending_range = False
    return tuple(out)


def _add(out: list[str], name: str) -> None:
    if name not in out:
        out.append(name)
