"""The review dashboard's store (docs/SPEC.md §13): SQLite (one replica) or PostgreSQL (several), Alembic
migrations shipped in the package. The interface is /work/notes/DASHBOARD_INTERFACE.md."""
from integrations.dashboard.store.accounts import (
    Account,
    AccountExists,
    UnknownAccount,
    add_user,
    authenticate,
    check_csrf,
    create_session,
    disable_user,
    enable_user,
    end_session,
    list_users,
    login_allowed,
    note_login,
    pseudonym,
    session_account,
    set_password,
)
from integrations.dashboard.store.actions import (
    VERDICTS,
    ActionResult,
    InvalidAction,
    NotFound,
    StaleAlert,
    acknowledge,
    adjudicate,
)
from integrations.dashboard.store.audit import list_audit
from integrations.dashboard.store.audit import record as audit_record
from integrations.dashboard.store.db import default_url, make_engine, migrate, ping, session_factory
from integrations.dashboard.store.detail import AlertDetail, alert_detail
from integrations.dashboard.store.export import adjudications_csv, agreement
from integrations.dashboard.store.ingest import BadMessage, Change, ingest_analysis, ingest_report
from integrations.dashboard.store.outbox import pending_count, publish_pending
from integrations.dashboard.store.queue import (
    AlertFilter,
    AlertRow,
    BadCursor,
    alerts_by_state,
    changes_since,
    filter_values,
    latest_seq,
    list_alerts,
)

__all__ = [
    "Account", "AccountExists", "ActionResult", "AlertDetail", "InvalidAction", "NotFound", "StaleAlert",
    "UnknownAccount", "VERDICTS", "acknowledge", "add_user", "adjudicate", "adjudications_csv", "agreement",
    "alert_detail", "audit_record", "authenticate", "check_csrf", "create_session", "disable_user", "enable_user",
    "end_session", "list_audit", "list_users", "login_allowed", "note_login", "pending_count", "pseudonym",
    "publish_pending", "session_account", "set_password",
    "AlertFilter", "AlertRow", "BadCursor", "BadMessage", "Change", "changes_since", "default_url",
    "alerts_by_state", "filter_values", "ingest_analysis", "ingest_report", "latest_seq", "list_alerts",
    "make_engine", "migrate",
    "ping", "session_factory",
]
