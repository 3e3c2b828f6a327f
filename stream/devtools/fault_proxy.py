"""A fault-injecting HTTP reverse proxy for a FHIR server on loopback (tests, the outage bench; never deployed).

Between the FHIR sink and a real server it passes requests through, or, as programmed:
- answers `status` (429, 503, …) with an OperationOutcome and an optional `Retry-After`, for the next N requests or
  for a period;
- drops the connection without an answer (the client sees a reset/EOF), for the next N requests or for a period —
  a server or network outage.

It logs every request (time, method, path, what it answered) so tests can check how the client behaved (e.g. that a
Retry-After was honoured). Toxiproxy covers TCP faults but cannot answer HTTP statuses (docs/SPEC.md §12).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


@dataclass
class Fault:
    kind: str  # "status" | "drop"
    status: int = 503
    retry_after: str | None = None
    remaining: int | None = None  # requests left (None: until `until`)
    until: float | None = None  # time.monotonic() deadline (None: until `remaining` is spent)

    def active(self, now: float) -> bool:
        if self.remaining is not None:
            return self.remaining > 0
        return self.until is not None and now < self.until


@dataclass
class Seen:
    at: float  # time.time()
    method: str
    path: str
    answered: str  # "passed 200" | "fault 429" | "dropped"


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:8080 (scheme, host, port; the path passes through)
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        parts = urlsplit(self.upstream)
        self._up_host, self._up_port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- programming faults ---

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self.faults.append(Fault("status", status, retry_after, remaining=n))

    def fail_for(self, seconds: float, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self.faults.append(Fault("status", status, retry_after, until=time.monotonic() + seconds))

    def drop_next(self, n: int) -> None:
        with self._lock:
            self.faults.append(Fault("drop", remaining=n))

    def drop_for(self, seconds: float) -> None:
        with self._lock:
            self.faults.append(Fault("drop", until=time.monotonic() + seconds))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take(self) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self.faults = [f for f in self.faults if f.active(now)]
            if not self.faults:
                return None
            fault = self.faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def _note(self, method: str, path: str, answered: str) -> None:
        with self._lock:
            self.seen.append(Seen(time.time(), method, path, answered))

    # --- serving ---

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take()
                if fault is not None and fault.kind == "drop":
                    proxy._note(self.command, self.path, "dropped")
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault is not None:
                    outcome = json.dumps({"resourceType": "OperationOutcome", "issue": [{
                        "severity": "error", "code": "transient" if fault.status != 429 else "throttled",
                        "diagnostics": f"injected by the test proxy: HTTP {fault.status}"}]}).encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(outcome)))
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", fault.retry_after)
                    self.end_headers()
                    self.wfile.write(outcome)
                    proxy._note(self.command, self.path, f"fault {fault.status}")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    conn = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=60)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                except OSError:
                    proxy._note(self.command, self.path, "upstream down")
                    self.send_error(502, "upstream unavailable")
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                proxy._note(self.command, self.path, f"passed {resp.status}")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815 - http.server's naming

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
