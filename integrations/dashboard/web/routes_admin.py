"""Administrators' pages: users, the audit trail, the CSV export of adjudications, the per-reviewer agreement."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from integrations.dashboard import store
from integrations.dashboard.web.security import Viewer, admin_viewer, check_csrf, client_addr

router = APIRouter(prefix="/admin")
ROLES = ("reviewer", "admin")
MIN_PASSWORD = 12


def _users_page(request: Request, viewer: Viewer, *, error: str = "", notice: str = "", status: int = 200):
    with request.app.state.factory() as s:
        users = store.list_users(s)
    return request.app.state.templates.TemplateResponse(request, "admin_users.html", {
        "viewer": viewer, "users": users, "roles": ROLES, "error": error, "notice": notice,
        "min_password": MIN_PASSWORD}, status_code=status)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, viewer: Viewer = Depends(admin_viewer)):
    return _users_page(request, viewer)


@router.post("/users")
def add_user(request: Request, csrf: str = Form(""), name: str = Form(""), role: str = Form("reviewer"),
             password: str = Form(""), viewer: Viewer = Depends(admin_viewer)):
    check_csrf(viewer, csrf)
    name = name.strip()
    if not name or len(name) > 100 or role not in ROLES:
        return _users_page(request, viewer, error="A name (up to 100 characters) and a role are needed.", status=422)
    if len(password) < MIN_PASSWORD:
        return _users_page(request, viewer, error=f"Passwords have at least {MIN_PASSWORD} characters.", status=422)
    try:
        with request.app.state.factory() as s:
            store.add_user(s, name, role, password)
            store.audit_record(s, viewer.account, "user-add", name, client_addr(request), detail=f"role {role}")
            s.commit()
    except store.AccountExists:
        return _users_page(request, viewer, error=f"An account named {name!r} exists already.", status=409)
    except ValueError as exc:
        return _users_page(request, viewer, error=str(exc), status=422)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{name}/disable")
def disable_user(request: Request, name: str, csrf: str = Form(""), viewer: Viewer = Depends(admin_viewer)):
    check_csrf(viewer, csrf)
    try:
        with request.app.state.factory() as s:
            store.disable_user(s, name)
            store.audit_record(s, viewer.account, "user-disable", name, client_addr(request))
            s.commit()
    except store.UnknownAccount:
        return _users_page(request, viewer, error=f"No account named {name!r}.", status=404)
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, cursor: str | None = None, viewer: Viewer = Depends(admin_viewer)):
    try:
        with request.app.state.factory() as s:
            entries, next_cursor = store.list_audit(s, cursor or None, 100)
    except ValueError:
        return RedirectResponse("/admin/audit", status_code=303)  # not a cursor this page wrote
    return request.app.state.templates.TemplateResponse(request, "admin_audit.html", {
        "viewer": viewer, "entries": entries, "next_cursor": next_cursor})


@router.get("/export.csv")
def export_csv(request: Request, viewer: Viewer = Depends(admin_viewer)) -> StreamingResponse:
    with request.app.state.factory() as s:
        store.audit_record(s, viewer.account, "export-adjudications", None, client_addr(request))
        s.commit()
    factory = request.app.state.factory

    def lines():
        with factory() as s:
            for line in store.adjudications_csv(s):
                yield line if line.endswith("\n") else line + "\n"

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="twiwatch-adjudications-research-only.csv"',
        "Cache-Control": "no-store"})


@router.get("/agreement", response_class=HTMLResponse)
def agreement(request: Request, viewer: Viewer = Depends(admin_viewer)):
    with request.app.state.factory() as s:
        rows = store.agreement(s)
    return request.app.state.templates.TemplateResponse(request, "admin_agreement.html", {
        "viewer": viewer, "rows": rows})
