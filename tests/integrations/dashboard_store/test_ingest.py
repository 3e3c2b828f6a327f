"""Report bundles and analysis messages from real ECGs into the store: upserts, either order, redelivery, bad
input, signals stored once, the prior's signal on the follow-up's page."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from integrations.dashboard.store import (
    AlertFilter,
    BadMessage,
    alert_detail,
    ingest_analysis,
    ingest_report,
    list_alerts,
)
from integrations.dashboard.store.models import Signal
from tests.support.dashboard_messages import replicate


def test_report_then_analysis_and_redelivery(store, pairs):
    p = pairs["ischemic"]
    with store.session() as s:
        first = ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
    with store.session() as s:
        assert ingest_report(s, p.report, p.headers, p.broker_ts_ms) is None  # redelivery: nothing changes
        second = ingest_analysis(s, p.analysis)
        s.commit()
    with store.session() as s:
        assert ingest_analysis(s, p.analysis) is None
        s.commit()
    assert first.report_id == p.report_id and second.seq > first.seq
    with store.session() as s:
        rows, cursor = list_alerts(s, AlertFilter(), None)
        detail = alert_detail(s, p.report_id)
    assert cursor is None and [r.id for r in rows] == [p.report_id]
    row = rows[0]
    assert (row.cls, row.kind, row.state, row.version, row.unit, row.bed) == ("ischemic-pattern", "ecg", "new", 1,
                                                                                 "CCU", "1")
    assert row.mrn == "ptbxl-4519" and row.time.tzinfo is not None
    assert row.novelty == json.loads(p.analysis)["analysis"]["novelty"]
    assert detail.report["diagnostic_report"]["identifier"][0]["value"] == p.report_id
    assert detail.report["observations"] and detail.report["status"] == "preliminary"
    assert detail.analysis["signal"] == json.loads(p.analysis)["signal"]  # as sent
    assert [v["version"] for v in detail.versions] == [1]


def test_analysis_first_then_report(store, pairs):
    p = pairs["secondary"]
    with store.session() as s:
        ingest_analysis(s, p.analysis)
        s.commit()
    with store.session() as s:
        rows, _ = list_alerts(s, AlertFilter(), None)
        assert rows[0].cls == "secondary:lbbb" and rows[0].state == "new"
        assert alert_detail(s, p.report_id).report["diagnostic_report"] is None
    with store.session() as s:
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
    with store.session() as s:
        detail = alert_detail(s, p.report_id)
    assert detail.report["diagnostic_report"] is not None and detail.row.cls == "secondary:lbbb"


def test_report_without_analysis_shows_without_plot(store, pairs):
    p = pairs["indeterminate"]
    with store.session() as s:
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
        detail = alert_detail(s, p.report_id)
    assert detail.analysis is None and detail.prior is None and detail.row.cls == "indeterminate"
    assert detail.row.unit is None  # the location comes with the analysis message only


def test_no_twi_is_browsable_not_queued(store, pairs):
    p = pairs["no-twi"]
    with store.session() as s:
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        ingest_analysis(s, p.analysis)
        s.commit()
        assert list_alerts(s, AlertFilter(), None) == ([], None)
        assert alert_detail(s, p.report_id).row.cls == "no-twi"


def test_prior_signal_stays_viewable(store, pairs):
    prior, follow = pairs["prior"], pairs["followup"]
    with store.session() as s:
        for p in (prior, follow):
            ingest_report(s, p.report, p.headers, p.broker_ts_ms)
            ingest_analysis(s, p.analysis)
        s.commit()
        detail = alert_detail(s, follow.report_id)
    assert detail.prior is not None
    assert detail.prior["report_id"] == prior.report_id
    assert detail.prior["signal"] == json.loads(prior.analysis)["signal"]


def test_newer_version_keeps_one_signal_per_source(store, pairs):
    p = pairs["ischemic"]
    v2 = replicate(p, report_id=p.report_id, mrn="ptbxl-4519", unit="CCU", bed="1", shift=timedelta(0), version=2)
    v2_msg = json.loads(v2.analysis)
    v2_msg["source_id"] = json.loads(p.analysis)["source_id"]  # the same ECG, reported again
    with store.session() as s:
        ingest_analysis(s, p.analysis)
        ingest_analysis(s, json.dumps(v2_msg).encode())
        ingest_report(s, v2.report, v2.headers, v2.broker_ts_ms)
        ingest_report(s, p.report, p.headers, p.broker_ts_ms)  # v1 late: stored, does not win
        s.commit()
        assert s.scalar(select(func.count()).select_from(Signal)) == 1
        detail = alert_detail(s, p.report_id)
    assert detail.row.version == 2 and detail.report["version"] == 2
    assert [v["version"] for v in detail.versions] == [1, 2]


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b"not json", "not JSON"),
    (lambda b: json.dumps({"resourceType": "Patient"}).encode(), "not a FHIR Bundle"),
    (lambda b: b.replace(b'"code":"research-only"', b'"code":"x"'), "research-only"),
])
def test_bad_reports_are_refused_with_a_reason(store, pairs, mutate, reason):
    p = pairs["ischemic"]
    with store.session() as s, pytest.raises(BadMessage, match=reason):
        ingest_report(s, mutate(p.report), p.headers, p.broker_ts_ms)


def test_header_mismatch_and_bad_analysis(store, pairs):
    p = pairs["ischemic"]
    with store.session() as s:
        with pytest.raises(BadMessage, match="twiwatch.version"):
            ingest_report(s, p.report, {**p.headers, "twiwatch.version": b"7"}, p.broker_ts_ms)
        msg = json.loads(p.analysis)
        for key, value, reason in (("schema", "x/1", "schema"), ("research_only", False, "research_only"),
                                   ("version", 0, "version"), ("kind", "strip", "kind")):
            with pytest.raises(BadMessage, match=reason):
                ingest_analysis(s, json.dumps({**msg, key: value}).encode())
        lead = next(iter(msg["signal"]["leads"]))
        bad = {**msg, "signal": {**msg["signal"], "leads": {lead: "!!notbase64"}}}
        with pytest.raises(BadMessage, match="base64") as exc:
            ingest_analysis(s, json.dumps(bad).encode())
        assert "ptbxl" not in str(exc.value)  # reasons carry no patient data


def test_bad_analysis_writes_nothing(store, pairs):
    """Every field the store copies is checked before anything is written: a refused message leaves no row."""
    from integrations.dashboard.store.models import AnalysisMessage, Report

    msg = json.loads(pairs["ischemic"].analysis)
    msg["location"] = {**msg["location"], "unit": "U" * 500}
    with store.session() as s:
        with pytest.raises(BadMessage, match="location unit"):
            ingest_analysis(s, json.dumps(msg).encode())
        s.commit()
        assert s.scalar(select(func.count()).select_from(AnalysisMessage)) == 0
        assert s.scalar(select(func.count()).select_from(Report)) == 0


def test_group_key_joins_a_patients_alerts(store, pairs):
    a = replicate(pairs["ischemic"], report_id="g1", mrn="SAME", unit="CCU", bed="1", shift=timedelta(0))
    b = replicate(pairs["secondary"], report_id="g2", mrn="SAME", unit="CCU", bed="1", shift=timedelta(hours=1))
    with store.session() as s:
        for p in (a, b):
            ingest_report(s, p.report, p.headers, p.broker_ts_ms)
        s.commit()
        rows, _ = list_alerts(s, AlertFilter(), None)
    assert len({r.group_key for r in rows}) == 1 and "SAME" not in rows[0].group_key
