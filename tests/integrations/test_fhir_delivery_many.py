"""Several reports' versions in one transaction (ReportWriter.deliver_many) against the real HAPI server: one read for
the later versions and one transaction for all; versions already there are not written again; a stale or refused
member makes each report go on its own, so a refusal touches that report alone and nothing is written twice."""
from __future__ import annotations

import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest

from integrations.fhir.client import FhirClient, PermanentError
from integrations.fhir.delivery import Delivered, ReportWriter, version_of
from stream.devtools.fault_proxy import FaultProxy
from tests.support.fhir import reports_on_server
from tests.support.reports import LEADS, report_bundle

pytestmark = pytest.mark.fhir


@pytest.fixture
def counted(hapi):
    """A writer whose requests pass a (fault-free) proxy that logs them, so the test can count round trips."""
    parts = urlsplit(hapi.plain_url)
    with FaultProxy(f"http://{parts.hostname}:{parts.port}") as proxy, \
            FhirClient(proxy.url + parts.path, timeout_s=60) as client:
        yield ReportWriter(client), proxy


def _ids(n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"many{run}r{i}" for i in range(n)]


def _requests(proxy: FaultProxy) -> Counter:
    def kind(method: str, path: str) -> str:
        path = path.split("?")[0].rstrip("/")
        return "transaction" if method == "POST" and path.endswith("/fhir") else f"{method} {path.rsplit('/', 1)[1]}"

    return Counter(kind(r.method, r.path) for r in proxy.seen)


def test_first_and_later_versions_of_several_reports_in_one_transaction(hapi, counted):
    writer, proxy = counted
    a, b, c, d = _ids(4)
    writer.deliver_many([report_bundle(a, 1), report_bundle(b, 1)])  # Device and Patient look-ups cached here
    proxy.seen.clear()
    fewer = tuple(lead for lead in LEADS if lead != "V6")
    got = writer.deliver_many([report_bundle(a, 2, leads=fewer), report_bundle(b, 1), report_bundle(c, 1),
                               report_bundle(d, 1)])
    assert [(g.outcome, g.version) for g in got] == [("written", 2), ("already-current", 1), ("written", 1),
                                                     ("written", 1)]
    # one read for the later version (a), one transaction for all; b's redelivered version 1 went without a read (as
    # every first version does), its conditional create matched the copy there, so b alone was read again
    requests = _requests(proxy)  # (and the look-up of the reasoner's Device, new with version 2)
    assert (requests["GET DiagnosticReport"], requests["transaction"]) == (2, 1)
    server = reports_on_server(hapi.client(), [a, b, c, d])
    assert {rid: [version_of(r) for r in copies] for rid, copies in server.items()} == {a: [2], b: [1], c: [1],
                                                                                         d: [1]}
    assert all(isinstance(g, Delivered) and g.server_id.startswith("DiagnosticReport/") for g in got)
    assert got[0].entered_in_error == 1  # a's version 2 dropped V6: marked entered-in-error in the same transaction
    assert len(server[a][0]["result"]) == len(fewer) + 1


def test_a_refused_member_is_refused_alone_and_the_others_are_written_once(hapi, counted):
    writer, proxy = counted
    ok1, refused, ok2 = _ids(3)
    # A FHIR logical id the server does not hold: HAPI refuses the reference (HTTP 400), for this report only.
    dangling = report_bundle(refused, 1, mrn=f"no-such-patient-{uuid.uuid4().hex[:6]}", mrn_system=None)
    writer.deliver_many([report_bundle(ok1, 1)])
    proxy.seen.clear()
    got = writer.deliver_many([report_bundle(ok1, 2), dangling, report_bundle(ok2, 1)])
    assert isinstance(got[1], PermanentError) and got[1].status == 400 and got[1].outcome
    assert [(g.outcome, g.version) for g in (got[0], got[2])] == [("written", 2), ("written", 1)]
    assert _requests(proxy)["transaction"] == 1 + 3  # the shared one (refused, nothing written), then one each
    server = reports_on_server(hapi.client(), [ok1, refused, ok2])
    assert {rid: [version_of(r) for r in copies] for rid, copies in server.items()} == {ok1: [2], refused: [],
                                                                                         ok2: [1]}


def test_an_older_version_never_overwrites_a_newer_one_in_a_group(hapi, counted):
    writer, _ = counted
    a, b = _ids(2)
    writer.deliver(report_bundle(a, 1))
    writer.deliver(report_bundle(a, 2))
    got = writer.deliver_many([report_bundle(a, 1), report_bundle(b, 1), report_bundle(b, 1)])
    assert got[0].outcome == "superseded"
    assert sorted(g.outcome for g in got[1:]) == ["already-current", "written"]  # the same report twice: in turn
    server = reports_on_server(hapi.client(), [a, b])
    assert [version_of(r) for r in server[a]] == [2] and len(server[b]) == 1
