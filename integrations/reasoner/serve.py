"""The ECG-R1 serving shim: an OpenAI-compatible HTTP server in front of one ECG-R1 generator.

Why it exists: stock `vllm serve` has no chat content part for the `ecg` modality (wire.py explains), so the
endpoint our HTTP backend talks to is this process. It speaks the wire format of wire.py:
* `POST /v1/chat/completions`: the request is checked by `wire.parse_chat_request` (one `ecg` part whose .npy
  decodes to finite float32 (12, 5000) with its SHA-256, 500 Hz, ECG-R1 lead order, mV; one user turn; n = 1; no
  streaming) and answered with a standard `chat.completion`. Errors are OpenAI error objects: 400 (malformed),
  404 (another model named), 413 (over the size limit), 429 + Retry-After (the in-flight bound and the wait queue
  are full), 503 + Retry-After (still loading, or the load failed), 500 (the generator failed).
* `GET /v1/models`, `GET /healthz` (200 once the generator is loaded, 503 before; `/health` is the same, as
  vLLM names it), `GET /metrics` (Prometheus text, on a registry of its own).
Concurrency: the GPU engine is one, so at most `max_inflight` generations run at once (each in a worker thread:
offline `LLM.generate` blocks) and at most `max_queue` more wait for a slot; beyond that the answer is 429. A
client that disconnects while queued is dropped from the queue; a running generation cannot be aborted (offline
vLLM), so its slot stays taken until it ends (bounded by max_tokens).
Logs carry request ids, sizes, timings, token counts and statuses; never prompt text, the signal or error text
that echoes the request.

Generators (`Generator`): `VllmGenerator` runs ECG-R1 through `VllmReasoner.generate` (vllm_backend.py; vllm is
imported only when it loads), and `StandinGenerator` is a STAND-IN that replays the hand-written ECG-R1-format
outputs of standin_outputs.json (standin.py): it is NOT ECG-R1, runs no model and ignores the signal; /healthz,
/v1/models, /metrics and every response say so. The tests inject faults through it (latency, hangs, failures).

    twiwatch reasoner serve --model /models/ECG-R1-8B-RL --ecg-tower /models/cpt_wfep_epoch_20.pt
    twiwatch reasoner serve --standin          # the stand-in, for demos and tests
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine.reasoner.errors import ReasonerError, ReasonerUnavailable
from engine.reasoner.prompt import ECGR1_MAX_TOKENS
from integrations.reasoner.standin import OUTPUTS_PATH, STANDIN_MODEL, Replay, estimate_tokens
from integrations.reasoner.wire import CHAT_PATH, build_chat_response, error_body, parse_chat_request

log = logging.getLogger("twiwatch.reasoner.serve")

STANDIN_WARNING = ("STAND-IN, NOT ECG-R1: replays hand-written ECG-R1-format fixture outputs; no model runs and "
                   "the ECG sent is not read")
ECG_TOKENS = 101  # the plugin expands the ECG pad to 101 tokens (docs/SPEC.md §6)
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # docs/SPEC.md §10's size limit; the CLI passes TWIWATCH_MAX_MESSAGE_BYTES
OUTCOMES = ("ok", "bad_request", "not_found", "too_large", "too_many", "not_ready", "error", "cancelled")


@dataclass(frozen=True)
class Generation:
    text: str
    completion_tokens: int
    finish_reason: str | None  # "stop" | "length" (hit max_tokens) | ...
    reasoning_content: str | None = None  # thinking split from `text` (the client puts it back in <think>)
    prompt_tokens: int | None = None
    extra: dict[str, Any] | None = None  # extra top-level response fields (the stand-in's label)


class Generator(Protocol):
    """What the shim serves. `load` blocks until it can generate; `generate` blocks for one answer and is called
    from worker threads, at most `max_inflight` at once."""
    name: str  # the `model` of every response
    standin: bool

    def describe(self) -> str: ...

    def load(self) -> None: ...

    def generate(self, ecg: np.ndarray, prompt: str, *, system_prompt: str | None, max_tokens: int,
                 temperature: float) -> Generation: ...

    def close(self) -> None:
        """The server is stopping: end what can be ended."""


class VllmGenerator:
    """ECG-R1 on a GPU through vLLM: the in-process backend's one generation path (`VllmReasoner.generate`).
    Construction checks everything that can be checked without a GPU (vllm, the authors' plugin, the local
    weights) and raises ReasonerUnavailable naming what is missing; `load` builds the engine (minutes)."""

    standin = False

    def __init__(self, model_path: str | Path, *, ecg_tower_path: str | Path | None = None,
                 served_name: str = "ECG-R1-8B-RL", **options: Any) -> None:
        from integrations.reasoner.vllm_backend import VllmReasoner

        self._reasoner = VllmReasoner(model_path, ecg_tower_path=ecg_tower_path, model_name=served_name, **options)
        self.name = served_name

    def describe(self) -> str:
        return f"ECG-R1 on vLLM from {self._reasoner.model_path} (ECG encoder {self._reasoner.tower_path})"

    def load(self) -> None:
        self._reasoner.load()

    def generate(self, ecg: np.ndarray, prompt: str, *, system_prompt: str | None, max_tokens: int,
                 temperature: float) -> Generation:
        out = self._reasoner.generate(ecg, prompt, system_prompt=system_prompt, max_tokens=max_tokens,
                                      temperature=temperature)
        return Generation(out.text, out.completion_tokens, out.finish_reason, prompt_tokens=out.prompt_tokens)

    def close(self) -> None:
        return None  # an offline vLLM generation cannot be aborted; the process exit frees the GPU


@dataclass(frozen=True)
class GenerationCall:
    """What a StandinGenerator was asked, for tests: the decoded signal and the prompt, as received."""
    ecg: np.ndarray
    prompt: str
    system_prompt: str | None
    max_tokens: int
    temperature: float


class StandinGenerator:
    """A STAND-IN for the 8B model, for tests and demos. It is NOT ECG-R1: it replays the hand-written outputs of
    standin_outputs.json (standin.Replay), ignores the signal, and names itself in every response. Options: which
    output (an id or "cycle"), a delay per generation (to fill the queue; longer than a client's timeout, a hang),
    `fail` (each generation raises, so the shim answers 500), and `split_reasoning` to return the <think> part as
    `reasoning_content`, as vLLM's reasoning parsers do. `set` changes output, delay and fail while it serves."""

    standin = True
    name = STANDIN_MODEL

    def __init__(self, output: str = "cycle", *, delay_s: float = 0.0, fail: bool = False,
                 split_reasoning: bool = False, outputs_path: Path = OUTPUTS_PATH) -> None:
        self.replay = Replay(outputs_path)
        self.replay.check(output)
        self.output, self.delay_s, self.fail, self.split_reasoning = output, delay_s, fail, split_reasoning
        self.outputs_path = Path(outputs_path)
        self.calls: list[GenerationCall] = []
        self.peak_concurrency = 0
        self._active = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def set(self, *, output: str | None = None, delay_s: float | None = None, fail: bool | None = None) -> None:
        if output is not None:
            self.replay.check(output)
            self.output = output
        if delay_s is not None:
            self.delay_s = delay_s
        if fail is not None:
            self.fail = fail

    def close(self) -> None:
        self._closed.set()  # a delay in progress (a hang) ends now

    def describe(self) -> str:
        return f"{STANDIN_WARNING} ({len(self.replay.outputs)} outputs in {self.outputs_path.name})"

    def load(self) -> None:
        return None

    def generate(self, ecg: np.ndarray, prompt: str, *, system_prompt: str | None, max_tokens: int,
                 temperature: float) -> Generation:
        with self._lock:
            self.calls.append(GenerationCall(ecg, prompt, system_prompt, max_tokens, temperature))
            self._active += 1
            self.peak_concurrency = max(self.peak_concurrency, self._active)
        try:
            if self.delay_s > 0:
                self._closed.wait(self.delay_s)
            if self.fail:
                raise ReasonerUnavailable("stand-in configured to fail", "standin-fault")
            out = self.replay.next(self.output, max_tokens=max_tokens)
        finally:
            with self._lock:
                self._active -= 1
        text, thinking = out.text, None
        if self.split_reasoning and "</think>" in text:
            head, text = text.split("</think>", 1)
            thinking, text = head.replace("<think>", "", 1).strip(), text.lstrip()
        prompt_tokens = ECG_TOKENS + estimate_tokens(f"{system_prompt or ''} {prompt}")
        return Generation(text, out.completion_tokens, out.finish_reason, thinking, prompt_tokens,
                          extra={"standin": {"output_id": out.output_id, "warning": STANDIN_WARNING,
                                             "note": "replayed fixture; token counts estimated"}})


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("twiwatch_reasoner_shim_requests", "chat completion requests by outcome",
                                ["outcome"], registry=registry)
        for outcome in OUTCOMES:
            self.requests.labels(outcome)
        self.latency = Histogram("twiwatch_reasoner_shim_request_seconds",
                                 "chat completion time, request to answer (queue wait + generation), answered ones",
                                 buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=registry)
        self.generate = Histogram("twiwatch_reasoner_shim_generate_seconds", "time in the generator per answer",
                                  buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=registry)
        self.inflight = Gauge("twiwatch_reasoner_shim_inflight", "generations running", registry=registry)
        self.queued = Gauge("twiwatch_reasoner_shim_queued", "requests waiting for a generation slot",
                            registry=registry)
        self.tokens = Counter("twiwatch_reasoner_shim_completion_tokens", "completion tokens generated",
                              registry=registry)
        self.finish = Counter("twiwatch_reasoner_shim_finish", "answers by finish_reason (length = truncated)",
                              ["reason"], registry=registry)
        self.ready = Gauge("twiwatch_reasoner_shim_ready", "1 once the generator is loaded", registry=registry)
        self.standin = Gauge("twiwatch_reasoner_shim_standin",
                             "1 when this serves the STAND-IN (not ECG-R1)", registry=registry)


class _Reply(Exception):
    """An error answer, raised inside the chat handler."""

    def __init__(self, status: int, outcome: str, message: str, *, kind: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message = status, outcome, message
        self.kind, self.retry_after = kind, retry_after


class ShimServer:
    """The HTTP server around one generator. `start`/`stop` run it on the current event loop; `running()` runs
    it on a loop in a background thread (the CLI and the tests); `load()` loads the generator in the calling
    thread (vLLM is built in the main thread) and turns /healthz from 503 to 200."""

    def __init__(self, generator: Generator, *, host: str = "127.0.0.1", port: int = 0,
                 served_name: str | None = None, max_inflight: int = 1, max_queue: int = 8,
                 max_tokens_limit: int = ECGR1_MAX_TOKENS, max_request_bytes: int = MAX_REQUEST_BYTES,
                 strict_model: bool | None = None, registry: CollectorRegistry | None = None) -> None:
        if max_inflight < 1 or max_queue < 0:
            raise ValueError("max_inflight must be >= 1 and max_queue >= 0")
        self.generator = generator
        self.host, self._port = host, port
        self.served_name = served_name or generator.name
        # A real model answers only to its served name (as vLLM does); the stand-in takes any name, so it drops in
        # where a client is configured for ECG-R1.
        self.strict_model = (not generator.standin) if strict_model is None else strict_model
        self.max_inflight, self.max_queue = max_inflight, max_queue
        self.max_tokens_limit, self.max_request_bytes = max_tokens_limit, max_request_bytes
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self.metrics.standin.set(1 if generator.standin else 0)
        self.state = "loading"  # -> "ready" | "failed"
        self.load_error: str | None = None
        self.running_count = 0
        self.queued_count = 0
        self._avg_generate_s: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="ecg-r1-generate")
        self._slots: asyncio.Semaphore | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/health", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.max_inflight)
        # handler_cancellation: a client that hangs up while queued leaves the queue instead of using the GPU.
        self._runner = web.AppRunner(self.make_app(), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=5.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.generator.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def load(self) -> None:
        """Load the generator here (blocking); /healthz answers 200 after. A failure is kept for /healthz and raised."""
        try:
            self.generator.load()
        except Exception as exc:
            self.state = "failed"
            self.load_error = exc.reason if isinstance(exc, ReasonerError) else type(exc).__name__
            raise
        self.state = "ready"
        self.metrics.ready.set(1)

    @contextlib.contextmanager
    def running(self) -> Iterator[ShimServer]:
        """Serve HTTP on an event loop in a background thread for the duration of the block."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                failed.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        thread = threading.Thread(target=main, name="ecg-r1-shim-http", daemon=True)
        thread.start()
        started.wait()
        if failed:
            raise failed[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)

    # --- handlers ---
    def _status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok" if self.state == "ready" else self.state, "model": self.served_name,
            "standin": self.generator.standin, "generator": self.generator.describe(),
            "inflight": self.running_count, "queued": self.queued_count,
            "max_inflight": self.max_inflight, "max_queue": self.max_queue}
        if self.generator.standin:
            body["warning"] = STANDIN_WARNING
        if self.load_error:
            body["error"] = self.load_error
        return body

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response(self._status_body(), status=200 if self.state == "ready" else 503)

    async def _models(self, _request: web.Request) -> web.Response:
        entry: dict[str, Any] = {
            "id": self.served_name, "object": "model", "created": 0,
            "owned_by": f"twiwatch {STANDIN_WARNING}" if self.generator.standin else "twiwatch",
            "root": self.generator.describe(), "max_tokens": self.max_tokens_limit,
            "standin": self.generator.standin, "ready": self.state == "ready"}
        return web.json_response({"object": "list", "data": [entry]})

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _retry_after(self) -> int:
        per_answer = self._avg_generate_s or 1.0
        waves = (self.queued_count + self.running_count) / self.max_inflight
        return max(1, min(600, math.ceil(per_answer * waves)))

    async def _chat(self, request: web.Request) -> web.Response:
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        started = time.monotonic()
        size, waited_s, took_s = request.content_length or 0, 0.0, 0.0
        try:
            try:
                gen, size, waited_s, took_s = await self._answer(request, rid)
            except _Reply as err:
                return self._finish(rid, started, err.status, err.outcome, size, waited_s, took_s,
                                    error=err)
        except asyncio.CancelledError:
            self._count(rid, started, 499, "cancelled", size, waited_s, took_s)
            raise
        body = build_chat_response(
            gen.text, request_id=rid, model=self.generator.name, created=int(time.time()),
            completion_tokens=gen.completion_tokens, finish_reason=gen.finish_reason,
            prompt_tokens=gen.prompt_tokens, reasoning_content=gen.reasoning_content, extra=gen.extra)
        self.metrics.tokens.inc(gen.completion_tokens)
        self.metrics.finish.labels(str(gen.finish_reason)).inc()
        self.metrics.latency.observe(time.monotonic() - started)
        self._count(rid, started, 200, "ok", size, waited_s, took_s, gen)
        return web.json_response(body, headers={"X-Request-Id": rid})

    async def _answer(self, request: web.Request, rid: str) -> tuple[Generation, int, float, float]:
        if self.state != "ready":
            if self.state == "failed":
                raise _Reply(503, "not_ready", f"the model failed to load ({self.load_error}); see the server log")
            raise _Reply(503, "not_ready", "the model is still loading", retry_after=10)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Reply(413, "too_large", f"request body over {self.max_request_bytes} bytes") from None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise _Reply(400, "bad_request", "request body is not JSON") from None
        try:
            req = parse_chat_request(payload, max_tokens_limit=self.max_tokens_limit)
        except ValueError as exc:  # ReasonerInputError is a ValueError too
            raise _Reply(400, "bad_request", str(exc)) from None
        if self.strict_model and req.model not in (None, self.served_name):
            raise _Reply(404, "not_found", f"the model {req.model!r} is not served here; this serves "
                         f"{self.served_name!r}", kind="model_not_found")
        if self.queued_count + self.running_count >= self.max_inflight + self.max_queue:
            raise _Reply(429, "too_many", f"{self.max_inflight} generation(s) running and {self.max_queue} "
                         "waiting: try again later", kind="rate_limit_exceeded", retry_after=self._retry_after())

        assert self._slots is not None
        queued_at = time.monotonic()
        self._set_queued(+1)
        try:
            await self._slots.acquire()
        finally:
            self._set_queued(-1)
        waited_s = time.monotonic() - queued_at
        self.running_count += 1
        self.metrics.inflight.set(self.running_count)
        run_at = time.monotonic()
        call = partial(self.generator.generate, req.ecg, req.prompt, system_prompt=req.system_prompt,
                       max_tokens=req.max_tokens, temperature=req.temperature)
        future = asyncio.get_running_loop().run_in_executor(self._pool, call)
        # The slot is given back when the generation ends, even if this handler is cancelled (client gone) first.
        future.add_done_callback(self._release)
        try:
            gen = await asyncio.shield(future)
        except ReasonerError as exc:
            raise _Reply(500, "error", f"generation failed: {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - an engine failure is this request's 500, not the server's end
            raise _Reply(500, "error", f"generation failed: {type(exc).__name__}") from None
        took_s = time.monotonic() - run_at
        self.metrics.generate.observe(took_s)
        self._avg_generate_s = took_s if self._avg_generate_s is None else 0.8 * self._avg_generate_s + 0.2 * took_s
        return gen, len(raw), waited_s, took_s

    def _set_queued(self, delta: int) -> None:
        self.queued_count += delta
        self.metrics.queued.set(self.queued_count)

    def _release(self, _future: Any) -> None:
        self.running_count -= 1
        self.metrics.inflight.set(self.running_count)
        if self._slots is not None:
            self._slots.release()

    def _finish(self, rid: str, started: float, status: int, outcome: str, size: int, waited_s: float,
                took_s: float, *, error: _Reply) -> web.Response:
        self._count(rid, started, status, outcome, size, waited_s, took_s)
        headers = {"X-Request-Id": rid}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        return web.json_response(error_body(error.message, status=status, kind=error.kind), status=status,
                                 headers=headers)

    def _count(self, rid: str, started: float, status: int, outcome: str, size: int, waited_s: float,
               took_s: float, gen: Generation | None = None) -> None:
        # Ids, sizes, timings, counts and statuses only: never prompt text, the signal or error text.
        self.metrics.requests.labels(outcome).inc()
        log.info("%s status=%d outcome=%s bytes=%d wait_ms=%.0f generate_ms=%.0f total_ms=%.0f tokens=%s finish=%s",
                 rid, status, outcome, size, waited_s * 1000, took_s * 1000, (time.monotonic() - started) * 1000,
                 gen.completion_tokens if gen else "-", gen.finish_reason if gen else "-")


def run(generator: Generator, *, host: str, port: int, served_name: str | None = None, max_inflight: int = 1,
        max_queue: int = 8, max_request_bytes: int = MAX_REQUEST_BYTES,
        announce: Callable[[str], None] = print) -> int:
    """Serve until SIGINT/SIGTERM: HTTP first (so /healthz answers 503 while loading), then load the generator in
    this (main) thread. Returns the exit status: 0 after a signal, 1 when the generator failed to load."""
    server = ShimServer(generator, host=host, port=port, served_name=served_name, max_inflight=max_inflight,
                        max_queue=max_queue, max_request_bytes=max_request_bytes)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with server.running():
            what = generator.describe()
            if generator.standin:
                announce(f"*** {STANDIN_WARNING} *** serving the stand-in as {server.served_name!r} on "
                         f"{server.url} (max in flight {max_inflight}, queue {max_queue})")
            else:
                announce(f"ECG-R1 serving shim on {server.url}: {server.served_name!r} = {what} (max in flight "
                         f"{max_inflight}, queue {max_queue}); loading, /healthz answers 503 until ready")
            t0 = time.monotonic()
            try:
                server.load()
            except Exception as exc:  # noqa: BLE001 - reported, then the process ends with status 1
                announce(f"the generator failed to load: {server.load_error or type(exc).__name__}")
                log.error("generator load failed: %s", server.load_error)
                return 1
            announce(f"ready in {time.monotonic() - t0:.1f} s: POST {server.url}{CHAT_PATH}")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
