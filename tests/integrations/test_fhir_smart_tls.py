"""Authorization and TLS against real servers: SMART Backend Services tokens from Ory Hydra (private_key_jwt, RS384)
accepted by the FHIR server, which enforces them on its HTTPS port (introspection at Hydra); static bearer tokens;
certificate verification on by default, against a CA generated in the test. The sink process itself delivers with
SMART over TLS."""
from __future__ import annotations

import uuid

import httpx
import pytest

from integrations.fhir.auth import SmartBackendAuth, StaticBearer
from integrations.fhir.client import FhirClient, PermanentError, TransientError
from integrations.fhir.delivery import ReportWriter, version_of
from stream.config import ToolSettings
from tests.support.fhir import STATIC_TOKEN, produce, running_sink, sink_settings, wait_versions
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


def test_tokens_are_enforced_on_the_tls_port(hapi):
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert)) as anonymous:
        assert anonymous.capabilities().fhir_version == "4.3.0"  # metadata stays public (SMART discovery)
        with pytest.raises(TransientError) as refused:
            anonymous.search("DiagnosticReport", {"_count": "1"})
        assert refused.value.status == 401  # refused credentials pause the sink; they are no report's fault
    with FhirClient(hapi.tls_url, verify=str(hapi.ca_cert), auth=StaticBearer("wrong")) as wrong:
        with pytest.raises(TransientError):
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
    with pytest.raises(TransientError, match="token endpoint"):
        greedy.header()
    # A key the server does not know cannot get a token.
    stranger, _ = rsa_key(kid)
    impostor = SmartBackendAuth(client_id=client_id, private_key_pem=stranger, key_id=kid,
                                fhir_base_url=hapi.tls_url, token_url=hydra.token_url,
                                scope="system/DiagnosticReport.read", verify=str(hapi.ca_cert))
    with pytest.raises(TransientError, match="token endpoint: HTTP 401"):
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
