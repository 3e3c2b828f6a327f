"""An alert's page (`/alerts/{report identifier value}`) and its actions (acknowledge, adjudicate) with optimistic
locking: a form carries the row version it was rendered from; a stale one is refused with a clear message and
nothing is overwritten."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from integrations.dashboard import store
from integrations.dashboard.web import view
from integrations.dashboard.web.ecg_svg import SignalError, render_ecg
from integrations.dashboard.web.security import Viewer, check_csrf, client_addr, current_viewer
from integrations.dashboard.web.trend_svg import render_trend

log = logging.getLogger("twiwatch.dashboard.web")
router = APIRouter()
NOTE_MAX = 2000
STALE = ("This alert was changed by someone else since you opened it (see the history below). Nothing was "
         "saved; review the current state and act again if still needed.")
DONE = {"acknowledged": "Acknowledged.", "adjudicated": "Adjudication saved."}


def _figure(message: dict[str, Any] | None, title: str, svg_id: str) -> dict[str, str] | None:
    """One message's signal drawn (or why it cannot be)."""
    if not message:
        return None
    signal = message.get("signal")
    if not signal:
        return {"svg": "", "error": "No signal stored for this ECG."}
    analysis = message.get("analysis")
    try:
        return {"svg": render_ecg(signal, analysis, twi_leads=view.twi_leads(analysis), title=title, svg_id=svg_id),
                "error": ""}
    except SignalError as exc:
        return {"svg": "", "error": f"The stored signal cannot be drawn ({exc})."}


def report_parts(report: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(DiagnosticReport, Observations) of the store's `AlertDetail.report` (the report is absent while only the
    analysis message has arrived)."""
    if not report:
        return {}, []
    return report.get("diagnostic_report") or {}, list(report.get("observations") or [])


def _episode_view(detail, message: dict[str, Any] | None) -> dict[str, Any] | None:
    episode = detail.episode or (message or {}).get("episode")
    if not episode:
        return None
    windows = episode.get("windows") or {}
    out = {"data": episode, "trend": "", "opened": None, "closed": None}
    try:
        out["trend"] = render_trend(episode, svg_id="trend")
    except (KeyError, TypeError, ValueError) as exc:
        out["trend_error"] = f"The trend cannot be drawn ({type(exc).__name__})."
    out["opened"] = _figure({"signal": windows.get("opened")} if windows.get("opened") else None,
                            "Window that opened the episode", "win-opened")
    out["closed"] = _figure({"signal": windows.get("closed")} if windows.get("closed") else None,
                            "Window that closed the episode", "win-closed")
    return out


def alert_context(request: Request, viewer: Viewer, detail) -> dict[str, Any]:
    message = detail.analysis or {}
    analysis = message.get("analysis") or {}
    prior = detail.prior or None
    dr, observations = report_parts(detail.report)
    reasoning = detail.reasoning or message.get("reasoning")
    head = detail.head or message.get("head")
    acquired = view.local_time(message.get("acquired_at") or detail.row.time, request.app.state.cfg.timezone)
    return {
        "viewer": viewer, "row": detail.row, "message": message, "analysis": analysis, "report": dr,
        "observations": observations, "versions": detail.versions, "actions": detail.actions,
        "ecg": _figure(message if message.get("signal") else None, f"ECG acquired {acquired}", "ecg-current"),
        "prior": prior, "prior_ecg": _figure(prior, "Prior ECG", "ecg-prior"),
        "prior_ref": message.get("prior"),
        "episode": _episode_view(detail, message),
        "reasoning": reasoning, "claims": view.reasoning_claims(reasoning),
        "reasoning_answer": view.reasoning_answer(reasoning),
        "head": head, "head_disagrees": view.head_disagrees(head),
        "causes": view.secondary_causes(analysis), "twi_leads": sorted(view.twi_leads(analysis)),
        "location": message.get("location") or {}, "error": "", "notice": "",
    }


def _render(request: Request, viewer: Viewer, report_id: str, *, error: str = "", notice: str = "",
            status: int = 200, audit: bool = True) -> HTMLResponse:
    with request.app.state.factory() as s:
        detail = store.alert_detail(s, report_id)
        if detail is not None and audit:
            store.audit_record(s, viewer.account, "view-report", report_id, client_addr(request))
            s.commit()
    templates = request.app.state.templates
    if detail is None:
        return templates.TemplateResponse(request, "error.html", {
            "viewer": viewer, "title": "Not found", "message": "No report with this identifier in the dashboard."},
            status_code=404)
    ctx = alert_context(request, viewer, detail)
    ctx.update(error=error, notice=notice)
    return templates.TemplateResponse(request, "alert.html", ctx, status_code=status)


@router.get("/alerts/{report_id}", response_class=HTMLResponse)
def alert_page(request: Request, report_id: str, done: str = "", viewer: Viewer = Depends(current_viewer)):
    return _render(request, viewer, report_id, notice=DONE.get(done, ""))


def _act(request: Request, viewer: Viewer, report_id: str, act) -> HTMLResponse | RedirectResponse:
    try:
        with request.app.state.factory() as s:
            result = act(s)
            s.commit()
    except store.StaleAlert:
        return _render(request, viewer, report_id, error=STALE, status=409, audit=False)
    except store.NotFound:
        return _render(request, viewer, report_id, status=404, audit=False)
    except ValueError as exc:  # the store refused the input (e.g. agree-secondary without a cause)
        return _render(request, viewer, report_id, error=f"Not saved: {exc}", status=422, audit=False)
    log.info("action on report %s by account id %s: %s", report_id, viewer.account.id, result.state)
    return RedirectResponse(f"/alerts/{report_id}?done={result.state}", status_code=303)


@router.post("/alerts/{report_id}/acknowledge")
def acknowledge(request: Request, report_id: str, csrf: str = Form(""), row_version: int = Form(...),
                viewer: Viewer = Depends(current_viewer)):
    check_csrf(viewer, csrf)
    addr = client_addr(request)
    return _act(request, viewer, report_id,
                lambda s: store.acknowledge(s, report_id, viewer.account, row_version, addr,
                                                  identity_secret=request.app.state.cfg.identity_secret))


@router.post("/alerts/{report_id}/adjudicate")
def adjudicate(request: Request, report_id: str, csrf: str = Form(""), row_version: int = Form(...),
               verdict: str = Form(""), cause: str = Form(""), note: str = Form(""),
               viewer: Viewer = Depends(current_viewer)):
    check_csrf(viewer, csrf)
    if verdict not in dict(view.VERDICTS):
        return _render(request, viewer, report_id, error="Choose a verdict.", status=422, audit=False)
    chosen_cause = cause.strip() or None
    if verdict == "agree-secondary" and not chosen_cause:
        return _render(request, viewer, report_id, error="Name the secondary cause you agree with.", status=422,
                       audit=False)
    if verdict != "agree-secondary":
        chosen_cause = None
    addr = client_addr(request)
    return _act(request, viewer, report_id,
                lambda s: store.adjudicate(s, report_id, viewer.account, row_version, verdict, chosen_cause,
                                           note.strip()[:NOTE_MAX], addr,
                                           identity_secret=request.app.state.cfg.identity_secret))
