"""Queue order (docs/SPEC.md §13.2), keyset paging, filters, reopening, and live changes across two writers."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from integrations.dashboard.store import (
    AlertFilter,
    BadCursor,
    acknowledge,
    adjudicate,
    alerts_by_state,
    changes_since,
    filter_values,
    ingest_report,
    latest_seq,
    list_alerts,
)
from tests.integrations.dashboard_store.conftest import SECRET, seed
from tests.support.dashboard_messages import replicate

CLASS_ORDER = {"ischemic-pattern": 0, "indeterminate": 1, "episode": 2}


def _expected_key(row):
    return ({"new": 0, "acknowledged": 1, "adjudicated": 2}[row.state],
            CLASS_ORDER.get(row.cls, 3), -row.time.timestamp())


def _all_pages(s, f, limit):
    rows, cursor, pages = [], None, 0
    while True:
        page, cursor = list_alerts(s, f, cursor, limit)
        rows += page
        pages += 1
        if cursor is None:
            return rows, pages


def test_order_and_keyset_paging(store, pairs, reviewer):
    made = seed(store, pairs, 40)
    with store.session() as s:
        first, _ = list_alerts(s, AlertFilter(), None, 40)
        # some reviewed: acknowledged and adjudicated go after the new ones
        acknowledge(s, first[0].id, reviewer, first[0].row_version, "127.0.0.1", identity_secret=SECRET)
        adjudicate(s, first[1].id, reviewer, first[1].row_version, "disagree", None, "", "127.0.0.1",
                   identity_secret=SECRET)
        s.commit()
    with store.session() as s:
        rows, pages = _all_pages(s, AlertFilter(), 7)
    assert pages == 6 and len(rows) == 40 and len({r.id for r in rows}) == 40
    assert {r.id for r in rows} == {p.report_id for p in made}
    assert [_expected_key(r) for r in rows] == sorted(_expected_key(r) for r in rows)
    assert rows[-1].id == first[1].id and rows[-2].id == first[0].id
    assert rows[0].cls == "ischemic-pattern" and rows[0].state == "new"
    with store.session() as s:
        assert alerts_by_state(s) == {"new": 38, "acknowledged": 1, "adjudicated": 1}


def test_filters(store, pairs):
    seed(store, pairs, 30)
    with store.session() as s:
        ccu, _ = _all_pages(s, AlertFilter(unit="CCU"), 4)
        sec, _ = _all_pages(s, AlertFilter(cls="secondary"), 4)
        bed, _ = list_alerts(s, AlertFilter(unit="ED", bed="1"), None)
        patient, _ = list_alerts(s, AlertFilter(patient="MRN0003"), None)
        values = filter_values(s)
        with pytest.raises(BadCursor):
            list_alerts(s, AlertFilter(), "garbage")
        with pytest.raises(ValueError):
            list_alerts(s, AlertFilter(state="open"), None)
    assert len(ccu) == 10 and all(r.unit == "CCU" for r in ccu)
    assert sec and all(r.cls.startswith("secondary:") for r in sec)
    assert bed and all((r.unit, r.bed) == ("ED", "1") for r in bed)
    assert [r.mrn for r in patient] == ["MRN0003"]
    assert values["units"] == ["CCU", "ED", "ICU"] and values["states"] == ["new"]
    assert values["classes"] == ["ischemic-pattern", "indeterminate", "secondary"]


def test_newer_version_reopens_adjudicated(store, pairs, reviewer):
    p = pairs["ischemic"]
    with store.session() as s:
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
        row = list_alerts(s, AlertFilter(), None)[0][0]
        adjudicate(s, p.report_id, reviewer, row.row_version, "agree-ischemic", None, "", "10.0.0.1",
                   identity_secret=SECRET)
        s.commit()
    v2 = replicate(p, report_id=p.report_id, mrn="ptbxl-4519", unit="CCU", bed="1", shift=timedelta(0), version=2)
    with store.session() as s:
        ingest_report(s, v2.report, v2.headers, v2.broker_ts_ms)
        s.commit()
        row = list_alerts(s, AlertFilter(), None)[0][0]
    assert (row.state, row.changed_since_adjudication, row.version) == ("new", True, 2)


def test_changes_since(store, pairs):
    seed(store, pairs, 5)
    with store.session() as s:
        top = latest_seq(s)
        seq, rows = changes_since(s, 0, limit=3)
        seq2, rows2 = changes_since(s, seq)
        assert changes_since(s, top) == (top, [])
    assert len(rows) + len(rows2) == 5 and seq2 == top


def test_changes_from_two_writers_arrive_in_commit_order(store, pairs):
    """Writer A takes a change number and holds its transaction open; writer B (another replica) starts later but
    must not commit a higher number first, or a reader whose cursor moved past B's would never see A's change."""
    a_pair, b_pair = (replicate(pairs["ischemic"], report_id=f"w{i}", mrn=f"W{i}", unit="CCU", bed=str(i),
                                shift=timedelta(minutes=i)) for i in (1, 2))
    other = store.second_engine()
    from integrations.dashboard.store import session_factory

    b_factory = session_factory(other)
    with store.session() as s:
        start = latest_seq(s)
    sa = store.session()
    change_a = ingest_report(sa, a_pair.report, a_pair.headers, a_pair.broker_ts_ms)  # not committed yet
    done: dict = {}

    def writer_b():
        with b_factory() as sb:
            done["b"] = ingest_report(sb, b_pair.report, b_pair.headers, b_pair.broker_ts_ms)
            sb.commit()

    t = threading.Thread(target=writer_b)
    t.start()
    t.join(1.0)
    assert t.is_alive(), "writer B committed while A held an earlier change number"
    with store.session() as reader:
        assert changes_since(reader, start) == (start, [])  # nothing committed yet: the cursor stays
    sa.commit()
    sa.close()
    t.join(30)
    assert not t.is_alive()
    with store.session() as reader:
        seq, rows = changes_since(reader, start)
    assert [r.id for r in rows] == ["w1", "w2"] and done["b"].seq > change_a.seq == rows[0].seq
    other.dispose()
