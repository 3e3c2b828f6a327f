"""The HTTP backend against the real serving shim with the stand-in generator over real HTTP (127.0.0.1), sync and
asyncio; the orchestration's completed/abandoned outcomes; the report dict accepted by the FHIR report builder.
The stand-in replays hand-written outputs: it is NOT ECG-R1, and every response says so."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import standin_shim

from engine.analyze import analyze
from engine.reasoner import (
    ECGR1_PROMPT,
    ECGR1_SYSTEM_PROMPT,
    ReasonerTimeout,
    ReasonerUnavailable,
    areason_and_check,
    normalise,
    reason_and_check,
    to_report_dict,
)
from integrations.reasoner.http_client import HttpReasoner
from integrations.reasoner.standin import STANDIN_MODEL
from integrations.reasoner.wire import decode_ecg_part, encode_ecg_part, read_chat_response
from stream.devtools.e2e import free_port


@pytest.fixture(scope="module")
def case(recordings):
    rec = next(r for r in recordings if (r.dataset, r.record_id) == ("ptbxl", "468")).load()
    return rec, analyze(rec)


@pytest.fixture
def shim():
    with standin_shim("lateral-twi") as (server, generator):
        yield server, generator


@pytest.fixture
def server(shim):
    return shim[0]


@pytest.fixture
def standin(shim):
    """The stand-in generator behind the shim: what it was asked, and the faults to inject."""
    return shim[1]


def test_success_sends_the_normalised_ecg_and_reads_the_answer(server, standin, case):
    rec, a = case
    res = reason_and_check(rec, a, HttpReasoner(server.url), timeout_s=10)
    assert res.status == "completed" and res.reason is None
    assert res.model == STANDIN_MODEL and "NOT-ECG-R1" in res.model
    assert res.parsed.complete and res.parsed.labels[0] == "sinus rhythm"
    assert res.crosscheck.counts["total"] > 10 and res.tokens and res.latency_ms > 0
    assert res.input_notes == ["resampled 100 Hz -> 500 Hz"]
    seen = standin.calls[-1]
    np.testing.assert_array_equal(seen.ecg, normalise(rec).signal)  # bit-exact over the wire
    assert seen.prompt == ECGR1_PROMPT and seen.system_prompt == ECGR1_SYSTEM_PROMPT
    assert seen.temperature == 0 and seen.max_tokens == 2048


def test_async_success(server, standin, case):
    rec, a = case
    standin.set(output="rbbb")
    res = asyncio.run(areason_and_check(rec, a, HttpReasoner(server.url + "/v1"), timeout_s=10))
    assert res.status == "completed" and res.parsed.labels == ["sinus rhythm", "complete right bundle branch block"]


@pytest.mark.parametrize("output_id", ["truncated", "junk", "empty", "no-answer"])
def test_malformed_outputs_complete_with_problems(server, standin, case, output_id):
    rec, a = case
    standin.set(output=output_id)
    res = reason_and_check(rec, a, HttpReasoner(server.url), timeout_s=10)
    assert res.status == "completed" and not res.parsed.complete and res.parsed.problems
    report = to_report_dict(res)
    assert report["cross_check"][0].startswith("model output incomplete (")
    if output_id == "truncated":
        assert res.finish_reason == "length" and res.crosscheck.counts["total"] > 0  # the part received is checked


def test_http_500_is_abandoned(server, standin, case):
    rec, a = case
    standin.set(fail=True)
    for res in (reason_and_check(rec, a, HttpReasoner(server.url), timeout_s=5),
                asyncio.run(areason_and_check(rec, a, HttpReasoner(server.url), timeout_s=5))):
        assert res.status == "abandoned" and res.code == "http-500"
        assert "generation failed: stand-in configured to fail" in res.reason and res.parsed is None


def test_hang_times_out_and_is_abandoned(server, standin, case):
    rec, a = case
    standin.set(delay_s=30)
    for run in (lambda: reason_and_check(rec, a, HttpReasoner(server.url), timeout_s=0.5),
                lambda: asyncio.run(areason_and_check(rec, a, HttpReasoner(server.url), timeout_s=0.5))):
        t0 = time.monotonic()
        res = run()
        assert time.monotonic() - t0 < 2.5
        assert res.status == "abandoned" and res.code == "timeout" and "0.5 s" in res.reason


def test_slow_server_within_the_deadline(server, standin, case):
    rec, a = case
    standin.set(delay_s=0.3)
    assert reason_and_check(rec, a, HttpReasoner(server.url), timeout_s=5).status == "completed"
    with pytest.raises(ReasonerTimeout):
        HttpReasoner(server.url).reason(normalise(rec).signal, ECGR1_PROMPT, timeout_s=0.1)


def test_a_trickling_server_cannot_stretch_the_deadline(case):
    """A server that sends its headers a byte every 0.2 s never trips a per-read socket timeout; the call must
    still end at its deadline (sync and asyncio)."""
    rec, _ = case
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(1 << 16)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 200:
                    if stop.wait(0.2):
                        return
                    try:
                        conn.send(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        for call in (lambda: HttpReasoner(url).reason(normalise(rec).signal, ECGR1_PROMPT, timeout_s=1.0),
                     lambda: asyncio.run(HttpReasoner(url).areason(normalise(rec).signal, ECGR1_PROMPT,
                                                                    timeout_s=1.0))):
            t0 = time.monotonic()
            with pytest.raises(ReasonerTimeout):
                call()
            assert time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        listener.close()


def test_server_down_is_abandoned(case):
    rec, a = case
    url = f"http://127.0.0.1:{free_port()}"
    for res in (reason_and_check(rec, a, HttpReasoner(url), timeout_s=2),
                asyncio.run(areason_and_check(rec, a, HttpReasoner(url), timeout_s=2))):
        assert res.status == "abandoned" and res.code == "unreachable" and res.model == "ECG-R1-8B-RL"


def test_refused_input_never_reaches_the_server(server, standin, case):
    rec, a = case
    no_v3 = rec.replace(signal=np.delete(rec.signal, rec.leads.index("V3"), axis=0),
                        leads=tuple(n for n in rec.leads if n != "V3"))
    res = reason_and_check(no_v3, a, HttpReasoner(server.url), timeout_s=5)
    assert res.status == "abandoned" and res.code == "missing-leads" and "V3" in res.reason
    assert standin.calls == []


def test_the_shim_rejects_malformed_requests_before_the_generator(server, standin):
    def post(body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = post({"model": "x", "temperature": 0, "messages": [{"role": "user", "content": "hello"}]})
    assert status == 400 and "0 ECG parts" in body["error"]["message"]
    part = encode_ecg_part(np.zeros((12, 5000), np.float32))
    part["ecg"]["leads"] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    status, body = post({"model": "x", "temperature": 0, "messages": [{"role": "user", "content": [part]}]})
    assert status == 400 and "lead order" in body["error"]["message"]
    with urllib.request.urlopen(server.url + "/v1/models", timeout=5) as r:
        assert json.loads(r.read())["data"][0]["id"] == STANDIN_MODEL
    assert standin.calls == []


def test_wire_roundtrip_and_checks():
    x = np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32)
    part = encode_ecg_part(x)
    np.testing.assert_array_equal(decode_ecg_part(part), x)
    assert part["ecg"]["leads"][4:6] == ["aVF", "aVL"] and part["ecg"]["fs"] == 500.0
    tampered = json.loads(json.dumps(part))
    tampered["ecg"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="sha256"):
        decode_ecg_part(tampered)
    with pytest.raises(ValueError, match="fs"):
        decode_ecg_part({**part, "ecg": {**part["ecg"], "fs": 250}})


def test_response_reading():
    body = {"model": "m", "choices": [{"message": {"content": "<answer>x</answer>", "reasoning_content": "Step 1"},
                                       "finish_reason": "stop"}], "usage": {"completion_tokens": 9}}
    text, model, tokens, finish = read_chat_response(json.dumps(body).encode())
    assert text.startswith("<think>\nStep 1\n</think>") and (model, tokens, finish) == ("m", 9, "stop")
    for bad in (b"not json", b"{}", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}'):
        with pytest.raises(ReasonerUnavailable) as err:
            read_chat_response(bad)
        assert err.value.code == "bad-response"


def test_array_contract_is_checked_before_sending():
    from engine.reasoner.errors import ReasonerInputError

    with pytest.raises(ReasonerInputError):
        HttpReasoner("http://127.0.0.1:9").reason(np.zeros((12, 1000), np.float32), ECGR1_PROMPT, timeout_s=1)
    with pytest.raises(ReasonerInputError):
        HttpReasoner("http://127.0.0.1:9").reason(np.zeros((12, 5000)), ECGR1_PROMPT, timeout_s=1)  # float64


def test_report_dict_feeds_the_fhir_report_builder(server, case):
    from integrations.fhir.report import build_report_bundle, report_resource

    rec, a = case
    res = reason_and_check(rec, a, HttpReasoner(server.url, model_version="standin-fixture-1"), timeout_s=10)
    reasoning = to_report_dict(res)
    assert {"model", "version", "status", "answer", "cross_check"} <= set(reasoning)
    json.dumps(reasoning)  # plain JSON for the topic
    bundle = build_report_bundle(a, rec, report_id="r-468", version=2, status="preliminary",
                                 issued=datetime(2026, 1, 1, tzinfo=UTC), reasoning=reasoning)
    div = report_resource(bundle)["text"]["div"]
    assert "CONTRADICTED: T inverted in V4, V5, V6" in div and "NOT-ECG-R1" in div
    devices = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"]
    assert any("NOT-ECG-R1" in json.dumps(d) for d in devices)

    with standin_shim(load=False) as (loading, _):  # a model still loading: the shim answers 503
        abandoned = to_report_dict(reason_and_check(rec, a, HttpReasoner(loading.url), timeout_s=5))
    assert abandoned["status"] == "abandoned" and abandoned["answer"] == [] and abandoned["code"] == "http-503"
    bundle = build_report_bundle(a, rec, report_id="r-468", version=2, status="preliminary",
                                 issued=datetime(2026, 1, 1, tzinfo=UTC), reasoning=abandoned)
    assert "not available (abandoned)" in report_resource(bundle)["text"]["div"]
