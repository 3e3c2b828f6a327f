"""Indexes for the class filter, alone and with a unit: with class_rank fixed by the filter, the planner drops it
from the ORDER BY, so only an index with class_rank before state_rank gives the rest of the queue order without a
sort (bench/dashboard_store.py at 10,000 alerts: SQLite sorted every ICU alert for unit=ICU, class=secondary).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

NEW = {'ix_reports_queue_class': ['class_rank', 'state_rank', 'time_key', 'id'],
       'ix_reports_queue_unit_class': ['unit', 'class_rank', 'state_rank', 'time_key', 'id']}


def upgrade() -> None:
    queued = sa.column('is_alert') == sa.true()
    for name, columns in NEW.items():
        op.create_index(name, 'reports', columns, unique=False, sqlite_where=queued, postgresql_where=queued)


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name='reports')
