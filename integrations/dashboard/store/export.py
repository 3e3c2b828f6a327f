"""The adjudications as CSV, and the per-reviewer agreement summary. Research use only.

The CSV names reviewers by pseudonym (as on the adjudications topic) and carries no patient identifier: it is made to
leave the dashboard. The agreement summary is shown inside the dashboard, to its admins, by account name.

Agreement, per reviewer, over their latest adjudication of each report (artifact verdicts are counted in `n` but
judge no one):
- criteria: the verdict says what the triage class said: agree-ischemic for ischemic-pattern, agree-secondary for
  secondary:<cause> (with that cause). Reports of other classes (indeterminate, episodes) claim neither and are left
  out of this share's denominator;
- head: the encoder head's opinion (twi_present >= 0.5, then ischemic_vs_secondary >= 0.5: ischemic, else secondary;
  twi_present < 0.5: no TWI) matches the reviewer's reading (agree-ischemic: ischemic, agree-secondary: secondary,
  disagree: anything but what the criteria said), when the analysis carried a head;
- reasoner: the reasoner's claims were checked (`reasoning.claims` with a `status` each, SPEC §13.1): it "agrees"
  with the criteria when no claim is contradicted; the share is where reviewer and reasoner agree about the criteria
  (both agree, or both disagree), when reasoning with claims was present.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrations.dashboard.store.models import AccountRow, Action, AnalysisMessage, Report

RESEARCH_LINE = ("# RESEARCH USE ONLY - NOT FOR CLINICAL USE. Reviewers' adjudications of automated, unverified ECG "
                 "findings; not diagnoses.")
COLUMNS = ("action_id", "time", "report_id", "report_version", "kind", "triage_class", "reviewer", "action",
           "verdict", "cause", "note", "research_only")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell that starts with = + - @ as a formula: quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def adjudications_csv(s: Session) -> Iterator[str]:
    """CSV lines (header first, the research-only line last) of every action, oldest first."""
    def line(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_cell(v) for v in values])
        return buf.getvalue()

    yield line(list(COLUMNS))
    q = (select(Action, Report.kind).join(Report, Report.report_id == Action.report_id)
         .order_by(Action.at, Action.id).execution_options(yield_per=500))
    for a, kind in s.execute(q):
        yield line([a.id, a.at.isoformat().replace("+00:00", "Z"), a.report_id, a.report_version, kind, a.cls,
                    a.reviewer, a.action, a.verdict, a.cause, a.note, "true"])
    yield RESEARCH_LINE + "\n"


def _criteria_verdict(cls: str | None) -> tuple[str, str | None] | None:
    if cls == "ischemic-pattern":
        return "agree-ischemic", None
    if cls and cls.startswith("secondary:"):
        return "agree-secondary", cls.split(":", 1)[1]
    return None


def _agrees_with_criteria(a: Action) -> bool | None:
    expected = _criteria_verdict(a.cls)
    if expected is None or a.verdict == "artifact":
        return None
    return a.verdict == expected[0] and (expected[1] is None or a.cause == expected[1])


def _head_label(head: dict[str, Any] | None) -> str | None:
    try:
        if not head:
            return None
        if float(head["twi_present"]) < 0.5:
            return "no-twi"
        return "ischemic" if float(head["ischemic_vs_secondary"]) >= 0.5 else "secondary"
    except (KeyError, TypeError, ValueError):
        return None


def _head_agrees(a: Action, head: dict[str, Any] | None) -> bool | None:
    label = _head_label(head)
    if label is None or a.verdict == "artifact":
        return None
    if a.verdict == "agree-ischemic":
        return label == "ischemic"
    if a.verdict == "agree-secondary":
        return label == "secondary"
    criteria = "ischemic" if a.cls == "ischemic-pattern" else "secondary" if (a.cls or "").startswith("secondary") \
        else None
    return criteria is not None and label != criteria


def _reasoner_agrees(a: Action, reasoning: dict[str, Any] | None) -> bool | None:
    claims = (reasoning or {}).get("claims")
    reviewer = _agrees_with_criteria(a)
    if not isinstance(claims, list) or not claims or reviewer is None:
        return None
    reasoner = not any(isinstance(c, dict) and c.get("status") == "contradicted" for c in claims)
    return reasoner == reviewer


def _share(values: list[bool | None]) -> tuple[int, float | None]:
    judged = [v for v in values if v is not None]
    return len(judged), (round(sum(judged) / len(judged), 3) if judged else None)


def agreement(s: Session) -> list[dict[str, Any]]:
    """Per reviewer (account name): n adjudicated reports and the three agreement shares with their denominators."""
    q = (select(Action, AccountRow.name).join(AccountRow, AccountRow.id == Action.account_id)
         .where(Action.action == "adjudicate").order_by(Action.at, Action.id))
    latest: dict[tuple[str, str], Action] = {}
    for a, name in s.execute(q):
        latest[(name, a.report_id)] = a  # a later adjudication of the same report replaces the earlier
    analyses: dict[tuple[str, int], dict[str, Any]] = {}
    wanted = {(a.report_id, a.report_version) for a in latest.values()}
    if wanted:
        rids = sorted({rid for rid, _ in wanted})
        for i in range(0, len(rids), 500):
            for row in s.scalars(select(AnalysisMessage).where(AnalysisMessage.report_id.in_(rids[i:i + 500]))):
                if (row.report_id, row.version) in wanted:
                    analyses[(row.report_id, row.version)] = json.loads(row.message)
    out: dict[str, dict[str, list[bool | None]]] = {}
    for (name, _), a in sorted(latest.items()):
        msg = analyses.get((a.report_id, a.report_version)) or {}
        per = out.setdefault(name, {"n": [], "criteria": [], "head": [], "reasoner": []})
        per["n"].append(True)
        per["criteria"].append(_agrees_with_criteria(a))
        per["head"].append(_head_agrees(a, msg.get("head")))
        per["reasoner"].append(_reasoner_agrees(a, msg.get("reasoning")))
    result = []
    for name, per in out.items():
        row: dict[str, Any] = {"reviewer": name, "n": len(per["n"])}
        for key in ("criteria", "head", "reasoner"):
            row[f"{key}_n"], row[f"{key}_agreed"] = _share(per[key])
        result.append(row)
    return result
