"""The FHIR sink on the real broker against the real HAPI FHIR server: report versions land once and in order,
through redelivery, a SIGKILLed sink and a restarted server; permanent refusals become delivery dead letters with the
server's OperationOutcome; subjects resolve against the server's Patients; an unwritable FHIR version is refused."""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest
from conftest import SAMPLES

from integrations.fhir.delivery import VERSION_EXTENSION, version_of
from stream.devtools import fhir_local
from stream.devtools.e2e import run_e2e, start_sink, wait_healthy
from stream.devtools.fhir_outputs import delivery_summary
from stream.devtools.outputs import collect
from tests.support.fhir import (
    deadletters,
    history,
    produce,
    reports_on_server,
    restart_sink,
    running_sink,
    sink_health,
    sink_metrics,
    sink_settings,
    wait_until,
    wait_versions,
)
from tests.support.reports import LEADS, MRN_SYSTEM, report_bundle, report_bytes

pytestmark = [pytest.mark.kafka, pytest.mark.fhir]


def _ids(n: int, tag: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{tag}{run}r{i:03d}" for i in range(n)]


@pytest.mark.parametrize("per_transaction", [1, 4])
def test_versions_land_once_in_order_and_redelivery_writes_nothing(isolated, hapi, per_transaction):
    # 4: twelve reports and eight writers, so several reports share transactions (ReportWriter.deliver_many)
    s = sink_settings(isolated, hapi.plain_url, fhir_sink_reports_per_transaction=per_transaction)
    ids = _ids(12, "ord")
    fewer = tuple(lead for lead in LEADS if lead != "V6")  # version 2 of ids[0] drops lead V6
    items = [(rid, report_bytes(rid, 1, mrn=f"ORD-{i}")) for i, rid in enumerate(ids)]
    items += [(ids[0], report_bytes(ids[0], 2, mrn="ORD-0", leads=fewer))]
    items += [(rid, report_bytes(rid, 2, mrn=f"ORD-{i}")) for i, rid in enumerate(ids) if i > 0]
    # Redelivery and a late older version: v1 of every report again after its v2.
    items += [(rid, report_bytes(rid, 1, mrn=f"ORD-{i}")) for i, rid in enumerate(ids)]
    produce(s, items)
    client = hapi.client()
    with running_sink(s):
        got = wait_versions(client, {rid: 2 for rid in ids}, 120)
        assert wait_until(lambda: sink_health(s)["counts"].get("superseded", 0) >= len(ids), 60), sink_health(s)
        metrics = sink_metrics(s)
    assert all(len(copies) == 1 for copies in got.values()), "one DiagnosticReport per identifier"
    for dr, in got.values():
        assert version_of(dr) == 2 and dr["status"] == "preliminary"
        assert "meta" in dr and {"system": "urn:twiwatch:tag", "code": "research-only"} in [
            {"system": t.get("system"), "code": t.get("code")} for t in dr["meta"].get("tag", [])]
        versions = [(version_of(h), h["status"]) for h in history(client, "DiagnosticReport", dr["id"])]
        assert versions == [(1, "partial"), (2, "preliminary")], "the server holds v1 then v2, nothing after"
    # Observations: one resource per identifier; the lead v2 dropped is entered-in-error, the rest are v2's.
    obs = client.search_all("Observation", {"identifier": ",".join(
        f"urn:twiwatch:report|{ids[0]}/{suffix}" for suffix in ("t/V6", "t/II", "impression")), "_count": "50"})
    assert len(obs) == len({o["identifier"][0]["value"] for o in obs}) == 3
    by_value = {o["identifier"][0]["value"].split("/", 1)[1]: o for o in obs}
    assert by_value["t/V6"]["status"] == "entered-in-error"  # v2 of ids[0] dropped lead V6
    assert by_value["t/II"]["status"] == by_value["impression"]["status"] == "preliminary"
    assert all(o["status"] != "final" for o in obs)
    # Provenance: one per version of each report.
    provs = client.search_all("Provenance", {"target": f"DiagnosticReport/{got[ids[1]][0]['id']}"})
    assert sorted(version_of(p) for p in provs) == [1, 2]
    assert 'twiwatch_fhir_deliveries_total{outcome="superseded"}' in metrics
    assert "twiwatch_fhir_breaker_state 0.0" in metrics


def test_entered_in_error_for_dropped_observations(isolated, hapi):
    s = sink_settings(isolated, hapi.plain_url)
    rid = _ids(1, "eie")[0]
    fewer = tuple(lead for lead in LEADS if lead not in ("V5", "V6"))
    produce(s, [(rid, report_bytes(rid, 1)), (rid, report_bytes(rid, 2, leads=fewer))])
    client = hapi.client()
    with running_sink(s):
        got = wait_versions(client, {rid: 2}, 60)
    (dr,) = got[rid]
    current = {r["reference"] for r in dr["result"]}
    included = client.search("DiagnosticReport", {"_id": dr["id"], "_include": "DiagnosticReport:result"})
    results = [e["resource"] for e in included["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(results) == len(current) == len(fewer) + 1  # the leads and the impression
    v1 = report_bundle(rid, 1)
    all_obs = [e["resource"]["identifier"][0] for e in v1["entry"] if e["resource"]["resourceType"] == "Observation"]
    on_server = client.search_all("Observation", {"identifier": ",".join(f"{i['system']}|{i['value']}"
                                                                           for i in all_obs)})
    status = Counter(o["status"] for o in on_server)
    assert status["entered-in-error"] == 2, status
    assert all(version_of(o) == 2 for o in on_server)


def test_sigkilled_sink_loses_nothing_and_duplicates_nothing(isolated, hapi):
    s = sink_settings(isolated, hapi.plain_url)
    ids = _ids(40, "kill")
    client = hapi.client()
    produce(s, [(rid, report_bytes(rid, 1, mrn=f"K{i}")) for i, rid in enumerate(ids)])
    with running_sink(s) as procs:
        assert wait_until(lambda: sink_health(s)["counts"].get("written", 0) >= 5, 60)
        restart_sink(s, procs, kill=True)  # SIGKILL mid-stream: whatever was in flight is redelivered
        produce(s, [(rid, report_bytes(rid, 2, mrn=f"K{i}")) for i, rid in enumerate(ids)])
        got = wait_versions(client, {rid: 2 for rid in ids}, 180)
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids}
    assert all(version_of(c[0]) == 2 for c in got.values())
    for rid in ids[:5]:
        versions = [version_of(h) for h in history(client, "DiagnosticReport", got[rid][0]["id"])]
        assert versions == sorted(versions) and versions[-1] == 2


def test_server_restart_mid_stream(isolated, hapi):
    """The real server goes down hard (SIGKILL) and comes back on its file database: the sink pauses, commits nothing
    it did not write, and delivers everything once when the server is back."""
    s = sink_settings(isolated, hapi.plain_url, fhir_sink_retry_max_s=2.0)
    ids = _ids(30, "rst")
    client = hapi.client()
    with running_sink(s):
        produce(s, [(rid, report_bytes(rid, 1, mrn=f"R{i}")) for i, rid in enumerate(ids[:10])])
        wait_versions(client, {rid: 1 for rid in ids[:10]}, 120)
        fhir_local.kill(hapi.local)
        produce(s, [(rid, report_bytes(rid, 1, mrn=f"R{i}")) for i, rid in enumerate(ids[10:], 10)])
        assert wait_until(lambda: sink_health(s)["breaker"] in ("open", "half-open"), 30)
        down_since = time.monotonic()
        fhir_local.up(hapi.local, timeout_s=300)
        back_after = time.monotonic() - down_since
        got = wait_versions(client, {rid: 1 for rid in ids}, 60)
        health = sink_health(s)
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids}, "nothing lost, nothing twice"
    assert health["breaker"] == "closed"
    assert back_after > 5


def test_permanent_refusals_go_to_the_delivery_dead_letters(isolated, hapi):
    s = sink_settings(isolated, hapi.plain_url)
    ok, refused = _ids(2, "dlq")
    dangling = report_bundle(refused, 1, mrn=f"no-such-patient-{uuid.uuid4().hex[:6]}", mrn_system=None)
    produce(s, [("junk", b"this is not a report"), (refused, json.dumps(dangling).encode()),
                (ok, report_bytes(ok, 1))])
    with running_sink(s) as procs:
        got = wait_versions(hapi.client(), {ok: 1}, 60)
        assert wait_until(lambda: len(deadletters(s)) >= 2, 30)
        restart_sink(s, procs, kill=False)  # the offsets were committed: nothing is dead-lettered twice
        time.sleep(3)
    assert len(got[ok]) == 1 and not reports_on_server(hapi.client(), [refused])[refused]
    letters = deadletters(s)
    assert len(letters) == 2
    by_code = {d["meta"]["error.code"]: d for d in letters}
    assert set(by_code) == {"invalid-report", "http-400"}
    refusal = by_code["http-400"]
    outcome = json.loads(refusal["meta"]["operation-outcome"])
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert refusal["meta"]["http.status"] == "400" and refusal["meta"]["error.class"] == "fhir-delivery"
    assert json.loads(refusal["value"])["resourceType"] == "Bundle"  # the original bytes, to re-drive
    assert refusal["meta"]["source.topic"] == s.topic_reports
    assert by_code["invalid-report"]["value"] == b"this is not a report"


def test_subjects_resolve_against_the_servers_patients(isolated, hapi):
    client = hapi.client()
    tag = uuid.uuid4().hex[:6]
    one, two, none = f"ONE-{tag}", f"TWO-{tag}", f"NONE-{tag}"
    for mrn in (one, two, two):
        client.request("POST", "Patient", body={"resourceType": "Patient",
                                                "identifier": [{"system": MRN_SYSTEM, "value": mrn}]})
    a, b, c, d = _ids(4, "subj")
    s = sink_settings(isolated, hapi.plain_url)
    produce(s, [(a, report_bytes(a, 1, mrn=one)), (b, report_bytes(b, 1, mrn=two)), (c, report_bytes(c, 1, mrn=none))])
    with running_sink(s):
        got = wait_versions(client, {a: 1, c: 1}, 60)
        assert wait_until(lambda: len(deadletters(s)) >= 1, 30)
    (dr_a,), (dr_c,) = got[a], got[c]
    patient = client.search("Patient", {"identifier": f"{MRN_SYSTEM}|{one}"})["entry"][0]["resource"]
    assert dr_a["subject"]["reference"] == f"Patient/{patient['id']}"  # one match: a literal reference
    assert dr_a["subject"]["identifier"]["value"] == one
    assert "reference" not in dr_c["subject"] and dr_c["subject"]["identifier"]["value"] == none  # none: logical
    (letter,) = deadletters(s)  # several: refused, and the reason names no identifier
    assert letter["meta"]["error.code"] == "AmbiguousSubject" and two not in letter["meta"]["reason"]
    assert not reports_on_server(client, [b])[b]
    # Configured to create Patients: the unknown MRN becomes a Patient once, for every report naming it.
    s2 = sink_settings(isolated.model_copy(update={"fhir_sink_group_id": isolated.fhir_sink_group_id + "-2",
                                                   "topic_reports": isolated.topic_reports + "-2"}),
                       hapi.plain_url, fhir_sink_create_patients=True)
    fresh = f"NEW-{tag}"
    produce(s2, [(d, report_bytes(d, 1, mrn=fresh)), (d, report_bytes(d, 2, mrn=fresh))])
    with running_sink(s2):
        got = wait_versions(client, {d: 2}, 60)
    created = client.search_all("Patient", {"identifier": f"{MRN_SYSTEM}|{fresh}"})
    assert len(created) == 1 and got[d][0]["subject"]["reference"] == f"Patient/{created[0]['id']}"


def test_refuses_a_server_it_cannot_write_to(isolated, hapi):
    """Configured for R5 resources, the sink reads the server's CapabilityStatement (FHIR 4.3.0) and stops (78)."""
    s = sink_settings(isolated, hapi.plain_url, fhir_version="R5")
    proc = start_sink(s, s.cache_dir / "test" / f"{s.fhir_sink_group_id}-r5.log")
    assert proc.wait(60) == 78
    log = (s.cache_dir / "test" / f"{s.fhir_sink_group_id}-r5.log").read_text()
    assert "4.3.0" in log and "R5" in log


def test_e2e_through_the_sink_to_the_server(kafka_bootstrap, hapi):
    """`twiwatch e2e --fhir-server` on the session's server: every report of 40 real ECGs reaches it once, latest
    version, research-only."""
    from stream.config import ToolSettings

    result = run_e2e(ToolSettings(), 40, SAMPLES, timeout_s=240, fhir_server=True, fhir_url=hapi.plain_url)
    s = result.summary
    assert s["reports"] == 40
    assert s["delivered"] == s["reports"] == s["delivered_latest"]
    assert s["delivered_duplicates"] == 0
    assert s["delivery_latency_ms"]["p50"] is not None
    # What EHR readers get carries the research-only labels and our version.
    summary, _ = delivery_summary(hapi.client(), collect(result.settings).reports)
    assert summary["delivered"] == 40
    first = result.collected.reports[0]["id"]
    found = hapi.client().search("DiagnosticReport", {"identifier": f"urn:twiwatch:report|{first}"})
    res = found["entry"][0]["resource"]
    assert {c["code"] for c in res["meta"]["security"]} >= {"AIAST", "HRESCH"}
    assert res["conclusion"].startswith("RESEARCH USE ONLY")
    assert any(e["url"] == VERSION_EXTENSION for e in res["extension"])
    # Serial ECGs of one patient (PTB-XL 641, 340, ...): the later reports' Provenance names the prior ECG's report by
    # its identifier (docs/SPEC.md §3.3), and the server took it.
    provenances = hapi.client().search_all("Provenance", {"_count": 200})
    named = [e["what"]["identifier"]["value"] for p in provenances for e in p.get("entity", [])
             if e["what"].get("type") == "DiagnosticReport"]
    ids = {r["id"] for r in result.collected.reports}
    assert named and set(named) <= ids


def test_health_waits_for_the_server(isolated, hapi):
    """Pointed at a port where nothing answers, the sink stays unready (503) and retries; it never dies."""
    from stream.devtools.e2e import free_port, stop_worker

    s = sink_settings(isolated, f"http://127.0.0.1:{free_port()}/fhir")
    proc = start_sink(s, s.cache_dir / "test" / f"{s.fhir_sink_group_id}-down.log")
    try:
        with pytest.raises(TimeoutError):
            wait_healthy(s, proc, 8, port=s.fhir_sink_web_port, app=s.fhir_sink_group_id, what="FHIR sink")
        assert proc.poll() is None
    finally:
        stop_worker(proc)
