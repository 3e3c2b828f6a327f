"""One alert (or a browsable no-twi report) for its page: the report, its analysis with the signal, the prior's
signal, versions and actions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrations.dashboard.store.models import AccountRow, Action, AnalysisMessage, Report, ReportVersion, Signal
from integrations.dashboard.store.queue import AlertRow, alert_row


@dataclass
class AlertDetail:
    row: AlertRow
    report: dict[str, Any]  # {"diagnostic_report": dict|None, "observations": [...], "version", "status"}
    analysis: dict[str, Any] | None  # the latest analysis message, its signal included as sent
    prior: dict[str, Any] | None  # the prior's stored analysis message with its signal (or source_id + signal only)
    versions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    reasoning: dict[str, Any] | None
    head: dict[str, Any] | None
    episode: dict[str, Any] | None


def _signal(s: Session, source_id: str | None) -> dict[str, Any] | None:
    if not source_id:
        return None
    raw = s.scalar(select(Signal.signal).where(Signal.source_id == source_id))
    return json.loads(raw) if raw else None


def _with_signal(s: Session, row: AnalysisMessage) -> dict[str, Any]:
    msg = json.loads(row.message)
    if msg.get("kind") == "ecg":
        msg["signal"] = _signal(s, row.source_id)
    return msg


def _prior(s: Session, ref: dict[str, Any] | None) -> dict[str, Any] | None:
    source_id = (ref or {}).get("source_id")
    if not source_id:
        return None
    row = s.scalars(select(AnalysisMessage).where(AnalysisMessage.source_id == source_id)
                    .order_by(AnalysisMessage.version.desc()).limit(1)).first()
    if row is not None:
        return _with_signal(s, row)
    signal = _signal(s, source_id)
    return {**(ref or {}), "signal": signal} if signal else None


def _report(bundle_text: str | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    if not bundle_text:
        return None, []
    resources = [e.get("resource") or {} for e in json.loads(bundle_text).get("entry") or []]
    dr = next((r for r in resources if r.get("resourceType") == "DiagnosticReport"), None)
    return dr, [r for r in resources if r.get("resourceType") == "Observation"]


def alert_detail(s: Session, report_id: str) -> AlertDetail | None:
    r = s.scalar(select(Report).where(Report.report_id == report_id))
    if r is None:
        return None
    versions = list(s.scalars(select(ReportVersion).where(ReportVersion.report_id == report_id)
                              .order_by(ReportVersion.version)))
    latest = next((v for v in reversed(versions) if v.version == r.bundle_version), None)
    dr, observations = _report(latest.bundle if latest else None)
    arow = s.scalars(select(AnalysisMessage).where(AnalysisMessage.report_id == report_id)
                     .order_by(AnalysisMessage.version.desc()).limit(1)).first()
    analysis = _with_signal(s, arow) if arow else None
    acts = s.execute(select(Action, AccountRow.name).join(AccountRow, AccountRow.id == Action.account_id)
                     .where(Action.report_id == report_id).order_by(Action.at, Action.id))
    return AlertDetail(
        row=alert_row(r),
        report={"diagnostic_report": dr, "observations": observations, "version": r.bundle_version,
                "status": r.status},
        analysis=analysis,
        prior=_prior(s, (analysis or {}).get("prior")),
        versions=[{"version": v.version, "status": v.status, "issued": v.issued, "received": v.received}
                  for v in versions],
        actions=[{"id": a.id, "who": name, "what": a.action, "verdict": a.verdict, "cause": a.cause, "note": a.note,
                  "when": a.at, "report_version": a.report_version} for a, name in acts],
        reasoning=(analysis or {}).get("reasoning"),
        head=(analysis or {}).get("head"),
        episode=(analysis or {}).get("episode"),
    )
