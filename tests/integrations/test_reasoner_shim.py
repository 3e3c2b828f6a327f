"""The ECG-R1 serving shim (integrations/reasoner/serve.py) for real on 127.0.0.1, driven by our own HTTP client
(HttpReasoner) with real recordings normalised for ECG-R1, and by raw JSON for the requests it must refuse.

The generator behind it is the STAND-IN (replays hand-written ECG-R1-format outputs; NOT ECG-R1, no model runs):
the 8B model needs a GPU and local weights. One test puts the vLLM generator behind the shim with a fake `vllm`
module (as tests/test_reasoner_vllm.py does), to check that the request's values reach VllmReasoner.generate."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import standin_shim
from prometheus_client.parser import text_string_to_metric_families

from engine.analyze import analyze
from engine.reasoner import (
    ECGR1_PROMPT,
    ECGR1_SYSTEM_PROMPT,
    ReasonerInputError,
    ReasonerUnavailable,
    areason_and_check,
    normalise,
    parse_reasoning,
    reason_and_check,
    to_report_dict,
)
from integrations.reasoner.http_client import HttpReasoner
from integrations.reasoner.serve import STANDIN_WARNING, ShimServer, StandinGenerator
from integrations.reasoner.standin import STANDIN_MODEL
from integrations.reasoner.wire import (
    build_chat_request,
    build_chat_response,
    encode_ecg_part,
    error_body,
    error_message,
    parse_chat_request,
    read_chat_response,
)
from stream.devtools.e2e import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def records(recordings):
    """Two real recordings: PTB-XL 468 (100 Hz, resampled) and the first LUDB record (500 Hz)."""
    ptb = next(r for r in recordings if (r.dataset, r.record_id) == ("ptbxl", "468")).load()
    ludb = next(r for r in recordings if r.dataset == "ludb").load()
    return [ptb, ludb]


def _shim(generator: StandinGenerator, **options) -> ShimServer:
    return ShimServer(generator, port=0, **options)


@pytest.fixture
def shim():
    with standin_shim("lateral-twi", server_options={"max_inflight": 1, "max_queue": 1}) as (server, _):
        yield server


def _get(url: str) -> tuple[int, dict | str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            raw, status, headers = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw.decode(), headers


def _post(url: str, body: bytes | dict) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    status, text, _ = _get(url + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _outcome(m: dict, outcome: str) -> float:
    return m[("twiwatch_reasoner_shim_requests_total", (("outcome", outcome),))]


# --- through our own client ---

def test_http_reasoner_through_the_shim(shim, records):
    gen = shim.generator
    for i, rec in enumerate(records):
        ecg = normalise(rec).signal
        raw = HttpReasoner(shim.url).reason(ecg, ECGR1_PROMPT, timeout_s=10)
        parsed = parse_reasoning(raw.text, raw.finish_reason)
        assert parsed.complete and parsed.labels[0] == "sinus rhythm", parsed.problems
        assert raw.model == STANDIN_MODEL and raw.finish_reason == "stop" and raw.tokens > 100
        call = gen.calls[i]
        # exactly the array the client sent: same dtype, shape and bytes
        assert call.ecg.dtype == np.float32 and call.ecg.shape == (12, 5000)
        assert call.ecg.tobytes() == np.ascontiguousarray(ecg).tobytes()
        assert call.prompt == ECGR1_PROMPT and call.system_prompt == ECGR1_SYSTEM_PROMPT
        assert (call.max_tokens, call.temperature) == (2048, 0.0)
    assert len(gen.calls) == 2
    assert not np.array_equal(gen.calls[0].ecg, gen.calls[1].ecg)


def test_the_worker_reasoning_path_against_the_shim(shim, records):
    """What the worker runs (stream.reasoning.make_reasoner -> areason_and_check), sync and asyncio."""
    from stream.config import ToolSettings
    from stream.reasoning import make_reasoner

    rec = records[0]
    a = analyze(rec)
    reasoner = make_reasoner(ToolSettings(reasoner_url=shim.url))
    for res in (asyncio.run(areason_and_check(rec, a, reasoner, timeout_s=10)),
                reason_and_check(rec, a, HttpReasoner(shim.url + "/v1"), timeout_s=10)):
        assert res.status == "completed" and res.parsed.complete and res.model == STANDIN_MODEL
        assert res.crosscheck.counts["total"] > 10
        report = to_report_dict(res)
        assert report["status"] == "completed" and "NOT-ECG-R1" in report["model"]
        json.dumps(report)
    np.testing.assert_array_equal(shim.generator.calls[-1].ecg, normalise(rec).signal)


def test_reasoning_content_is_put_back_in_think(records):
    server = _shim(StandinGenerator(output="rbbb", split_reasoning=True))
    with server.running():
        server.load()
        status, body, _ = _post(server.url, build_chat_request(normalise(records[1]).signal, ECGR1_PROMPT,
                                                               model="x", system_prompt=None))
        assert status == 200 and "<think>" not in body["choices"][0]["message"]["content"]
        assert body["choices"][0]["message"]["reasoning_content"].startswith("**Step 1")
        raw = HttpReasoner(server.url).reason(normalise(records[1]).signal, ECGR1_PROMPT, timeout_s=10)
    parsed = parse_reasoning(raw.text, raw.finish_reason)
    assert parsed.complete and parsed.labels == ["sinus rhythm", "complete right bundle branch block"]


def test_max_tokens_reaches_the_generator_and_length_comes_back(shim, records):
    client = HttpReasoner(shim.url, max_tokens=50)
    raw = client.reason(normalise(records[0]).signal, ECGR1_PROMPT, timeout_s=10)
    assert raw.finish_reason == "length" and raw.tokens <= 50
    assert shim.generator.calls[-1].max_tokens == 50
    assert not parse_reasoning(raw.text, raw.finish_reason).complete


# --- what it refuses ---

def _valid() -> dict:
    ecg = np.random.default_rng(3).normal(scale=0.3, size=(12, 5000)).astype(np.float32)
    return build_chat_request(ecg, ECGR1_PROMPT, model="ECG-R1-8B-RL", system_prompt=ECGR1_SYSTEM_PROMPT)


def _with_part(body: dict, **ecg_changes) -> dict:
    part = body["messages"][1]["content"][0]
    part["ecg"].update(ecg_changes)
    return body


def _part_of(arr: np.ndarray) -> dict:
    """A well-formed ecg part whose .npy holds `arr` (right sha256, wrong content)."""
    part = encode_ecg_part(np.zeros((12, 5000), np.float32))
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    part["ecg"]["data"] = base64.b64encode(buf.getvalue()).decode()
    part["ecg"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    return part


def _replace_parts(body: dict, parts: list) -> dict:
    body["messages"][1]["content"] = parts
    return body


def _bad_cases() -> list[tuple[str, object, str]]:
    text = {"type": "text", "text": "Interpret"}
    nan = np.zeros((12, 5000), np.float32)
    nan[3, 7] = np.nan
    canonical = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    return [
        ("not-json", b"{not json", "not JSON"),
        ("no-messages", {"model": "x"}, "messages"),
        ("no-ecg-part", (lambda b: _replace_parts(b, [text]))(_valid()), "0 ECG parts"),
        ("string-content", (lambda b: _replace_parts(b, "hello"))(_valid()), "0 ECG parts"),
        ("two-ecg-parts", (lambda b: _replace_parts(b, b["messages"][1]["content"] * 2))(_valid()), "2 ECG parts"),
        ("bad-sha256", _with_part(_valid(), sha256="0" * 64), "sha256"),
        ("not-base64", _with_part(_valid(), data="!!!"), "base64"),
        ("short-array", (lambda b: _replace_parts(b, [_part_of(np.zeros((12, 2500), np.float32))]))(_valid()),
         "(12, 2500)"),
        ("float64", (lambda b: _replace_parts(b, [_part_of(np.zeros((12, 5000)))]))(_valid()), "float64"),
        ("non-finite", (lambda b: _replace_parts(b, [_part_of(nan)]))(_valid()), "finite"),
        ("canonical-lead-order", _with_part(_valid(), leads=canonical), "lead order"),
        ("250-hz", _with_part(_valid(), fs=250), "fs 250"),
        ("microvolts", _with_part(_valid(), units="uV"), "units"),
        ("other-format", _with_part(_valid(), format="raw"), "format"),
        ("image-part", (lambda b: _replace_parts(b, b["messages"][1]["content"] + [
            {"type": "image_url", "image_url": {"url": "data:,"}}]))(_valid()), "'image_url'"),
        ("marker-in-text", (lambda b: _replace_parts(b, [{"type": "text", "text": "<ecg>"}] + b["messages"][1][
            "content"]))(_valid()), "marker"),
        ("stream", {**_valid(), "stream": True}, "stream"),
        ("n-2", {**_valid(), "n": 2}, "n=2"),
        ("tools", {**_valid(), "tools": [{"type": "function"}]}, "tools"),
        ("temperature", {**_valid(), "temperature": "hot"}, "temperature"),
        ("max-tokens-0", {**_valid(), "max_tokens": 0}, "max_tokens"),
        ("max-tokens-over", {**_valid(), "max_tokens": 100_000}, "max_tokens"),
        ("two-user-turns", (lambda b: {**b, "messages": b["messages"] + [b["messages"][1]]})(_valid()),
         "2 user messages"),
        ("assistant-turn", (lambda b: {**b, "messages": b["messages"] + [
            {"role": "assistant", "content": "x"}]})(_valid()), "role 'assistant'"),
    ]


def test_malformed_requests_are_400_with_a_clear_error(shim):
    for name, body, expect in _bad_cases():
        status, reply, _ = _post(shim.url, body)
        assert status == 400, (name, status, reply)
        err = reply["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == 400
        assert expect in err["message"], (name, err["message"])
    assert shim.generator.calls == []
    m = _metrics(shim.url)
    assert _outcome(m, "bad_request") == len(_bad_cases()) and _outcome(m, "ok") == 0
    status, reply, _ = _post(shim.url, _valid())  # and the untouched request is fine
    assert status == 200 and reply["object"] == "chat.completion"


def test_client_refuses_what_the_server_would_refuse(shim):
    """HttpReasoner turns a 400 into ReasonerUnavailable http-400 with the server's words."""
    bad = np.zeros((12, 5000), np.float32)
    bad[0, 0] = np.inf
    with pytest.raises(ReasonerInputError):  # the client checks the array itself: nothing is sent
        HttpReasoner(shim.url).reason(bad, ECGR1_PROMPT, timeout_s=5)
    with pytest.raises(ReasonerUnavailable) as err:
        HttpReasoner(shim.url, max_tokens=4096).reason(np.zeros((12, 5000), np.float32), ECGR1_PROMPT, timeout_s=5)
    assert err.value.code == "http-400" and "max_tokens 4096" in err.value.reason


def test_a_real_model_answers_only_to_its_name(records):
    server = _shim(StandinGenerator(output="normal"), served_name="ECG-R1-8B-RL", strict_model=True)
    with server.running():
        server.load()
        ecg = normalise(records[1]).signal
        status, reply, _ = _post(server.url, build_chat_request(ecg, ECGR1_PROMPT, model="ECG-R1-8B-SFT",
                                                                system_prompt=None))
        assert status == 404 and reply["error"]["type"] == "model_not_found" and "ECG-R1-8B-SFT" in reply[
            "error"]["message"]
        assert HttpReasoner(server.url, model="ECG-R1-8B-RL").reason(ecg, ECGR1_PROMPT, timeout_s=5).text
        status, models, _ = _get(server.url + "/v1/models")
        assert models["data"][0]["id"] == "ECG-R1-8B-RL"


def test_oversized_body_is_413():
    server = _shim(StandinGenerator(), max_request_bytes=100_000)
    with server.running():
        server.load()
        status, reply, _ = _post(server.url, _valid())  # ~440 KB
    assert status == 413 and "100000 bytes" in reply["error"]["message"]


# --- bounded concurrency ---

def _wait(cond, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_429_when_the_slot_and_the_queue_are_full(records):
    gen = StandinGenerator(output="normal", delay_s=1.0)
    server = _shim(gen, max_inflight=1, max_queue=1)
    ecg = normalise(records[1]).signal
    results: list = []

    def call() -> None:
        try:
            results.append(HttpReasoner(server.url).reason(ecg, ECGR1_PROMPT, timeout_s=10))
        except Exception as exc:  # noqa: BLE001
            results.append(exc)

    with server.running():
        server.load()
        first = threading.Thread(target=call)
        first.start()
        _wait(lambda: len(gen.calls) == 1)  # generating
        second = threading.Thread(target=call)
        second.start()
        _wait(lambda: server.queued_count == 1)  # waiting for the slot
        m = _metrics(server.url)
        assert m[("twiwatch_reasoner_shim_inflight", ())] == 1 and m[("twiwatch_reasoner_shim_queued", ())] == 1
        status, reply, headers = _post(server.url, build_chat_request(ecg, ECGR1_PROMPT, model="x",
                                                                      system_prompt=None))
        assert status == 429 and reply["error"]["type"] == "rate_limit_exceeded"
        assert int(headers["Retry-After"]) >= 1
        with pytest.raises(ReasonerUnavailable) as err:  # our client: abandoned with the reason
            HttpReasoner(server.url).reason(ecg, ECGR1_PROMPT, timeout_s=5)
        assert err.value.code == "http-429"
        first.join(10)
        second.join(10)
        assert [type(r).__name__ for r in results] == ["RawReasoning", "RawReasoning"]
        assert gen.peak_concurrency == 1 and len(gen.calls) == 2
        m = _metrics(server.url)
        assert _outcome(m, "too_many") == 2 and _outcome(m, "ok") == 2
        assert m[("twiwatch_reasoner_shim_inflight", ())] == 0 and m[("twiwatch_reasoner_shim_queued", ())] == 0


def test_two_slots_run_two_generations_at_once(records):
    gen = StandinGenerator(output="normal", delay_s=0.5)
    server = _shim(gen, max_inflight=2, max_queue=0)
    ecg = normalise(records[1]).signal
    with server.running():
        server.load()
        threads = [threading.Thread(target=HttpReasoner(server.url).reason, args=(ecg, ECGR1_PROMPT),
                                    kwargs={"timeout_s": 10}) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert gen.peak_concurrency == 2 and len(gen.calls) == 2


def test_a_client_that_gives_up_while_queued_leaves_the_queue(records):
    gen = StandinGenerator(output="normal", delay_s=1.0)
    server = _shim(gen, max_inflight=1, max_queue=1)
    ecg = normalise(records[1]).signal
    with server.running():
        server.load()
        first = threading.Thread(target=HttpReasoner(server.url).reason, args=(ecg, ECGR1_PROMPT),
                                 kwargs={"timeout_s": 10})
        first.start()
        _wait(lambda: len(gen.calls) == 1)
        with pytest.raises(ReasonerUnavailable) as err:
            HttpReasoner(server.url).reason(ecg, ECGR1_PROMPT, timeout_s=0.3)
        assert err.value.code == "timeout"
        _wait(lambda: server.queued_count == 0)
        first.join(10)
        time.sleep(0.1)
        assert len(gen.calls) == 1  # the abandoned request never reached the generator
        assert _outcome(_metrics(server.url), "cancelled") == 1


# --- health, models, metrics, logs ---

def test_healthz_is_503_until_loaded_then_200(records):
    server = _shim(StandinGenerator(output="normal"))
    with server.running():
        status, body, _ = _get(server.url + "/healthz")
        assert status == 503 and body["status"] == "loading" and body["standin"] is True
        status, reply, headers = _post(server.url, _valid())
        assert status == 503 and "loading" in reply["error"]["message"] and headers["Retry-After"] == "10"
        assert _metrics(server.url)[("twiwatch_reasoner_shim_ready", ())] == 0
        server.load()
        status, body, _ = _get(server.url + "/healthz")
        assert status == 200 and body["status"] == "ok" and body["warning"] == STANDIN_WARNING
        assert _get(server.url + "/health")[0] == 200
        assert _metrics(server.url)[("twiwatch_reasoner_shim_ready", ())] == 1


def test_a_failed_load_stays_503_and_says_why():
    gen = StandinGenerator()

    def broken() -> None:
        raise ReasonerUnavailable("no model at /nowhere (config.json missing)", "model-missing")

    gen.load = broken
    server = _shim(gen)
    with server.running():
        with pytest.raises(ReasonerUnavailable):
            server.load()
        status, body, _ = _get(server.url + "/healthz")
        assert status == 503 and body["status"] == "failed" and "config.json missing" in body["error"]
        status, reply, _ = _post(server.url, _valid())
        assert status == 503 and "failed to load" in reply["error"]["message"]


def test_models_says_it_is_a_standin(shim):
    status, body, _ = _get(shim.url + "/v1/models")
    assert status == 200 and body["object"] == "list"
    (entry,) = body["data"]
    assert entry["id"] == STANDIN_MODEL and entry["standin"] is True and "NOT ECG-R1" in entry["owned_by"]
    assert "NOT ECG-R1" in entry["root"] and entry["ready"] is True


def test_metrics_count_outcomes_latency_and_tokens(shim, records):
    ecg = normalise(records[0]).signal
    raws = [HttpReasoner(shim.url).reason(ecg, ECGR1_PROMPT, timeout_s=10) for _ in range(2)]
    _post(shim.url, b"[]")
    m = _metrics(shim.url)
    assert _outcome(m, "ok") == 2 and _outcome(m, "bad_request") == 1 and _outcome(m, "too_many") == 0
    assert m[("twiwatch_reasoner_shim_completion_tokens_total", ())] == sum(r.tokens for r in raws)
    assert m[("twiwatch_reasoner_shim_request_seconds_count", ())] == 2
    assert m[("twiwatch_reasoner_shim_generate_seconds_count", ())] == 2
    assert m[("twiwatch_reasoner_shim_finish_total", (("reason", "stop"),))] == 2
    assert m[("twiwatch_reasoner_shim_standin", ())] == 1 and m[("twiwatch_reasoner_shim_inflight", ())] == 0


def test_logs_carry_no_prompt_and_no_signal(shim, records, caplog):
    ecg = normalise(records[0]).signal
    with caplog.at_level(logging.DEBUG, logger="twiwatch.reasoner.serve"):
        HttpReasoner(shim.url).reason(ecg, ECGR1_PROMPT, timeout_s=10)
        body = _valid()
        body["messages"][1]["content"].append({"type": "text", "text": "patient Jane Doe <ecg>"})
        _post(shim.url, body)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("twiwatch.reasoner")]
    assert len(lines) == 2 and "status=200" in lines[0] and "status=400" in lines[1]
    assert all(line.startswith("chatcmpl-") and "bytes=" in line for line in lines)
    payload = build_chat_request(ecg, ECGR1_PROMPT, model="x", system_prompt=None)
    data = payload["messages"][0]["content"][0]["ecg"]["data"]
    for line in lines:
        assert "Interpret" not in line and "Jane" not in line and data[:40] not in line


# --- the wire helpers, both ends ---

def test_parse_is_the_inverse_of_build(records):
    ecg = normalise(records[0]).signal
    for prompt, system in ((ECGR1_PROMPT, ECGR1_SYSTEM_PROMPT), ("Look at <ecg> and answer.", None)):
        req = parse_chat_request(build_chat_request(ecg, prompt, model="m", system_prompt=system, max_tokens=77))
        assert req.ecg.tobytes() == ecg.tobytes() and req.prompt == prompt and req.system_prompt == system
        assert (req.model, req.max_tokens, req.temperature) == ("m", 77, 0.0)
    req = parse_chat_request(build_chat_request(ecg, "no marker", model="m", system_prompt=None))
    assert req.prompt == "<ecg>no marker"  # the ECG goes first, as split_prompt says


def test_response_and_error_helpers_are_symmetric():
    body = build_chat_response("<answer>x</answer>", request_id="r", model="m", created=1, completion_tokens=3,
                               finish_reason="length", prompt_tokens=120, reasoning_content="Step 1")
    text, model, tokens, finish = read_chat_response(json.dumps(body).encode())
    assert text == "<think>\nStep 1\n</think>\n<answer>x</answer>" and (model, tokens, finish) == ("m", 3, "length")
    assert body["usage"] == {"prompt_tokens": 120, "completion_tokens": 3, "total_tokens": 123}
    assert error_message(json.dumps(error_body("bad thing", status=400)).encode()) == "bad thing"


# --- the CLI command, as a process ---

def test_cli_serves_the_standin_and_stops_on_sigterm(records, tmp_path):
    port = free_port()
    env = {**os.environ, "TWIWATCH_REASONER_SERVE_MAX_QUEUE": "3", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "reasoner", "serve", "--standin", "--port",
                             str(port), "--max-inflight", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                status, body, _ = _get(url + "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "shim did not come up"
            time.sleep(0.2)
        assert body["standin"] is True and body["max_queue"] == 3 and body["max_inflight"] == 1
        raw = HttpReasoner(url).reason(normalise(records[0]).signal, ECGR1_PROMPT, timeout_s=10)
        assert raw.model == STANDIN_MODEL and raw.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "STAND-IN, NOT ECG-R1" in err and f"127.0.0.1:{port}" in err
    assert "Interpret" not in out + err


# --- the vLLM generator behind the shim (fake vllm module; the real model is not run here) ---

from tests.support.fake_vllm import FakeLLM  # noqa: E402 - the fixtures model_dir and fake_env are in conftest.py


def test_vllm_generator_behind_the_shim_with_a_fake_vllm(fake_env, records):
    from integrations.reasoner.serve import VllmGenerator
    from integrations.reasoner.vllm_backend import ECG_PLACEHOLDER

    (path, tower), registered = fake_env
    gen = VllmGenerator(path, ecg_tower_path=tower, served_name="ECG-R1-8B-RL")
    server = ShimServer(gen, port=0)
    assert server.strict_model and not gen.standin and "ECG-R1 on vLLM" in gen.describe()
    ecg = normalise(records[0]).signal
    with server.running():
        assert _get(server.url + "/healthz")[0] == 503
        server.load()
        assert registered == [True] and _get(server.url + "/healthz")[0] == 200
        raw = HttpReasoner(server.url, system_prompt="Custom system.", max_tokens=300).reason(
            ecg, ECGR1_PROMPT, timeout_s=10)
    assert raw.model == "ECG-R1-8B-RL" and raw.text.endswith("<answer>fake</answer>") and raw.tokens == 7
    (llm,) = FakeLLM.instances
    ((request,), params) = llm.calls[0]
    assert np.asarray(request["multi_modal_data"]["ecg"]).tobytes() == ecg.tobytes()
    assert (params.max_tokens, params.temperature, params.n) == (300, 0.0, 1)
    assert "Custom system." in request["prompt"] and "clinical ECG assistant" not in request["prompt"]
    assert request["prompt"].count(ECG_PLACEHOLDER) == 1
