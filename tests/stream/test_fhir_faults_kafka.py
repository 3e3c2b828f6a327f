"""Faults between the sink and the real HAPI server, injected by a fault proxy (stream/devtools/fault_proxy.py):
429 with Retry-After is honoured, 503 and dropped connections pause without losing anything, and a short outage
(12 s) in a steady stream ends with every version delivered once, soon after recovery. The 60-s outage is a
command: bench/fhir_outage.py."""
from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import pytest

from integrations.fhir.delivery import version_of
from stream.devtools.fault_proxy import FaultProxy
from tests.support.fhir import (
    deadletters,
    produce,
    running_sink,
    sink_health,
    sink_metrics,
    sink_settings,
    wait_until,
    wait_versions,
)
from tests.support.reports import report_bytes

pytestmark = [pytest.mark.kafka, pytest.mark.fhir]


@pytest.fixture
def proxy(hapi):
    parts = urlsplit(hapi.plain_url)
    with FaultProxy(f"http://{parts.hostname}:{parts.port}") as p:
        yield p


def _ids(n: int, tag: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{tag}{run}r{i:03d}" for i in range(n)]


def test_429_retry_after_is_honoured(isolated, hapi, proxy):
    s = sink_settings(isolated, proxy.url + "/fhir", fhir_sink_retry_initial_s=0.2)
    (rid,) = _ids(1, "thr")
    with running_sink(s):
        proxy.seen.clear()
        proxy.fail_next(2, status=429, retry_after="3")
        produce(s, [(rid, report_bytes(rid, 1))])
        got = wait_versions(hapi.client(), {rid: 1}, 60)
        metrics = sink_metrics(s)
    assert len(got[rid]) == 1
    seen = list(proxy.seen)
    faults = [i for i, r in enumerate(seen) if r.answered == "fault 429"]
    assert len(faults) == 2
    for i in faults:  # the next request after each 429 came no sooner than its Retry-After
        assert seen[i + 1].at - seen[i].at >= 2.9, [(r.at, r.answered) for r in seen]
    assert 'twiwatch_fhir_transient_failures_total{status="429"} 2.0' in metrics
    assert not deadletters(s)


def test_503_and_dropped_connections_lose_nothing(isolated, hapi, proxy):
    s = sink_settings(isolated, proxy.url + "/fhir", fhir_sink_retry_initial_s=0.2, fhir_sink_retry_max_s=1.0)
    ids = _ids(10, "flt")
    with running_sink(s):
        proxy.fail_next(3, status=503)
        proxy.drop_next(3)
        proxy.fail_next(1, status=503, retry_after="1")
        produce(s, [(rid, report_bytes(rid, 1)) for rid in ids])
        produce(s, [(rid, report_bytes(rid, 2)) for rid in ids[:5]])
        got = wait_versions(hapi.client(), {rid: (2 if i < 5 else 1) for i, rid in enumerate(ids)}, 90)
        health = sink_health(s)
    answered = [r.answered for r in proxy.seen]
    assert answered.count("dropped") == 3 and answered.count("fault 503") == 4
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids}
    assert [version_of(got[rid][0]) for rid in ids] == [2] * 5 + [1] * 5
    assert health["breaker"] == "closed" and not deadletters(s)


def test_short_outage_in_a_steady_stream(isolated, hapi, proxy):
    """12 s without the server (every connection dropped) while reports keep coming at 3/s: nothing lost, nothing
    twice, the latest versions win, and all is delivered within 30 s of recovery."""
    s = sink_settings(isolated, proxy.url + "/fhir")
    ids = _ids(45, "out")
    items = []
    for i, rid in enumerate(ids):
        items.append((rid, report_bytes(rid, 1, mrn=f"O{i}")))
        if i % 3 == 0:
            items.append((rid, report_bytes(rid, 2, mrn=f"O{i}")))
    with running_sink(s):
        import threading

        producer = threading.Thread(target=produce, args=(s, items), kwargs={"rate": 3.0})
        producer.start()
        time.sleep(6)
        proxy.drop_for(12)
        time.sleep(0.5)
        assert wait_until(lambda: sink_health(s)["breaker"] in ("open", "half-open"), 10)
        time.sleep(12)
        recovered = time.monotonic()
        producer.join()
        want = {rid: (2 if i % 3 == 0 else 1) for i, rid in enumerate(ids)}
        got = wait_versions(hapi.client(), want, 60)
        done_after = time.monotonic() - recovered
        health = sink_health(s)
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids}, "nothing lost, nothing twice"
    assert {rid: version_of(c[0]) for rid, c in got.items()} == want
    assert done_after <= 30, f"delivered {done_after:.1f} s after recovery"
    assert health["breaker"] == "closed" and not deadletters(s)
    assert sum(r.answered == "dropped" for r in proxy.seen) >= 1


def test_a_401_for_one_report_with_accepted_credentials_is_dead_lettered(isolated, hapi, proxy):
    """401 to the request and to its retry with a fresh token, while the credentials probe is answered: that report is
    refused for good (dead letter with the OperationOutcome); the credentials are fine, so the stream goes on."""
    import json

    from tests.support.fhir import STATIC_TOKEN

    s = sink_settings(isolated, proxy.url + "/fhir", fhir_sink_auth="bearer", fhir_sink_bearer_token=STATIC_TOKEN)
    refused, ok = _ids(2, "u401")
    with running_sink(s):
        proxy.seen.clear()
        proxy.fail_next(2, status=401)
        produce(s, [(refused, report_bytes(refused, 1))])
        assert wait_until(lambda: len(deadletters(s)) == 1, 30)
        produce(s, [(ok, report_bytes(ok, 1))])
        got = wait_versions(hapi.client(), {ok: 1}, 60)
        health = sink_health(s)
    assert len(got[ok]) == 1 and health["credentials"] == "accepted"
    (letter,) = deadletters(s)
    assert letter["key"] == refused.encode() and letter["meta"]["error.code"] == "http-401"
    assert json.loads(letter["meta"]["operation-outcome"])["resourceType"] == "OperationOutcome"
    assert [r.answered for r in proxy.seen[:3]] == ["fault 401", "fault 401", "passed 404"]


def test_versions_written_past_a_failure_are_not_written_again_after_the_rewind(isolated, hapi, proxy):
    """One partition, ten reports in one batch, one 503 among them: the partition is committed up to the failed
    version and rewound to it; the versions written after it come back with the rewind and count as done without a
    request (no `already-current` read, no second transaction); nothing is lost or duplicated."""
    s = sink_settings(isolated, proxy.url + "/fhir", partitions=1, fhir_sink_retry_initial_s=0.2,
                      fhir_sink_reports_per_transaction=1)  # one transaction per version: countable
    ids = _ids(10, "rew")
    with running_sink(s):
        proxy.seen.clear()
        proxy.fail_next(1, status=503)  # one of the first requests (all reports start at once, one lane each)
        produce(s, [(rid, report_bytes(rid, 1)) for rid in ids])
        got = wait_versions(hapi.client(), {rid: 1 for rid in ids}, 90)
        time.sleep(1)
        metrics = sink_metrics(s)
    assert {rid: len(c) for rid, c in got.items()} == {rid: 1 for rid in ids}
    assert [r.answered for r in proxy.seen].count("fault 503") == 1
    written = [r for r in proxy.seen if r.method == "POST" and r.path.rstrip("/").endswith("/fhir")
               and r.answered.startswith("passed")]
    assert len(written) == len(ids)  # each version's transaction went through once
    assert 'outcome="already-current"' not in metrics and 'outcome="superseded"' not in metrics
    assert not deadletters(s)
