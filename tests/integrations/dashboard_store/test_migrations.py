"""Migrations run from the package, twice without change, and leave the schema the models describe."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from integrations.dashboard.store import make_engine, migrate, ping
from integrations.dashboard.store.db import alembic_config, current_revision
from integrations.dashboard.store.models import Base
from tests.support import postgres
from tests.support.records import ROOT


def test_migrate_is_idempotent_and_matches_models(store):
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(store.engine) == head
    migrate(store.url)  # again: nothing to do, no error
    assert current_revision(store.engine) == head
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diffs == [], f"models and migrations differ: {diffs}"
    assert ping(store.engine)


def test_replicas_migrate_at_once(tmp_path, request, store):
    """Three replica processes start on a fresh database at once: each migrate() waits its turn (PostgreSQL:
    advisory lock) and all end at head."""
    url = store.url
    if store.backend == "postgres":
        url = postgres.create_database(request.getfixturevalue("pg_server"), "m" + uuid.uuid4().hex[:12])
    else:
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    code = "import sys; from integrations.dashboard.store import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = make_engine(url)
    assert current_revision(engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine.dispose()


def test_ping_false_when_unreachable():
    assert not ping(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"))
