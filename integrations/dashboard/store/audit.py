"""The audit trail: who did what to which report, from where (actions, report access, logins, logouts).

Targets are report ids or account names, never patient identifiers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrations.dashboard.store.models import AuditEntry, utcnow

if TYPE_CHECKING:
    from integrations.dashboard.store.accounts import Account


def record(s: Session, account: Account | None, action: str, target: str | None, client_addr: str,
           detail: str = "") -> None:
    s.add(AuditEntry(at=utcnow(), account_id=account.id if account else None,
                     account_name=account.name if account else None, action=action[:64],
                     target=target[:300] if target else None, client_addr=client_addr[:100], detail=detail))


def list_audit(s: Session, cursor: str | None, limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is the last id shown."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if cursor:
        try:
            q = q.where(AuditEntry.id < int(cursor))
        except ValueError:
            raise ValueError("not an audit cursor") from None
    rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    out = [{"id": r.id, "at": r.at, "account": r.account_name, "action": r.action, "target": r.target,
            "client_addr": r.client_addr, "detail": r.detail} for r in rows]
    return out, (str(rows[-1].id) if more else None)
