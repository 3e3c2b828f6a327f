"""EHR-side consumers, tested as they use the server: two third-party FHIR clients (fhirclient, SMART's Python client
with R4 models; fhirpy) read what the sink wrote — by patient, date and status, by the subject's identifier for a
logical reference — and follow the results to the Observations and the Provenance; a rest-hook Subscription pushes
each new version to a receiver. On an R4B and an R4 server (HAPI FHIR 8.8)."""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fhirclient import client as fhirclient_client
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.observation import Observation
from fhirclient.models.provenance import Provenance
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from integrations.fhir.delivery import ReportWriter, version_of
from tests.support.reports import MRN_SYSTEM, report_bundle

pytestmark = pytest.mark.fhir
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


@pytest.fixture(params=["R4B", "R4"])
def server(request):
    return request.getfixturevalue("hapi" if request.param == "R4B" else "hapi_r4")


@pytest.fixture
def delivered(server):
    """Three reports written by the sink's writer: A (v1 then v2) for a patient the server knows (literal
    subject), B (v1) for the same patient, C (v1) for an MRN the server does not know (logical subject)."""
    tag = uuid.uuid4().hex[:8]
    c = server.client()
    known, unknown = f"KNOWN-{tag}", f"UNKNOWN-{tag}"
    resp = c.request("POST", "Patient", body={"resourceType": "Patient",
                                              "identifier": [{"system": MRN_SYSTEM, "value": known}]})
    pid = resp.json()["id"]
    writer = ReportWriter(c)
    a, b, lo = f"A{tag}", f"B{tag}", f"C{tag}"
    for bundle in (report_bundle(a, 1, mrn=known), report_bundle(a, 2, mrn=known), report_bundle(b, 1, mrn=known),
                   report_bundle(lo, 1, mrn=unknown)):
        assert writer.deliver(bundle).outcome == "written"
    return {"pid": pid, "known": known, "unknown": unknown, "a": a, "b": b, "c": lo}


def test_fhirclient_reads_reports_by_patient_date_status_and_follows_results(server, delivered):
    smart = fhirclient_client.FHIRClient(settings={"app_id": "ehr-reader", "api_base": server.plain_url})
    pid = delivered["pid"]
    found = list(DiagnosticReport.where(struct={"patient": pid, "status": "preliminary",
                                                "date": {"$gte": "2024-05-01"}})
                 .perform_resources_iter(smart.server))
    assert {r.identifier[0].value for r in found} == {delivered["a"]}  # B is still partial
    partial = list(DiagnosticReport.where(struct={"patient": pid, "status": "partial"})
                   .perform_resources_iter(smart.server))
    assert {r.identifier[0].value for r in partial} == {delivered["b"]}
    none_later = list(DiagnosticReport.where(struct={"patient": pid, "date": {"$gt": "2024-05-02"}})
                      .perform_resources_iter(smart.server))
    assert none_later == []
    report = found[0]
    assert report.status == "preliminary" and report.conclusion.startswith("RESEARCH USE ONLY")
    assert {c.code for c in report.meta.security} >= {"AIAST", "HRESCH"}
    assert report.subject.reference == f"Patient/{pid}"
    observations = [Observation.read(ref.reference.split("/")[-1], smart.server) for ref in report.result]
    assert len(observations) == 13 and all(o.status == "preliminary" for o in observations)
    assert all(o.subject.reference == f"Patient/{pid}" for o in observations)
    provenance = list(Provenance.where(struct={"target": f"DiagnosticReport/{report.id}"})
                      .perform_resources_iter(smart.server))
    assert sorted(version_of(p.as_json()) for p in provenance) == [1, 2]
    assert all(p.agent[0].who.reference.startswith("Device/") for p in provenance)


def test_fhirpy_reads_reports_follows_results_and_logical_subjects(server, delivered):
    client = SyncFHIRClient(server.plain_url)
    pid = delivered["pid"]
    reports = (client.resources("DiagnosticReport")
               .search(patient=f"Patient/{pid}", status="preliminary", date__ge="2024-05-01")
               .include("DiagnosticReport", "result").fetch_raw())
    by_type: dict[str, list] = {}
    for entry in reports.entry:
        by_type.setdefault(entry.resource.resourceType, []).append(entry.resource)
    assert [r.identifier[0].value for r in by_type["DiagnosticReport"]] == [delivered["a"]]
    assert len(by_type["Observation"]) == 13
    report = client.resources("DiagnosticReport").search(identifier=f"urn:twiwatch:report|{delivered['a']}").get()
    first = report["result"][0]
    obs = client.reference(reference=first["reference"]).to_resource()
    assert obs["resourceType"] == "Observation" and obs["status"] == "preliminary"
    provs = client.resources("Provenance").search(target=f"DiagnosticReport/{report['id']}").fetch_all()
    assert len(provs) == 2
    assert client.resources("DiagnosticReport").search(
        patient=f"Patient/{pid}", category=f"{V2_0074}|EC").count() == 2
    # A logical subject (an MRN no Patient on the server carries): `subject:identifier` is the standard search, which
    # HAPI 8.8 refuses (HAPI-2498, docs/SPEC.md §3.7); the development server's subject-identifier parameter finds it.
    token = f"{MRN_SYSTEM}|{delivered['unknown']}"
    with pytest.raises(OperationOutcome, match="HAPI-2498"):
        client.resources("DiagnosticReport").search(**{"subject:identifier": token}).fetch()
    logical = client.resources("DiagnosticReport").search(**{"subject-identifier": token}).fetch_all()
    assert [r["identifier"][0]["value"] for r in logical] == [delivered["c"]]
    assert "reference" not in logical[0]["subject"] and logical[0]["subject"]["identifier"]["value"] == \
        delivered["unknown"]
    # The literal subject keeps the identifier too, so the same search finds the known patient's reports.
    known = client.resources("DiagnosticReport").search(
        **{"subject-identifier": f"{MRN_SYSTEM}|{delivered['known']}"}).fetch_all()
    assert {r["identifier"][0]["value"] for r in known} == {delivered["a"], delivered["b"]}
    history = client.execute(f"DiagnosticReport/{report['id']}/_history", method="get")
    assert sorted(version_of(e["resource"]) for e in history["entry"]) == [1, 2]


class _Receiver:
    """A rest-hook endpoint: records what the FHIR server pushes."""

    def __init__(self):
        self.pushed: list[tuple[str, str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    data = json.loads(body) if body else {}
                except ValueError:
                    data = {}
                receiver.pushed.append((self.command, self.path, data))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_rest_hook_subscription_pushes_each_new_version(server):
    receiver = _Receiver()
    c = server.client()
    tag = uuid.uuid4().hex[:8]
    rid = f"S{tag}"
    sub = c.request("POST", "Subscription", body={
        "resourceType": "Subscription", "status": "requested", "reason": "twiwatch reports (test receiver)",
        "criteria": f"DiagnosticReport?category={V2_0074}|EC",
        "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
    }).json()
    try:
        deadline = time.monotonic() + 60
        while c.read("Subscription", sub["id"])["status"] != "active" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert c.read("Subscription", sub["id"])["status"] == "active"
        writer = ReportWriter(c)
        writer.deliver(report_bundle(rid, 1, mrn=f"SUB-{tag}"))
        writer.deliver(report_bundle(rid, 2, mrn=f"SUB-{tag}"))

        def ours():
            return [(m, p, b) for m, p, b in receiver.pushed
                    if b.get("resourceType") == "DiagnosticReport" and b["identifier"][0]["value"] == rid]

        deadline = time.monotonic() + 60
        while len(ours()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        pushed = ours()
        # HAPI delivers rest-hooks from several threads: two versions written a moment apart may arrive in either
        # order. Each push carries our version (and the server's meta.versionId), so a receiver keeps the newest.
        assert sorted((version_of(b), b["status"]) for _, _, b in pushed) == [(1, "partial"), (2, "preliminary")]
        assert sorted(int(b["meta"]["versionId"]) for _, _, b in pushed) == [1, 2]
        assert all(p.startswith("/hook/DiagnosticReport/") for _, p, _ in pushed)
        newest = max((b for _, _, b in pushed), key=version_of)
        assert newest["status"] == "preliminary" and newest["conclusion"].startswith("RESEARCH USE ONLY")
    finally:
        c.request("DELETE", f"Subscription/{sub['id']}")
        receiver.server.shutdown()
