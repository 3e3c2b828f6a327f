"""Engines, sessions and migrations of the dashboard's store.

SQLite (the default, one replica) or PostgreSQL (several replicas). The Alembic migrations ship inside the package
(migrations/), so `migrate` needs no alembic.ini at run time.
"""
from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# pg_advisory_xact_lock key: replicas starting together run the migrations one after the other.
_MIGRATION_LOCK = 0x7477_6977  # "twiw"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def default_url(data_dir: Path) -> str:
    """SQLite file in `data_dir` (created if missing)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'dashboard.sqlite3'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (pages load while messages arrive)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # wait for the writer instead of failing at once
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes, fsync at checkpoints
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`: SQLite with WAL, foreign keys and a busy timeout; PostgreSQL with pool_pre_ping."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ValueError(f"the dashboard store supports sqlite:// and postgresql+psycopg:// URLs, not {parsed.drivername}")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "integrations.dashboard.store:migrations")
    return cfg


def migrate(url: str, engine: Engine | None = None) -> None:
    """Alembic `upgrade head`, in one transaction. On PostgreSQL a transaction-scoped advisory lock makes replicas
    that start together take turns (the second finds the schema at head and does nothing)."""
    own = engine is None
    engine = engine or make_engine(url)
    try:
        with _sqlite_file_lock(url), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if own:
            engine.dispose()


@contextlib.contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """SQLite has no advisory lock: two processes migrating one file take turns on a lock file beside it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        yield
        return
    with open(f"{parsed.database}.migrate-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> bool:
    """True when the store answers SELECT 1 (for /healthz)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the caller reports it
        return False


def insert_ignore(s: Session, model: Any, values: dict[str, Any], key: list[str]) -> bool:
    """INSERT unless a row with the same `key` (a unique constraint's columns) exists; True when inserted.
    Atomic on both backends (ON CONFLICT DO NOTHING), so replicas that receive the same message do not fail."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = model.__table__
    stmt = (insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
            .returning(*table.primary_key.columns))
    # RETURNING rather than rowcount: psycopg reports no rowcount for this statement through SQLAlchemy.
    return s.connection().execute(stmt).first() is not None
