"""Alembic environment: run from db.migrate with the connection in config.attributes (no alembic.ini, no URL here)."""
from __future__ import annotations

from alembic import context

from integrations.dashboard.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the dashboard's migrations through integrations.dashboard.store.db.migrate")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
