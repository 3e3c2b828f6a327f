"""A STAND-IN for an ECG-R1 server that injects faults, for tests. It is NOT ECG-R1 and runs no model.

It speaks the same HTTP as the real endpoint (POST /v1/chat/completions with the `ecg` content part of wire.py;
GET /v1/models, /health), checks each request with the serving shim's parser (wire.parse_chat_request: one ECG, the
.npy decodes to finite float32 (12, 5000), 500 Hz, ECG-R1 lead order, SHA-256), and answers by REPLAYING hand-written
ECG-R1-format outputs from standin_outputs.json (some malformed on purpose). It ignores the signal: its answer
is not a reading of the ECG sent. Every response's `model` field says it is a stand-in, so a report built from
it names the stand-in, not ECG-R1, as the reasoning device.
Behaviour is set per server (and can be changed while it runs): which output to replay (one id, or "cycle"),
added latency, an HTTP error status, or a hang (to exercise client timeouts). To serve the stand-in as a process
(the demo), use the real shim: `twiwatch reasoner serve --standin` (serve.py).
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from engine.reasoner.wire import CHAT_PATH, parse_chat_request

STANDIN_MODEL = "twiwatch-standin-NOT-ECG-R1 (replays hand-written fixture outputs; no model ran)"
OUTPUTS_PATH = Path(__file__).with_name("standin_outputs.json")
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # the project's one size limit (GUIDE §10)


def load_outputs(path: Path = OUTPUTS_PATH) -> dict[str, dict[str, Any]]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return {o["id"]: o for o in doc["outputs"]}


def estimate_tokens(text: str) -> int:
    """A rough token count for replayed text (no tokenizer runs); labelled as an estimate wherever it is shown."""
    return max(1, round(len(text.split()) * 1.3))


@dataclass(frozen=True)
class Replayed:
    output_id: str
    text: str
    completion_tokens: int  # estimated (estimate_tokens)
    finish_reason: str


class Replay:
    """The stand-in's one replay of standin_outputs.json: one output by id, or "cycle" through all in file order.
    Thread-safe. Shared by StandinServer and the serving shim's StandinGenerator (serve.py)."""

    def __init__(self, path: Path = OUTPUTS_PATH) -> None:
        self.outputs = load_outputs(path)
        self._cycle = itertools.cycle(list(self.outputs))
        self._lock = threading.Lock()

    def check(self, output: str) -> None:
        if output != "cycle" and output not in self.outputs:
            raise ValueError(f"no stand-in output {output!r}; have {', '.join(self.outputs)}")

    def next(self, output: str = "cycle", *, max_tokens: int | None = None) -> Replayed:
        """The next output. With max_tokens, a longer output is cut to fit and ends with finish_reason "length",
        as a real server's would."""
        with self._lock:
            out = self.outputs[next(self._cycle) if output == "cycle" else output]
        text, tokens, finish = out["text"], estimate_tokens(out["text"]), out.get("finish_reason", "stop")
        if max_tokens is not None and tokens > max_tokens:
            text = " ".join(text.split()[: max(1, int(max_tokens / 1.3))])
            tokens, finish = min(max_tokens, estimate_tokens(text)), "length"
        return Replayed(out["id"], text, tokens, finish)


@dataclass(frozen=True)
class Behaviour:
    output: str = "cycle"  # an output id, or "cycle" through all of them in file order
    status: int = 200  # anything else: answer with this HTTP status and an OpenAI-style error body
    latency_s: float = 0.0
    hang_s: float = 0.0  # wait this long before doing anything (longer than a client's timeout: a hang)


@dataclass
class SeenRequest:
    """What the stand-in received, for tests: the decoded signal and the prompt with `<ecg>` where it stood."""
    ecg: np.ndarray | None
    prompt: str | None
    system: str | None
    temperature: Any
    max_tokens: Any
    model: Any
    error: str | None = None


class StandinServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, outputs_path: Path = OUTPUTS_PATH,
                 behaviour: Behaviour | None = None) -> None:
        self.replay = Replay(outputs_path)
        self.outputs = self.replay.outputs
        self._behaviour = behaviour or Behaviour()
        self._check(self._behaviour)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[SeenRequest] = []
        self._httpd = _QuietServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set(self, **changes: Any) -> None:
        """Change behaviour while running: set(output="rbbb"), set(status=500), set(hang_s=30), ..."""
        new = replace(self._behaviour, **changes)
        self._check(new)
        with self._lock:
            self._behaviour = new

    def _check(self, b: Behaviour) -> None:
        self.replay.check(b.output)

    def start(self) -> "StandinServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="standin-ecg-r1", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StandinServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> bool:
        """Sleep that ends early when the server stops; True if stopped."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the timeout tests) resets the connection; that is expected, not an error.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler_for(server: StandinServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "twiwatch-standin"

        def log_message(self, fmt: str, *args: Any) -> None:  # tests and demo output stay quiet
            return

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test): nothing to do
            self.close_connection = True

        def _error(self, status: int, message: str) -> None:
            kind = "BadRequestError" if status < 500 else "InternalServerError"
            self._send(status, {"error": {"message": message, "type": kind, "code": status},
                                "object": "error", "model": STANDIN_MODEL})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok", "model": STANDIN_MODEL})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": STANDIN_MODEL, "object": "model",
                                                             "owned_by": "twiwatch stand-in"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            self.close_connection = True  # one request per connection: an early return leaves no unread body behind
            b = server.behaviour
            if server.wait(b.hang_s):
                return
            if self.path.rstrip("/") != CHAT_PATH:
                return self._error(404, f"no route {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_REQUEST_BYTES:
                return self._error(413 if length else 411, f"request body of {length} bytes")
            try:
                payload = json.loads(self.rfile.read(length))
                seen = _read_request(payload)
            except ValueError as exc:
                server.requests.append(SeenRequest(None, None, None, None, None, None, error=str(exc)))
                return self._error(400, str(exc))
            server.requests.append(seen)
            if server.wait(b.latency_s):
                return
            if b.status != 200:
                return self._error(b.status, f"stand-in configured to fail with HTTP {b.status}")
            out = server.replay.next(b.output)
            completion = out.completion_tokens  # a rough token count, labelled as such below
            self._send(200, {
                "id": f"chatcmpl-standin-{len(server.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": STANDIN_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                             "finish_reason": out.finish_reason}],
                "usage": {"prompt_tokens": 101 + 64, "completion_tokens": completion,
                          "total_tokens": 165 + completion},
                "standin": {"output_id": out.output_id, "note": "replayed fixture; token counts estimated"},
            })

    return Handler


def _read_request(payload: Any) -> SeenRequest:
    """Check a chat request as the serving shim does (wire.parse_chat_request); ValueError says what is wrong."""
    req = parse_chat_request(payload)
    return SeenRequest(req.ecg, req.prompt, req.system_prompt, req.temperature, req.max_tokens, req.model)
