"""The review dashboard's store (docs/SPEC.md §13): SQLite (one replica) or PostgreSQL (several), Alembic
migrations shipped in the package. The interface is /work/notes/DASHBOARD_INTERFACE.md."""
from integrations.dashboard.store.db import default_url, make_engine, migrate, ping, session_factory
from integrations.dashboard.store.ingest import BadMessage, Change, ingest_analysis, ingest_report
from integrations.dashboard.store.queue import (
    AlertFilter,
    AlertRow,
    BadCursor,
    changes_since,
    filter_values,
    latest_seq,
    list_alerts,
)

__all__ = [
    "AlertFilter", "AlertRow", "BadCursor", "BadMessage", "Change", "changes_since", "default_url",
    "filter_values", "ingest_analysis", "ingest_report", "latest_seq", "list_alerts", "make_engine", "migrate",
    "ping", "session_factory",
]
