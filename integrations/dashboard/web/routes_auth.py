"""/login and /logout: rate-limited, audited (with the client address), CSRF-protected."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from integrations.dashboard import store
from integrations.dashboard.web.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Viewer,
    check_csrf,
    check_login_csrf,
    client_addr,
    current_viewer,
    login_form_token,
    new_login_nonce,
    safe_next,
    set_cookie,
)

log = logging.getLogger("twiwatch.dashboard.web")
router = APIRouter()
LOGIN_FORM_TTL_S = 3600


def _login_page(request: Request, *, next_path: str, error: str = "", status: int = 200,
                username: str = "") -> HTMLResponse:
    cfg = request.app.state.cfg
    nonce = new_login_nonce()
    response = request.app.state.templates.TemplateResponse(
        request, "login.html",
        {"csrf": login_form_token(cfg.form_secret, nonce), "next": next_path, "error": error, "username": username,
         "viewer": None}, status_code=status)
    set_cookie(response, LOGIN_COOKIE, nonce, secure=cfg.cookie_secure, max_age=LOGIN_FORM_TTL_S, path="/login")
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form(""),
          next: str = Form("/")):  # noqa: A002 - the form field's name
    cfg = request.app.state.cfg
    addr = client_addr(request)
    name = username.strip()[:100]
    target = safe_next(next)
    if not check_login_csrf(request, cfg.form_secret, csrf):
        return _login_page(request, next_path=target, status=403, username=name,
                           error="The login form expired; please try again.")
    with request.app.state.factory() as s:
        if not store.login_allowed(s, name, addr, cfg.login_attempts, cfg.login_window_s):
            store.audit_record(s, None, "login-refused", None, addr,
                               detail=f"account {name!r}: too many failed attempts")
            s.commit()
            log.warning("login refused (rate limit) from %s", addr)
            return _login_page(request, next_path=target, status=429, username=name,
                               error="Too many failed attempts. Wait a few minutes, then try again.")
        account = store.authenticate(s, name, password) if name and password else None
        store.note_login(s, name, addr, account is not None)
        if account is None:
            store.audit_record(s, None, "login-failed", None, addr, detail=f"account {name!r}")
            s.commit()
            return _login_page(request, next_path=target, status=401, username=name,
                               error="Wrong username or password, or the account is disabled.")
        token, _csrf = store.create_session(s, account)
        store.audit_record(s, account, "login", None, addr)
        s.commit()
    log.info("login: account id %s from %s", account.id, addr)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, SESSION_COOKIE, token, secure=cfg.cookie_secure)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(""), viewer: Viewer = Depends(current_viewer)):
    check_csrf(viewer, csrf)
    with request.app.state.factory() as s:
        store.end_session(s, viewer.token)
        store.audit_record(s, viewer.account, "logout", None, client_addr(request))
        s.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
