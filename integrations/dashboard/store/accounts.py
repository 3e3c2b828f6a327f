"""Local accounts (argon2id), server-side sessions, CSRF tokens, the login rate limit, reviewer pseudonyms.

Sessions: the browser holds a random token; the store keeps only its SHA-256, so a copy of the database does not
log anyone in. The CSRF token is random per session and returned with the session's account. Login attempts live in
the database, so the rate limit holds across replicas.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from integrations.dashboard.store.models import AccountRow, LoginAttempt, UserSession, utcnow

ROLES = ("reviewer", "admin")
_HASHER = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory defaults
# Verified for unknown names, so "no such user" takes as long as "wrong password".
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
ATTEMPTS_KEPT = timedelta(days=1)
# One address trying many names (spraying) is refused after this many times the per-account allowance.
SPRAY_FACTOR = 4


class AccountExists(ValueError):
    pass


class UnknownAccount(LookupError):
    pass


@dataclass
class Account:
    id: int
    name: str
    role: str  # "reviewer" | "admin"
    active: bool


def _account(row: AccountRow) -> Account:
    return Account(row.id, row.name, row.role, row.active)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("an account name has 1 to 100 characters")
    return name


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise ValueError("a password has at least 8 characters")


def add_user(s: Session, name: str, role: str, password: str) -> Account:
    name = _check_name(name)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    _check_password(password)
    if s.scalar(select(AccountRow.id).where(AccountRow.name == name)) is not None:
        raise AccountExists(f"an account named {name!r} exists")
    row = AccountRow(name=name, role=role, password_hash=_HASHER.hash(password), active=True, created_at=utcnow())
    s.add(row)
    s.flush()
    return _account(row)


def _row(s: Session, name: str) -> AccountRow:
    row = s.scalar(select(AccountRow).where(AccountRow.name == name))
    if row is None:
        raise UnknownAccount(f"no account named {name!r}")
    return row


def set_password(s: Session, name: str, password: str) -> None:
    _check_password(password)
    row = _row(s, name)
    row.password_hash = _HASHER.hash(password)
    _end_all(s, row.id)  # a new password ends every open session of the account


def disable_user(s: Session, name: str) -> None:
    row = _row(s, name)
    row.active = False
    _end_all(s, row.id)


def enable_user(s: Session, name: str) -> None:
    _row(s, name).active = True


def list_users(s: Session) -> list[Account]:
    return [_account(r) for r in s.scalars(select(AccountRow).order_by(AccountRow.name))]


def authenticate(s: Session, name: str, password: str) -> Account | None:
    """The active account when the password matches, else None (same work for unknown names)."""
    row = s.scalar(select(AccountRow).where(AccountRow.name == name))
    try:
        _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        row.password_hash = _HASHER.hash(password)
    return _account(row)


# --- login rate limit ---------------------------------------------------------------------------------------------

def login_allowed(s: Session, name: str, addr: str, attempts: int, window_s: float) -> bool:
    """False when (name, addr) failed `attempts` times within the window, or the address failed SPRAY_FACTOR times
    that many over all names (one address guessing many accounts). A success does not erase earlier failures."""
    since = utcnow() - timedelta(seconds=window_s)
    failed = (LoginAttempt.ok.is_(False), LoginAttempt.at > since)
    pair = s.scalar(select(func.count()).select_from(LoginAttempt)
                    .where(LoginAttempt.name == name, LoginAttempt.addr == addr, *failed)) or 0
    if pair >= attempts:
        return False
    spray = s.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.addr == addr, *failed)) or 0
    return spray < attempts * SPRAY_FACTOR


def note_login(s: Session, name: str, addr: str, ok: bool) -> None:
    now = utcnow()
    s.add(LoginAttempt(name=name[:100], addr=addr[:100], ok=ok, at=now))
    s.execute(delete(LoginAttempt).where(LoginAttempt.at < now - ATTEMPTS_KEPT))


# --- sessions -----------------------------------------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(s: Session, account: Account) -> tuple[str, str]:
    """A new session: (session token for the cookie, CSRF token for the forms)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    s.add(UserSession(token_hash=_token_hash(token), account_id=account.id, csrf_token=csrf, created_at=now,
                      last_seen=now))
    s.flush()
    return token, csrf


def session_account(s: Session, token: str, idle_timeout_s: float, touch: bool = True) -> tuple[Account, str] | None:
    """The session's account and CSRF token, touching last_seen unless `touch` is False (background requests of an
    open page, such as its live updates, must not keep an idle session alive); None when the token is unknown, the
    session ended or idled out (it is then ended), or the account is disabled."""
    if not token:
        return None
    row = s.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.ended_at is not None:
        return None
    now = utcnow()
    if now - row.last_seen > timedelta(seconds=idle_timeout_s):
        row.ended_at = now
        return None
    account = s.get(AccountRow, row.account_id)
    if account is None or not account.active:
        return None
    if touch:
        row.last_seen = now
    return _account(account), row.csrf_token


def check_csrf(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def end_session(s: Session, token: str) -> None:
    s.execute(update(UserSession).where(UserSession.token_hash == _token_hash(token), UserSession.ended_at.is_(None))
              .values(ended_at=utcnow()))


def _end_all(s: Session, account_id: int) -> None:
    s.execute(update(UserSession).where(UserSession.account_id == account_id, UserSession.ended_at.is_(None))
              .values(ended_at=utcnow()))


def pseudonym(name: str, secret: str) -> str:
    """The reviewer as published on the adjudications topic: HMAC-SHA256 of the account name, 16 hex characters."""
    return hmac.new(secret.encode(), ("<reviewer>|" + name).encode(), hashlib.sha256).hexdigest()[:16]
