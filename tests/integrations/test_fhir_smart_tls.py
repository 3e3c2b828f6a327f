"""Authorization and TLS against real servers: SMART Backend Services tokens from Ory Hydra (private_key_jwt, RS384)
accepted by the FHIR server, which enforces them on its HTTPS port (introspection at Hydra); static bearer tokens;
certificate verification on by default, against a CA generated in the test. The sink process itself delivers with
SMART over TLS."""
from __future__ import annotations

import uuid

import httpx
import pytest

from integrations.fhir.auth import SmartBackendAuth, StaticBearer
from integrations.fhir.client import PROBE_PATH, CredentialsRefused, FhirClient, PermanentError, TransientError
from integrations.fhir.delivery import ReportWriter, version_of
from stream.config import ToolSettings
from tests.support.fhir import STATIC_TOKEN, produce, reports_on_server, running_sink, sink_settings, wait_versions
from tests.support.hydra import rsa_key, running_hydra
from tests.support.reports import report_bundle, report_bytes

pytestmark = pytest.mark.fhir
WRITE = "system/DiagnosticReport.write system/Observation.write system/Provenance.write system/Device.write " \
        "system/Device.read system/Patient.read system/DiagnosticReport.read system/Observation.read"


@pytest.fixture(scope="module")
def hydra(hapi, pki):
    """Hydra on the ports the session's FHIR server introspects at; its token endpoint serves HTTPS (session CA)."""
    s = ToolSettings()
    with running_hydra(s.cache_dir, hapi.hydra_public_port, hapi.hydra_admin_port,
                       s.cache_dir / "test" / "hydra.log", tls=(pki.server_cert, pki.server_key)) as h:
        yield h


@pytest.fixture
def smart_client(hydra, tmp_path):
    """A client registered at Hydra with its public key; returns (client id, key file, kid)."""
    client_id, kid = f"twiwatch-sink-{uuid.uuid4().hex[:6]}", f"k-{uuid.uuid4().hex[:6]}"
    pem, jwk = rsa_key(kid)
    hydra.register(client_id, jwk, WRITE)
    key_file = tmp_path / "sink-key.pem"
    key_file.write_bytes(pem)
    return client_id, key_file, kid


def _auth(hapi, hydra, smart_client, **kw) -> SmartBackendAuth:
    client_id, key_file, kid = smart_client
    return SmartBackendAuth.from_key_file(key_file, client_id=client_id, key_id=kid, fhir_base_url=hapi.tls_url,
                                          token_url=kw.pop("token_url", hydra.token_url), scope=kw.pop("scope", WRITE),
                                          verify=str(hapi.ca_cert), **kw)


def test_tokens_are_enforced_on_the_tls_port(hapi, hydra):  # hydra: the server introspects tokens it does not know
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert)) as anonymous:
        assert anonymous.capabilities().fhir_version == "4.3.0"  # metadata stays public (SMART discovery)
        with pytest.raises(CredentialsRefused) as refused:
            anonymous.search("DiagnosticReport", {"_count": "1"})
        assert refused.value.status == 401  # refused credentials pause the sink; they are no report's fault
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert), auth=StaticBearer("wrong")) as wrong:
        with pytest.raises(CredentialsRefused, match="also with a fresh token"):  # the probe was refused too
            wrong.search("DiagnosticReport", {"_count": "1"})
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert), auth=StaticBearer(STATIC_TOKEN)) as ok:
        assert ok.search("DiagnosticReport", {"_count": "1"})["resourceType"] == "Bundle"


def test_tls_verification_is_on_and_uses_the_given_ca(hapi):
    with FhirClient(hapi.tls_url) as system_store, pytest.raises(TransientError, match="ConnectError"):
        system_store.capabilities()  # the test CA is in no system trust store
    with FhirClient(hapi.tls_url, verify=str(hapi.other_ca_cert)) as other, \
            pytest.raises(TransientError, match="ConnectError"):
        other.capabilities()
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert)) as trusted:
        assert trusted.capabilities().fhir_version == "4.3.0"


def test_smart_backend_services_token_from_hydra_writes_a_report(hapi, hydra, smart_client):
    auth = _auth(hapi, hydra, smart_client)
    rid = f"smart{uuid.uuid4().hex[:8]}"
    with FhirClient(hapi.tls_url, auth=auth, verify=str(hapi.ca_cert)) as c:
        delivered = ReportWriter(c).deliver(report_bundle(rid, 1))
        assert delivered.outcome == "written"
        assert auth.tokens_fetched == 1
        token = auth.header()["Authorization"].split()[1]
        info = hydra.introspect(token)
        assert info["active"] and info["client_id"] == smart_client[0]
        assert "system/DiagnosticReport.write" in info["scope"].split()
        # A token the server no longer accepts: the client drops it, fetches a new one once, and carries on.
        auth._token = "revoked-or-expired"
        assert ReportWriter(c).deliver(report_bundle(rid, 2)).outcome == "written"
        assert auth.tokens_fetched == 2
        got = c.search("DiagnosticReport", {"identifier": f"urn:twiwatch:report|{rid}"})["entry"][0]["resource"]
        assert version_of(got) == 2


def test_smart_token_endpoint_discovered_from_the_fhir_server(hapi, hydra, smart_client):
    auth = _auth(hapi, hydra, smart_client, token_url="")
    assert auth.token_url.endswith("/oauth2/token")  # from [base]/.well-known/smart-configuration
    # The server advertises its configured endpoint; here Hydra's public port serves HTTPS, the advertisement http.
    assert auth.token_url.rsplit(":", 1)[1] == hydra.token_url.rsplit(":", 1)[1]


def test_a_token_without_write_scope_is_refused(hapi, hydra, tmp_path):
    client_id, kid = f"reader-{uuid.uuid4().hex[:6]}", "reader-key"
    pem, jwk = rsa_key(kid)
    hydra.register(client_id, jwk, "system/DiagnosticReport.read")
    key = tmp_path / "reader.pem"
    key.write_bytes(pem)
    auth = SmartBackendAuth.from_key_file(key, client_id=client_id, key_id=kid, fhir_base_url=hapi.tls_url,
                                          token_url=hydra.token_url, scope="system/DiagnosticReport.read",
                                          verify=str(hapi.ca_cert))
    with FhirClient(hapi.tls_url, auth=auth, verify=str(hapi.ca_cert)) as c:
        assert c.search("DiagnosticReport", {"_count": "1"})["resourceType"] == "Bundle"
        with pytest.raises(PermanentError) as refused:
            c.request("POST", "", body={"resourceType": "Bundle", "type": "transaction", "entry": []})
        assert refused.value.status == 403
    # Asking for a scope the client was not granted fails at the token endpoint (a configuration fault: pause).
    greedy = SmartBackendAuth.from_key_file(key, client_id=client_id, key_id=kid, fhir_base_url=hapi.tls_url,
                                            token_url=hydra.token_url, scope=WRITE, verify=str(hapi.ca_cert))
    with pytest.raises(CredentialsRefused, match="token endpoint"):
        greedy.header()
    # A key the server does not know cannot get a token.
    stranger, _ = rsa_key(kid)
    impostor = SmartBackendAuth(client_id=client_id, private_key_pem=stranger, key_id=kid,
                                fhir_base_url=hapi.tls_url, token_url=hydra.token_url,
                                scope="system/DiagnosticReport.read", verify=str(hapi.ca_cert))
    with pytest.raises(CredentialsRefused, match="token endpoint: HTTP 401"):
        impostor.header()
    with pytest.raises(httpx.ConnectError):
        httpx.get(hydra.token_url, verify=str(hapi.other_ca_cert))  # the token endpoint's TLS is verified too


@pytest.mark.kafka
def test_the_sink_delivers_with_smart_over_tls(isolated, hapi, hydra, smart_client):
    client_id, key_file, kid = smart_client
    s = sink_settings(isolated, hapi.tls_url, fhir_sink_auth="smart", fhir_sink_smart_client_id=client_id,
                      fhir_sink_smart_key_file=str(key_file), fhir_sink_smart_key_id=kid,
                      fhir_sink_smart_token_url=hydra.token_url, fhir_sink_ca_file=str(hapi.ca_cert))
    ids = [f"tls{uuid.uuid4().hex[:6]}r{i}" for i in range(5)]
    produce(s, [(rid, report_bytes(rid, 1)) for rid in ids] + [(ids[0], report_bytes(ids[0], 2))])
    with running_sink(s):
        got = wait_versions(hapi.client(), {rid: (2 if rid == ids[0] else 1) for rid in ids}, 90)
    assert all(len(c) == 1 for c in got.values())


@pytest.mark.kafka
def test_the_sink_delivers_with_a_static_bearer_token(isolated, hapi):
    s = sink_settings(isolated, hapi.tls_url, fhir_sink_auth="bearer", fhir_sink_bearer_token=STATIC_TOKEN,
                      fhir_sink_ca_file=str(hapi.ca_cert))
    rid = f"bearer{uuid.uuid4().hex[:6]}"
    produce(s, [(rid, report_bytes(rid, 1))])
    with running_sink(s):
        got = wait_versions(hapi.client(), {rid: 1}, 60)
    assert len(got[rid]) == 1


def test_a_401_for_one_request_whose_credentials_are_accepted_elsewhere_is_a_refusal(hapi):
    """The server answers 401 twice (the second time to a fresh token) but the probe, with the same token, is
    answered: the refusal is this request's, a permanent one, with the server's OperationOutcome."""
    from urllib.parse import urlsplit

    from stream.devtools.fault_proxy import FaultProxy

    parts = urlsplit(hapi.plain_url)
    with FaultProxy(f"http://{parts.hostname}:{parts.port}") as proxy, \
            FhirClient(proxy.url + parts.path, auth=StaticBearer(STATIC_TOKEN)) as c:
        proxy.fail_next(2, status=401)
        with pytest.raises(PermanentError) as refused:
            c.search("DiagnosticReport", {"_count": "1"})
        assert refused.value.status == 401 and not isinstance(refused.value, TransientError)
        assert refused.value.outcome["resourceType"] == "OperationOutcome"
        seen = [(r.path.split("?")[0].rsplit("/", 2)[-2:], r.answered) for r in proxy.seen]
        assert [a for _, a in seen] == ["fault 401", "fault 401", "passed 404"]
        assert seen[2][0] == PROBE_PATH.split("/")  # the probe: a read of a resource no server holds
        assert c.search("DiagnosticReport", {"_count": "1"})["resourceType"] == "Bundle"  # the next one goes


@pytest.mark.kafka
def test_the_sink_pauses_while_the_token_endpoint_refuses_it_and_resumes_once_registered(isolated, hapi, hydra,
                                                                                          tmp_path):
    """A client the token server does not know (not yet registered, or revoked): nothing is dead-lettered, nothing is
    committed; /healthz and the gauge say so; once registered, the same running sink delivers what waited."""
    from tests.support.fhir import deadletters, sink_health, sink_metrics, wait_until

    client_id, kid = f"late-{uuid.uuid4().hex[:6]}", "late-key"
    pem, jwk = rsa_key(kid)
    key = tmp_path / "late.pem"
    key.write_bytes(pem)
    s = sink_settings(isolated, hapi.tls_url, fhir_sink_auth="smart", fhir_sink_smart_client_id=client_id,
                      fhir_sink_smart_key_file=str(key), fhir_sink_smart_key_id=kid,
                      fhir_sink_smart_token_url=hydra.token_url, fhir_sink_ca_file=str(hapi.ca_cert),
                      fhir_sink_retry_initial_s=0.2, fhir_sink_retry_max_s=1.0)
    ids = [f"late{uuid.uuid4().hex[:6]}r{i}" for i in range(3)]
    produce(s, [(rid, report_bytes(rid, 1)) for rid in ids])
    with running_sink(s):
        assert wait_until(lambda: sink_health(s)["credentials"].startswith("refused"), 30)
        health, metrics = sink_health(s), sink_metrics(s)
        assert "token endpoint: HTTP 401" in health["credentials"] and health["breaker"] != "closed"
        assert "twiwatch_fhir_credentials_refused 1.0" in metrics
        assert 'twiwatch_fhir_transient_failures_total{status="credentials"}' in metrics
        assert not any(reports_on_server(hapi.client(), ids).values()) and not deadletters(s)
        hydra.register(client_id, jwk, WRITE)
        got = wait_versions(hapi.client(), {rid: 1 for rid in ids}, 60)
        assert wait_until(lambda: sink_health(s)["credentials"] == "accepted", 10)
        assert "twiwatch_fhir_credentials_refused 0.0" in sink_metrics(s)
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids} and not deadletters(s)


@pytest.mark.kafka
def test_the_sink_pauses_on_a_refused_static_token_and_loses_nothing(isolated, hapi, hydra):
    """A static token the server refuses (expired, rotated): paused, not dead-lettered; a sink restarted with the
    right token delivers what waited (the offsets were not committed)."""
    from tests.support.fhir import deadletters, sink_health, wait_until

    s = sink_settings(isolated, hapi.tls_url, fhir_sink_auth="bearer", fhir_sink_bearer_token="rotated-away",
                      fhir_sink_ca_file=str(hapi.ca_cert), fhir_sink_retry_initial_s=0.2,
                      fhir_sink_retry_max_s=1.0)
    rid = f"rot{uuid.uuid4().hex[:6]}"
    produce(s, [(rid, report_bytes(rid, 1))])
    with running_sink(s, name="wrong-token"):
        assert wait_until(lambda: "also with a fresh token" in sink_health(s)["credentials"], 30)
        assert not reports_on_server(hapi.client(), [rid])[rid] and not deadletters(s)
    with running_sink(s.model_copy(update={"fhir_sink_bearer_token": STATIC_TOKEN}), name="right-token"):
        got = wait_versions(hapi.client(), {rid: 1}, 60)
    assert len(got[rid]) == 1 and not deadletters(s)
