"""Acknowledge / adjudicate: state machine, optimistic locking with two sessions at once, audit and outbox rows in
the action's transaction, CSV export and the agreement summary."""
from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from sqlalchemy import select

from integrations.dashboard.store import (
    InvalidAction,
    NotFound,
    StaleAlert,
    acknowledge,
    add_user,
    adjudicate,
    adjudications_csv,
    agreement,
    alert_detail,
    ingest_analysis,
    ingest_report,
    list_audit,
    pseudonym,
    session_factory,
)
from integrations.dashboard.store.models import OutboxRow
from tests.integrations.dashboard_store.conftest import SECRET


def _ingest(store, *pairs):
    with store.session() as s:
        for p in pairs:
            ingest_report(s, p.report, p.headers, p.broker_ts_ms)
            ingest_analysis(s, p.analysis)
        s.commit()


def _row(store, report_id):
    with store.session() as s:
        return alert_detail(s, report_id).row


def test_acknowledge_then_adjudicate_writes_action_audit_outbox(store, pairs, reviewer):
    p = pairs["secondary"]
    _ingest(store, p)
    row = _row(store, p.report_id)
    with store.session() as s:
        ack = acknowledge(s, p.report_id, reviewer, row.row_version, "10.1.2.3", identity_secret=SECRET)
        s.commit()
    assert ack.state == "acknowledged" and ack.row_version == row.row_version + 1
    with store.session() as s:
        with pytest.raises(InvalidAction):
            adjudicate(s, p.report_id, reviewer, ack.row_version, "agree-secondary", None, "", "x",
                       identity_secret=SECRET)
        with pytest.raises(InvalidAction):
            acknowledge(s, p.report_id, reviewer, ack.row_version, "x", identity_secret=SECRET)
        done = adjudicate(s, p.report_id, reviewer, ack.row_version, "agree-secondary", "lbbb", "QRS 150 ms",
                          "10.1.2.3", identity_secret=SECRET)
        s.commit()
    with store.session() as s:
        detail = alert_detail(s, p.report_id)
        outbox = list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))
        audit, _ = list_audit(s, None)
    assert detail.row.state == "adjudicated" and detail.row.row_version == done.row_version
    assert [(a["who"], a["what"], a["verdict"], a["cause"]) for a in detail.actions] == [
        ("rev-one", "acknowledge", None, None), ("rev-one", "adjudicate", "agree-secondary", "lbbb")]
    payload = json.loads(outbox[1].payload)
    assert outbox[1].key == p.report_id and outbox[1].sent_at is None
    assert payload == {"action_id": done.action_id, "report_id": p.report_id, "report_version": 1,
                       "reviewer": pseudonym("rev-one", SECRET), "action": "adjudicate",
                       "verdict": "agree-secondary", "cause": "lbbb", "note": "QRS 150 ms",
                       "time": payload["time"], "research_only": True}
    assert "rev-one" not in outbox[1].payload and payload["time"].endswith("Z")
    assert [a["action"] for a in audit] == ["adjudicate", "acknowledge"] and audit[0]["client_addr"] == "10.1.2.3"


def test_refusals(store, pairs, reviewer):
    _ingest(store, pairs["ischemic"], pairs["no-twi"])
    row = _row(store, pairs["ischemic"].report_id)
    with store.session() as s:
        with pytest.raises(NotFound):
            acknowledge(s, "nope", reviewer, 1, "x", identity_secret=SECRET)
        with pytest.raises(InvalidAction):
            acknowledge(s, pairs["no-twi"].report_id, reviewer, 1, "x", identity_secret=SECRET)
        with pytest.raises(InvalidAction):
            adjudicate(s, row.id, reviewer, row.row_version, "maybe", None, "", "x", identity_secret=SECRET)
        with pytest.raises(InvalidAction):
            adjudicate(s, row.id, reviewer, row.row_version, "disagree", "lbbb", "", "x", identity_secret=SECRET)
        with pytest.raises(StaleAlert):
            acknowledge(s, row.id, reviewer, row.row_version - 1, "x", identity_secret=SECRET)
        assert s.scalar(select(OutboxRow.id)) is None


def test_two_reviewers_at_once_one_wins(store, pairs, reviewer):
    """Two sessions (two replicas' engines) act on the same row_version concurrently: the second UPDATE waits for
    the first to commit, then matches no row: StaleAlert, and only one outbox row exists."""
    p = pairs["ischemic"]
    _ingest(store, p)
    with store.session() as s:
        other = add_user(s, "rev-two", "reviewer", "another good passphrase")
        s.commit()
    shown = _row(store, p.report_id).row_version
    engine_b = store.second_engine()
    sa = store.session()
    adjudicate(sa, p.report_id, reviewer, shown, "agree-ischemic", None, "", "a", identity_secret=SECRET)
    result: dict = {}

    def second():
        with session_factory(engine_b)() as sb:
            try:
                adjudicate(sb, p.report_id, other, shown, "disagree", None, "", "b", identity_secret=SECRET)
                sb.commit()
                result["b"] = "ok"
            except StaleAlert:
                sb.rollback()
                result["b"] = "stale"

    t = threading.Thread(target=second)
    t.start()
    t.join(0.5)
    sa.commit()
    sa.close()
    t.join(30)
    assert result == {"b": "stale"}
    with store.session() as s:
        assert len(list(s.scalars(select(OutboxRow)))) == 1
        assert [a["who"] for a in alert_detail(s, p.report_id).actions] == ["rev-one"]
    engine_b.dispose()


def test_csv_export_and_agreement(store, pairs, reviewer):
    isch, sec = pairs["ischemic"], pairs["secondary"]
    _ingest(store, isch, sec)
    with store.session() as s:
        other = add_user(s, "rev-two", "reviewer", "another good passphrase")
        for user, verdict_isch, verdict_sec in ((reviewer, ("agree-ischemic", None), ("agree-secondary", "lbbb")),
                                                (other, ("disagree", None), ("agree-secondary", "rbbb"))):
            for p, (verdict, cause) in ((isch, verdict_isch), (sec, verdict_sec)):
                rv = alert_detail(s, p.report_id).row.row_version
                adjudicate(s, p.report_id, user, rv, verdict, cause, "=HYPERLINK(1)", "x", identity_secret=SECRET)
        s.commit()
        lines = list(adjudications_csv(s))
        summary = {r["reviewer"]: r for r in agreement(s)}
    assert lines[-1].startswith("# RESEARCH USE ONLY")
    rows = list(csv.DictReader(io.StringIO("".join(lines[:-1]))))
    assert len(rows) == 4 and {r["research_only"] for r in rows} == {"true"}
    assert all(r["note"] == "'=HYPERLINK(1)" for r in rows)  # no formula injection
    assert {r["reviewer"] for r in rows} == {pseudonym("rev-one", SECRET), pseudonym("rev-two", SECRET)}
    assert "ptbxl" not in "".join(lines)  # no patient identifier leaves in the export
    assert summary["rev-one"]["n"] == 2 and summary["rev-one"]["criteria_agreed"] == 1.0
    assert summary["rev-two"]["criteria_n"] == 2 and summary["rev-two"]["criteria_agreed"] == 0.0
    assert summary["rev-one"]["head_n"] == 0 and summary["rev-one"]["head_agreed"] is None  # no head in these
