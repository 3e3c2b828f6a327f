"""What the templates show, prepared from the store's rows: times in the site's zone with the offset, class labels,
the reasoner's claims with their verdicts, the report's text."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

RESEARCH_BANNER = ("RESEARCH USE ONLY - NOT FOR CLINICAL USE. Findings are measured criteria and model output for "
                   "research review, not diagnoses.")

CLASS_LABELS = {"ischemic-pattern": "Ischaemic pattern", "indeterminate": "Indeterminate", "episode": "Monitor episode",
                "secondary": "Secondary cause", "no-twi": "No TWI"}
SECONDARY_LABELS = {"lbbb": "LBBB", "rbbb": "RBBB", "lvh-strain": "LVH with strain", "ventricular-pacing":
                    "ventricular pacing", "wpw": "WPW (pre-excitation)", "ivcd": "IVCD (wide QRS)"}
STATE_LABELS = {"new": "New", "acknowledged": "Acknowledged", "adjudicated": "Adjudicated"}
VERDICTS = [("agree-ischemic", "Agree: ischaemic pattern"), ("agree-secondary", "Agree: secondary cause"),
            ("disagree", "Disagree"), ("artifact", "Artifact")]
FILTER_CLASSES = ["ischemic-pattern", "indeterminate", "episode", "secondary"]


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def local_time(value: Any, zone: str) -> str:
    """'2026-12-02 13:45:10 CET (UTC+01:00)': the site's zone, with the offset, so no time is ambiguous."""
    dt = parse_time(value)
    if dt is None:
        return "unknown"
    here = dt.astimezone(ZoneInfo(zone))
    offset = here.strftime("%z")
    return f"{here:%Y-%m-%d %H:%M:%S} {here.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def class_label(cls: str | None) -> str:
    if not cls:
        return "unknown"
    if cls.startswith("secondary:"):
        cause = cls.split(":", 1)[1]
        return f"Secondary: {SECONDARY_LABELS.get(cause, cause)}"
    return CLASS_LABELS.get(cls, cls)


def class_family(cls: str | None) -> str:
    """The filter family of a triage class ("secondary:rbbb" -> "secondary"), for CSS and filters."""
    return (cls or "unknown").split(":", 1)[0]


_CLAIM_LIST = re.compile(r"^(supported|unverifiable|contradicted):\s*(.+)$", re.IGNORECASE)
_CONTRADICTED = re.compile(r"^CONTRADICTED:\s*(.+)$")


def reasoning_claims(reasoning: dict[str, Any] | None) -> list[dict[str, str]]:
    """Each claim with its verdict: structured `claims` when the message has them, else read from the cross-check
    lines the report carries ("CONTRADICTED: <claim> (<evidence>)", "supported: a; b", "unverifiable: c")."""
    if not reasoning:
        return []
    structured = reasoning.get("claims")
    if isinstance(structured, list) and structured:
        return [{"text": str(c.get("summary") or c.get("text") or ""), "quote": str(c.get("text") or ""),
                 "verdict": str(c.get("verdict", "unverifiable")), "hedged": bool(c.get("hedged")),
                 "evidence": "; ".join(map(str, c.get("evidence") or []))} for c in structured if isinstance(c, dict)]
    out: list[dict[str, str]] = []
    for line in reasoning.get("cross_check") or []:
        line = str(line)
        m = _CONTRADICTED.match(line)
        if m:
            text, _, evidence = m.group(1).partition(" (")
            out.append({"text": text, "verdict": "contradicted", "evidence": evidence.rstrip(")")})
            continue
        m = _CLAIM_LIST.match(line)
        if m:
            out += [{"text": t.strip(), "verdict": m.group(1).lower(), "evidence": ""}
                    for t in m.group(2).split(";") if t.strip()]
    return out


def reasoning_answer(reasoning: dict[str, Any] | None) -> str:
    if not reasoning:
        return ""
    answer = reasoning.get("answer")
    if isinstance(answer, list | tuple):
        return "; ".join(map(str, answer))
    return str(answer or "")


def twi_leads(analysis: dict[str, Any] | None) -> set[str]:
    if not analysis:
        return set()
    return {lead for group in analysis.get("twi") or [] for lead in group.get("leads") or []}


def head_disagrees(head: dict[str, Any] | None) -> bool:
    return bool(head and head.get("disagreement"))


def secondary_causes(analysis: dict[str, Any] | None) -> list[str]:
    """The causes a reviewer may agree with: those the checks found first, then the rest."""
    checks = (analysis or {}).get("secondary") or []
    found = [c["cause"] for c in checks if c.get("present")]
    others = [c["cause"] for c in checks if not c.get("present")]
    return found + [c for c in others if c not in found] or list(SECONDARY_LABELS)


def fmt_num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)
