"""The FHIR sink's parts that need no server: parsing a report version, what is sent (our version, no server meta),
Retry-After, the circuit breaker, the SMART client assertion."""
from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.fhir.auth import SmartBackendAuth
from integrations.fhir.client import FhirClient, parse_retry_after
from integrations.fhir.delivery import VERSION_EXTENSION, InvalidReport, _stamp, parse_report, version_of
from stream.fhir_sink_main import Breaker
from tests.support.reports import report_bundle


def test_parse_report_splits_a_report_version():
    rv = parse_report(report_bundle("r-1", 2))
    assert rv.version == 2 and rv.status == "preliminary" and rv.identifier["value"] == "r-1"
    assert len(rv.observations) == 13 and len(rv.provenances) == 1 and rv.devices
    assert rv.token == "urn:twiwatch:report|r-1"


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b.update(resourceType="Patient"), "not a FHIR Bundle"),
    (lambda b: b["entry"].pop(0), "exactly one DiagnosticReport"),
    (lambda b: b["entry"][0]["resource"]["meta"].pop("versionId"), "versionId"),
    (lambda b: b["entry"][0]["resource"].update(status="final"), "not one twiwatch emits"),
    (lambda b: b["entry"][0]["resource"].pop("identifier"), "no identifier"),
    (lambda b: b["entry"].append({"fullUrl": "urn:uuid:x", "resource": {"resourceType": "Patient"}}), "unexpected"),
])
def test_parse_report_refuses_what_is_not_a_report(mutate, why):
    bundle = report_bundle("r-2", 1)
    mutate(bundle)
    with pytest.raises(InvalidReport, match=why):
        parse_report(bundle)


def test_what_is_sent_carries_our_version_and_no_server_meta():
    dr = parse_report(report_bundle("r-3", 2)).report[1]
    sent = _stamp(dr, 2)
    assert "versionId" not in sent["meta"] and version_of(sent) == 2
    assert {c["code"] for c in sent["meta"]["security"]} == {"AIAST", "HRESCH"}  # research-only labels kept
    again = _stamp(sent, 3)
    assert [e["url"] for e in again["extension"]].count(VERSION_EXTENSION) == 1 and version_of(again) == 3
    assert version_of(dr) == 0 and "versionId" in dr["meta"]  # the input is not modified


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= parse_retry_after(date, now=now) <= 31


def test_breaker_opens_backs_off_honours_retry_after_and_closes():
    t = [100.0]
    b = Breaker(initial_s=0.5, max_s=4.0, retry_after_max_s=60.0, clock=lambda: t[0])
    assert b.state == "closed" and b.wait_s() == 0
    assert b.failure() == 0.5 and b.state == "open"
    t[0] += 0.6
    assert b.state == "half-open" and b.wait_s() == 0
    assert b.failure() == 1.0
    assert b.failure() == 2.0 and b.failure() == 4.0 and b.failure() == 4.0  # capped
    assert b.failure(retry_after_s=30) == 30.0  # the server's Retry-After wins when longer
    assert b.failure(retry_after_s=3600) == 60.0  # but never beyond the configured maximum
    b.success()
    assert b.state == "closed" and b.failures == 0


def test_smart_assertion_claims():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    auth = SmartBackendAuth(client_id="twiwatch-sink", private_key_pem=pem, key_id="k1",
                            fhir_base_url="https://ehr.invalid/fhir", token_url="https://auth.invalid/token")
    token = auth.assertion()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, key.public_key(), algorithms=["RS384"], audience="https://auth.invalid/token")
    assert header["alg"] == "RS384" and header["kid"] == "k1"
    assert claims["iss"] == claims["sub"] == "twiwatch-sink"
    assert 0 < claims["exp"] - claims["iat"] <= 300  # SMART: at most five minutes
    assert claims["jti"] != jwt.decode(auth.assertion(), key.public_key(), algorithms=["RS384"],
                                       audience="https://auth.invalid/token")["jti"]
    with pytest.raises(ValueError):
        SmartBackendAuth(client_id="x", private_key_pem=pem, key_id="k", fhir_base_url="x", algorithm="RS256")
    with pytest.raises(ValueError):
        SmartBackendAuth(client_id="x", private_key_pem=pem, key_id="k", fhir_base_url="x",
                         assertion_lifetime_s=3600)


def test_client_classifies_statuses():
    import httpx

    from integrations.fhir.client import PermanentError, TransientError, VersionConflict

    def answer(status, headers=None, body=None):
        return httpx.Response(status, headers=headers or {}, content=json.dumps(body or {}).encode(),
                              request=httpx.Request("GET", "http://x/fhir/y"))

    check = FhirClient._check
    with pytest.raises(TransientError) as e:
        check("GET", "y", answer(429, {"Retry-After": "5"}))
    assert e.value.retry_after_s == 5
    for status in (500, 502, 503, 504, 408, 401):
        with pytest.raises(TransientError):
            check("GET", "y", answer(status))
    for status in (409, 412):
        with pytest.raises(VersionConflict):
            check("PUT", "y", answer(status))
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
    for status in (400, 403, 404, 422):
        with pytest.raises(PermanentError) as e:
            check("POST", "", answer(status, body=outcome))
        assert e.value.outcome == outcome and e.value.issue_codes() == ["invalid"]
