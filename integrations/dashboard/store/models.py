"""The dashboard's tables (SQLAlchemy 2.0 declarative). The schema itself is created by the Alembic migrations in
migrations/versions; a change here needs a new migration (tests/integrations/dashboard_store checks they match).

Times are stored as UTC (`UtcDateTime`): SQLite keeps no zone, so every value is converted to UTC on the way in and
comes back tz-aware.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class UtcDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the dashboard store (times must carry a zone)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Report(Base):
    """One report (all its versions) and, when it is an alert, its review state (docs/SPEC.md §13.2).

    Queue order is (state_rank, class_rank, time_key, id) ascending: time_key is minus the epoch milliseconds of the
    report's time, so "newest first" is ascending too and one composite index serves the order and keyset paging.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="ecg")  # ecg | episode
    version: Mapped[int] = mapped_column(Integer, default=0)  # highest version seen (bundle or analysis)
    bundle_version: Mapped[int] = mapped_column(Integer, default=0)  # highest report bundle version stored
    analysis_version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str | None] = mapped_column(String(32))
    cls: Mapped[str | None] = mapped_column(String(64))  # triage class as in the report; "episode" for episodes
    conclusion_codes: Mapped[str | None] = mapped_column(Text)  # comma list of SNOMED codes
    novelty: Mapped[str] = mapped_column(String(16), default="unknown")
    mrn: Mapped[str | None] = mapped_column(String(200))
    mrn_system: Mapped[str | None] = mapped_column(String(300))
    unit: Mapped[str | None] = mapped_column(String(100))
    bed: Mapped[str | None] = mapped_column(String(100))
    device: Mapped[str | None] = mapped_column(String(200))
    source_id: Mapped[str | None] = mapped_column(String(300))
    group_key: Mapped[str] = mapped_column(String(300), default="")
    time: Mapped[datetime | None] = mapped_column(UtcDateTime)  # acquired (episodes: start), else issued
    time_key: Mapped[int] = mapped_column(BigInteger, default=0)
    is_alert: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str | None] = mapped_column(String(16))  # new | acknowledged | adjudicated (alerts only)
    state_rank: Mapped[int] = mapped_column(Integer, default=0)
    class_rank: Mapped[int] = mapped_column(Integer, default=9)
    changed_since_adjudication: Mapped[bool] = mapped_column(Boolean, default=False)
    row_version: Mapped[int] = mapped_column(Integer, default=1)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)  # NULL only inside the creating transaction
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_reports_source_id", "source_id"),
    )


# The queue's indexes are partial (alerts only), and every queue query states exactly this predicate, so each
# dialect matches it to the index (SQLite matches a partial index's WHERE term literally: `is_alert = 1`). With no
# is_alert column in the keys, an equality filter (unit, bed, patient) makes the planner choose that filter's index
# even without table statistics.
QUEUED = Report.is_alert == true()
QUEUE_ORDER = ("state_rank", "class_rank", "time_key", "id")
for _name, _lead in (("ix_reports_queue", ()), ("ix_reports_queue_unit", ("unit",)),
                     ("ix_reports_queue_bed", ("unit", "bed")), ("ix_reports_queue_mrn", ("mrn",))):
    Index(_name, *(getattr(Report, c) for c in _lead + QUEUE_ORDER), sqlite_where=QUEUED, postgresql_where=QUEUED)
# A class filter fixes class_rank; the planner then drops it from the ORDER BY, and (state_rank, time_key, id) is in
# index order only where class_rank comes before state_rank (migration 0003).
for _name, _lead in (("ix_reports_queue_class", ()), ("ix_reports_queue_unit_class", ("unit",))):
    Index(_name, *(getattr(Report, c) for c in _lead + ("class_rank", "state_rank", "time_key", "id")),
          sqlite_where=QUEUED, postgresql_where=QUEUED)


class ReportVersion(Base):
    """One report bundle version as received from the reports topic (the bundle JSON kept verbatim)."""

    __tablename__ = "report_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    issued: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received: Mapped[datetime] = mapped_column(UtcDateTime)  # the message's broker time
    bundle: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("report_id", "version", name="uq_report_versions_report_id_version"),)


class AnalysisMessage(Base):
    """One analysis message (docs/SPEC.md §13.1) without its `signal`, which lives once per source in `signals`."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    source_id: Mapped[str | None] = mapped_column(String(300), index=True)
    message: Mapped[str] = mapped_column(Text)
    received: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("report_id", "version", name="uq_analyses_report_id_version"),)


class Signal(Base):
    """The analysed signal of one source ECG, stored once, so a prior stays viewable after topic retention."""

    __tablename__ = "signals"

    source_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    signal: Mapped[str] = mapped_column(Text)  # the §13.1 `signal` object as JSON


class Counter(Base):
    """Named counters; `change_seq` orders every change of `reports` (queue.py explains why a row, not a sequence)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    password_hash: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class UserSession(Base):
    """A server-side login session: only the SHA-256 of its token is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LoginAttempt(Base):
    """Login attempts, in the DB so the rate limit holds across replicas."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    addr: Mapped[str] = mapped_column(String(100))
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_login_attempts_name_addr_at", "name", "addr", "at"),
                      Index("ix_login_attempts_addr_at", "addr", "at"))


class Action(Base):
    """A reviewer's acknowledgement or adjudication of one report version."""

    __tablename__ = "actions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID, the adjudications topic's action_id
    report_id: Mapped[str] = mapped_column(String(200), index=True)
    report_version: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(32))  # pseudonym (HMAC), as published
    action: Mapped[str] = mapped_column(String(16))  # acknowledge | adjudicate
    verdict: Mapped[str | None] = mapped_column(String(32))
    cause: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    cls: Mapped[str | None] = mapped_column(String(64))  # the report's triage class when acted on
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    account_id: Mapped[int | None] = mapped_column(Integer)
    account_name: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(300))
    client_addr: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxRow(Base):
    """A message for the adjudications topic, written in the action's transaction; sent_at set after the ack."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(String(36), unique=True)
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_outbox_pending", "sent_at", "id"),)
