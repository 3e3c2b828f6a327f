"""The queue's indexes become partial (alerts only) without is_alert in their keys, plus a unit-only index, so the
unit, bed and patient filters each get a range scan in queue order (bench/dashboard_store.py: on SQLite, without
table statistics, the old (is_alert, ...) index was chosen for filtered pages and the table scanned).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ORDER = ['state_rank', 'class_rank', 'time_key', 'id']
NEW = {'ix_reports_queue': [], 'ix_reports_queue_unit': ['unit'], 'ix_reports_queue_bed': ['unit', 'bed'],
       'ix_reports_queue_mrn': ['mrn']}
OLD = {'ix_reports_queue': ['is_alert'], 'ix_reports_queue_unit': ['unit', 'bed'], 'ix_reports_queue_mrn': ['mrn']}


def upgrade() -> None:
    queued = sa.column('is_alert') == sa.true()
    with op.batch_alter_table('reports', schema=None) as batch_op:
        for name in OLD:
            batch_op.drop_index(name)
    for name, lead in NEW.items():
        op.create_index(name, 'reports', lead + ORDER, unique=False, sqlite_where=queued, postgresql_where=queued)


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name='reports')
    for name, lead in OLD.items():
        op.create_index(name, 'reports', lead + ORDER, unique=False)
