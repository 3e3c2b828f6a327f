"""Sessions, CSRF and the client address.

Sessions live in the store (only a hash of the token there); the cookie is HttpOnly, SameSite=Strict, Secure when
configured. Every POST carries the session's CSRF token in a form field, compared in constant time. The login form
comes before any session: its token is an HMAC of a random nonce held in a short-lived cookie of its own.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse

from integrations.dashboard import store

SESSION_COOKIE = "twiwatch_session"
LOGIN_COOKIE = "twiwatch_login"


class LoginRequired(Exception):
    """No valid session: the visitor goes to /login."""


@dataclass
class Viewer:
    account: Any  # store Account: id, name, role, active
    csrf: str
    token: str

    @property
    def is_admin(self) -> bool:
        return self.account.role == "admin"


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host) may follow a login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.url.path.startswith(("/api/", "/events", "/queue/rows")):
        target = "/"
    return RedirectResponse(f"/login?next={quote(safe_next(target))}", status_code=303)


def _viewer(request: Request, touch: bool) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired()
    found = session_check(request.app, token, touch=touch)
    if found is None:
        raise LoginRequired()
    account, csrf = found
    return Viewer(account, csrf, token)


def session_check(app: Any, token: str, *, touch: bool) -> tuple[Any, str] | None:
    with app.state.factory() as s:
        found = store.session_account(s, token, app.state.cfg.idle_timeout_s, touch=touch)
        s.commit()
    return found


def current_viewer(request: Request) -> Viewer:
    """The signed-in account (FastAPI dependency). Touches the session (idle timeout counts from here)."""
    return _viewer(request, touch=True)


def background_viewer(request: Request) -> Viewer:
    """The signed-in account for what an open page fetches by itself (live updates): checked, not touched, so a
    forgotten tab still idles out."""
    return _viewer(request, touch=False)


def admin_viewer(request: Request) -> Viewer:
    viewer = current_viewer(request)
    if not viewer.is_admin:
        raise HTTPException(status_code=403, detail="administrators only")
    return viewer


def check_csrf(viewer: Viewer, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(submitted.encode(), viewer.csrf.encode()):
        raise HTTPException(status_code=403, detail="the form's security token is missing or stale; reload the page")


def login_form_token(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: Request, secret: bytes, submitted: str | None) -> bool:
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or not submitted:
        return False
    return hmac.compare_digest(login_form_token(secret, nonce), submitted)


def set_cookie(response, name: str, value: str, *, secure: bool, max_age: int | None = None, path: str = "/") -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, max_age=max_age, path=path)
