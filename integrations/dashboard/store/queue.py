"""The alert queue (docs/SPEC.md §13.2): order, keyset paging, filters and live changes.

Order: unreviewed first (new, then acknowledged, then adjudicated), then triage class (ischemic-pattern,
indeterminate, episode, secondary), then newest. Each report row carries the three as integer keys (state_rank,
class_rank, time_key = minus epoch ms), so the order is (state_rank, class_rank, time_key, id) ascending: one
composite partial index over the alerts (models.Report) serves it, and a page is a range scan from the cursor (no
OFFSET), as fast at 10,000 alerts as at 10 (bench/dashboard_store.py measures it). The unit, bed and patient
filters have their own partial indexes with the filter column first, so a filtered page is a range scan too.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select, tuple_, update
from sqlalchemy.orm import Session

from integrations.dashboard.store.models import QUEUED, Counter, Report

STATES = ("new", "acknowledged", "adjudicated")
STATE_RANK = {state: rank for rank, state in enumerate(STATES)}
CLASS_FILTERS = ("ischemic-pattern", "indeterminate", "episode", "secondary")  # in queue order
NOT_QUEUED_RANK = 9


def class_rank(cls: str | None, kind: str) -> int:
    if kind == "episode":
        return CLASS_FILTERS.index("episode")
    if not cls:
        return NOT_QUEUED_RANK
    if cls.startswith("secondary"):
        return CLASS_FILTERS.index("secondary")
    return CLASS_FILTERS.index(cls) if cls in CLASS_FILTERS else NOT_QUEUED_RANK


def is_alert_class(cls: str | None, kind: str) -> bool:
    """An alert: a TWI class (ischemic-pattern, secondary:*, indeterminate) or a monitor episode; no-twi never."""
    return class_rank(cls, kind) != NOT_QUEUED_RANK


def time_key(time: datetime | None) -> int:
    return -int(time.timestamp() * 1000) if time is not None else 0


class BadCursor(ValueError):
    """A cursor this store did not write (or from another filter); the caller answers 400."""


@dataclass
class AlertFilter:
    unit: str | None = None
    bed: str | None = None
    cls: str | None = None  # "ischemic-pattern" | "secondary" | "indeterminate" | "episode"
    state: str | None = None
    patient: str | None = None  # MRN, exact


@dataclass
class AlertRow:
    id: str  # report identifier value
    mrn: str | None
    unit: str | None
    bed: str | None
    cls: str  # triage class as in the report, e.g. "secondary:rbbb"; "episode" for monitor episodes
    kind: str  # "ecg" | "episode"
    novelty: str
    time: datetime  # acquired (episodes: start), tz-aware UTC
    state: str
    version: int
    changed_since_adjudication: bool
    group_key: str  # patient key or episode id, for grouping
    seq: int
    row_version: int


def alert_row(r: Report) -> AlertRow:
    return AlertRow(
        id=r.report_id, mrn=r.mrn, unit=r.unit, bed=r.bed, cls=r.cls or ("episode" if r.kind == "episode" else ""),
        kind=r.kind, novelty=r.novelty, time=r.time or r.created_at, state=r.state or "", version=r.version,
        changed_since_adjudication=r.changed_since_adjudication, group_key=r.group_key, seq=r.seq or 0,
        row_version=r.row_version,
    )


def _encode_cursor(r: Report) -> str:
    raw = json.dumps([r.state_rank, r.class_rank, r.time_key, r.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int, int, int]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(values, list) and len(values) == 4 and all(type(v) is int for v in values)):
            raise ValueError
        return values[0], values[1], values[2], values[3]
    except ValueError:
        raise BadCursor("not a queue cursor") from None


def alert_query(f: AlertFilter, cursor: str | None, limit: int) -> Select[tuple[Report]]:
    """The page query of list_alerts (bench/dashboard_store.py shows its plan)."""
    order = (Report.state_rank, Report.class_rank, Report.time_key, Report.id)
    q = select(Report).where(QUEUED)
    if f.state:
        if f.state not in STATE_RANK:
            raise ValueError(f"unknown state {f.state!r} (one of {', '.join(STATES)})")
        q = q.where(Report.state_rank == STATE_RANK[f.state])
    if f.cls:
        if f.cls not in CLASS_FILTERS:
            raise ValueError(f"unknown class {f.cls!r} (one of {', '.join(CLASS_FILTERS)})")
        q = q.where(Report.class_rank == CLASS_FILTERS.index(f.cls))
    if f.unit:
        q = q.where(Report.unit == f.unit)
    if f.bed:
        q = q.where(Report.bed == f.bed)
    if f.patient:
        q = q.where(Report.mrn == f.patient)
    if cursor:
        q = q.where(tuple_(*order) > tuple_(*_decode_cursor(cursor)))
    return q.order_by(*order).limit(limit)


def list_alerts(s: Session, f: AlertFilter, cursor: str | None, limit: int = 50) -> tuple[list[AlertRow], str | None]:
    """One page of the queue in queue order, and the cursor of the next page (None on the last)."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    rows = list(s.scalars(alert_query(f, cursor, limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [alert_row(r) for r in rows], (_encode_cursor(rows[-1]) if more else None)


# --- live changes -------------------------------------------------------------------------------------------------
# Every change of a report row takes the next value of one counter row (`counters.change_seq`), by an UPDATE taken
# as the LAST statement of the writing transaction. The UPDATE locks that row until the transaction commits, so
# two writers (two replicas, or the consumer and a web request) get their numbers in commit order: the second
# waits for the first to commit. A reader that has seen seq n committed has therefore seen every seq below n too,
# and `changes_since(n)` misses nothing. A PostgreSQL SEQUENCE would not give this: nextval() is not rolled back and
# not ordered by commit, so a writer holding seq 5 may commit after another has committed seq 6, and a reader that
# already moved its cursor to 6 would never see 5. The price is that writers serialise on the counter for the
# instant between taking it and committing (it is taken last, so that window is the commit itself); the
# dashboard's write rate (a few messages and clicks a second) is far below that limit. SQLite serialises writers
# anyway.

def next_seq(s: Session) -> int:
    """The next change number; call it as the last write before the commit (see above)."""
    table = Counter.__table__
    return s.connection().execute(update(table).where(table.c.name == "change_seq")
                                  .values(value=table.c.value + 1).returning(table.c.value)).scalar_one()


def alerts_by_state(s: Session) -> dict[str, int]:
    """Alerts per state (new, acknowledged, adjudicated), for /metrics: one COUNT ... GROUP BY."""
    rows = s.execute(select(Report.state, func.count()).where(Report.is_alert.is_(True)).group_by(Report.state))
    return {state: n for state, n in rows if state}


def latest_seq(s: Session) -> int:
    """The highest committed change number (a starting point for changes_since)."""
    return s.scalar(select(func.max(Report.seq))) or 0


def changes_since(s: Session, seq: int, limit: int = 100) -> tuple[int, list[AlertRow]]:
    """Alerts changed after `seq`, oldest change first, and the seq to ask from next time."""
    rows = list(s.scalars(select(Report).where(Report.seq > seq).order_by(Report.seq).limit(limit)))
    if not rows:
        return seq, []
    return rows[-1].seq, [alert_row(r) for r in rows if r.is_alert]


def filter_values(s: Session) -> dict[str, list[str]]:
    """Values present in the queue, for the filter drop-downs: units, beds, classes (filter keys), states."""
    alerts = QUEUED
    units = s.scalars(select(Report.unit).where(alerts, Report.unit.is_not(None)).distinct().order_by(Report.unit))
    beds = s.scalars(select(Report.bed).where(alerts, Report.bed.is_not(None)).distinct().order_by(Report.bed))
    ranks = set(s.scalars(select(Report.class_rank).where(alerts).distinct()))
    states = set(s.scalars(select(Report.state).where(alerts).distinct()))
    return {"units": list(units), "beds": list(beds),
            "classes": [c for i, c in enumerate(CLASS_FILTERS) if i in ranks],
            "states": [st for st in STATES if st in states]}
