"""Reviewers' actions on an alert (docs/SPEC.md §13.2, §13.3): acknowledge, adjudicate.

Optimistic locking: the caller sends the row_version it showed; the state change is one
`UPDATE ... WHERE row_version = :shown`, so of two reviewers acting on the same version exactly one succeeds and
the other gets StaleAlert (on PostgreSQL the second UPDATE waits for the first to commit and then matches no row).
The action row, its audit row and its outbox row (the §13.3 message) are written in the same transaction, so
nothing is published that was not stored and nothing stored is lost (outbox.publish_pending sends it).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from integrations.dashboard.store import audit
from integrations.dashboard.store.accounts import Account, pseudonym
from integrations.dashboard.store.models import Action, OutboxRow, Report, utcnow
from integrations.dashboard.store.queue import STATE_RANK, next_seq

VERDICTS = ("agree-ischemic", "agree-secondary", "disagree", "artifact")
# engine SecondaryFinding.cause values (the part after "secondary:" in a triage class)
SECONDARY_CAUSES = ("lbbb", "rbbb", "lvh-strain", "ventricular-pacing", "wpw", "ivcd")
MAX_NOTE = 4000


class NotFound(LookupError):
    pass


class StaleAlert(RuntimeError):
    """The alert changed since the reviewer saw it (another action, or a newer report version)."""


class InvalidAction(ValueError):
    """An action this alert or verdict does not allow; the message is safe to show."""


@dataclass
class ActionResult:
    action_id: str
    row_version: int
    state: str


def acknowledge(s: Session, report_id: str, user: Account, row_version: int, client_addr: str, *,
                identity_secret: str) -> ActionResult:
    """new -> acknowledged (seen, to be adjudicated)."""
    return _act(s, report_id, user, row_version, client_addr, identity_secret, "acknowledge", None, None, "")


def adjudicate(s: Session, report_id: str, user: Account, row_version: int, verdict: str, cause: str | None,
               note: str, client_addr: str, *, identity_secret: str) -> ActionResult:
    """Any alert state -> adjudicated. agree-secondary needs the cause agreed with."""
    if verdict not in VERDICTS:
        raise InvalidAction(f"verdict must be one of {', '.join(VERDICTS)}")
    cause = (cause or "").strip() or None
    if verdict == "agree-secondary":
        if cause not in SECONDARY_CAUSES:
            raise InvalidAction(f"agree-secondary needs the cause agreed with ({', '.join(SECONDARY_CAUSES)})")
    elif cause is not None:
        raise InvalidAction("a cause goes only with agree-secondary")
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidAction(f"a note has at most {MAX_NOTE} characters")
    return _act(s, report_id, user, row_version, client_addr, identity_secret, "adjudicate", verdict, cause, note)


def _act(s: Session, report_id: str, user: Account, row_version: int, client_addr: str, identity_secret: str,
         action: str, verdict: str | None, cause: str | None, note: str) -> ActionResult:
    if not identity_secret:
        raise ValueError("the identity secret is needed for the reviewer's pseudonym")
    r = s.scalar(select(Report).where(Report.report_id == report_id))
    if r is None:
        raise NotFound("no such report")
    if not r.is_alert:
        raise InvalidAction("this report is not an alert (no T-wave inversion finding): nothing to review")
    if r.row_version != row_version:
        raise StaleAlert("the alert changed since it was shown")
    if action == "acknowledge" and r.state != "new":
        raise InvalidAction(f"only a new alert can be acknowledged (this one is {r.state})")
    state = "acknowledged" if action == "acknowledge" else "adjudicated"
    changed = r.changed_since_adjudication and action == "acknowledge"
    now = utcnow()
    done = s.execute(
        update(Report).where(Report.id == r.id, Report.row_version == row_version)
        .values(state=state, state_rank=STATE_RANK[state], changed_since_adjudication=changed,
                row_version=row_version + 1, updated_at=now)
        .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        raise StaleAlert("the alert changed since it was shown")
    action_id = str(uuid.uuid4())
    reviewer = pseudonym(user.name, identity_secret)
    s.add(Action(id=action_id, report_id=report_id, report_version=r.version, account_id=user.id, reviewer=reviewer,
                 action=action, verdict=verdict, cause=cause, note=note, cls=r.cls, at=now))
    audit.record(s, user, action, report_id, client_addr, f"version {r.version}" + (f", {verdict}" if verdict else ""))
    payload = {"action_id": action_id, "report_id": report_id, "report_version": r.version, "reviewer": reviewer,
               "action": action, "verdict": verdict, "cause": cause, "note": note,
               "time": now.isoformat().replace("+00:00", "Z"), "research_only": True}
    s.add(OutboxRow(action_id=action_id, key=report_id, created_at=now,
                    payload=json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)))
    s.flush()
    seq = next_seq(s)  # last: see queue.py
    s.execute(update(Report).where(Report.id == r.id).values(seq=seq).execution_options(synchronize_session=False))
    s.expire(r)
    return ActionResult(action_id, row_version + 1, state)
