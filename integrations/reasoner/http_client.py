"""ECG-R1 over HTTP: POST /v1/chat/completions to an OpenAI-compatible server (wire format in wire.py).

Two transports share the request and response handling: `reason` uses http.client with one deadline for the
whole exchange (the socket timeout is reset to the time left before every read, so a server that trickles
bytes cannot stretch it); `areason` uses aiohttp (already a dependency of the worker) so an asyncio caller
never parks a thread. When the deadline passes the connection is closed; vLLM aborts a request whose client
has gone, so the GPU is not kept busy for an answer nobody waits for.
Every failure becomes ReasonerUnavailable (codes: unreachable, timeout, http-<status>, bad-response).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from engine.reasoner.base import RawReasoning, Reasoner, check_ecg_array, check_timeout
from engine.reasoner.errors import ReasonerTimeout, ReasonerUnavailable
from engine.reasoner.prompt import ECGR1_MAX_TOKENS, ECGR1_SYSTEM_PROMPT
from integrations.reasoner.wire import CHAT_PATH, build_chat_request, error_message, read_chat_response

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # 2048 tokens of text is ~10 KB; anything near this is not an answer


class HttpReasoner(Reasoner):
    def __init__(self, base_url: str, *, model: str = "ECG-R1-8B-RL", api_key: str | None = None,
                 model_version: str | None = None, system_prompt: str | None = ECGR1_SYSTEM_PROMPT,
                 max_tokens: int = ECGR1_MAX_TOKENS, connect_timeout_s: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        # A base URL may or may not end in /v1 (OpenAI clients use both spellings).
        prefix = parts.path.rstrip("/")
        self._path = (prefix[:-3] if prefix.endswith("/v1") else prefix) + CHAT_PATH
        self.model = model
        self.model_version = model_version
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.connect_timeout_s = connect_timeout_s
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def _body(self, ecg: np.ndarray, prompt: str) -> bytes:
        payload = build_chat_request(check_ecg_array(ecg), prompt, model=self.model,
                                     system_prompt=self.system_prompt, max_tokens=self.max_tokens)
        return json.dumps(payload).encode("utf-8")

    def _finish(self, status: int, body: bytes, started: float) -> RawReasoning:
        if status != 200:
            raise ReasonerUnavailable(f"{self.base_url} answered HTTP {status}: {error_message(body)}",
                                      f"http-{status}")
        text, model, tokens, finish = read_chat_response(body)
        return RawReasoning(text=text, model=model, latency_ms=round((time.monotonic() - started) * 1000, 1),
                            tokens=tokens, finish_reason=finish)

    def reason(self, ecg: np.ndarray, prompt: str, *, timeout_s: float) -> RawReasoning:
        timeout_s = check_timeout(timeout_s)
        body = self._body(ecg, prompt)
        started = time.monotonic()
        deadline = started + timeout_s

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError()
            return remaining

        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=min(self.connect_timeout_s, timeout_s))
        expired = threading.Event()
        watchdog: threading.Timer | None = None
        try:
            try:
                conn.connect()
            except TimeoutError:
                raise ReasonerUnavailable(f"{self.base_url} unreachable: connect timed out", "unreachable") from None
            # Keep our own reference: http.client drops conn.sock once a `Connection: close` response is read.
            sock = conn.sock
            # Socket timeouts bound each read, not the whole answer: a server that trickles a byte at a time
            # would never trip them. The watchdog shuts the socket at the deadline, whatever is being read.
            watchdog = threading.Timer(left(), _shut, (sock, expired))
            watchdog.daemon = True
            watchdog.start()
            sock.settimeout(left())
            conn.request("POST", self._path, body=body, headers=self._headers)
            sock.settimeout(left())
            resp = conn.getresponse()
            chunks, size = [], 0
            while True:
                sock.settimeout(left())
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ReasonerUnavailable(f"response over {MAX_RESPONSE_BYTES} bytes", "bad-response")
                chunks.append(chunk)
            if expired.is_set():
                raise TimeoutError()  # the body ended because the watchdog cut it
            return self._finish(resp.status, b"".join(chunks), started)
        except TimeoutError:
            raise ReasonerTimeout(f"no answer from {self.base_url} within {timeout_s:g} s") from None
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise ReasonerTimeout(f"no answer from {self.base_url} within {timeout_s:g} s") from None
            raise ReasonerUnavailable(f"{self.base_url} unreachable: {type(exc).__name__}: {exc}",
                                      "unreachable") from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()

    async def areason(self, ecg: np.ndarray, prompt: str, *, timeout_s: float) -> RawReasoning:
        import aiohttp

        timeout_s = check_timeout(timeout_s)
        body = self._body(ecg, prompt)
        started = time.monotonic()
        url = f"{self._scheme}://{self._host}" + (f":{self._port}" if self._port else "") + self._path
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(self.connect_timeout_s, timeout_s))
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, data=body, headers=self._headers) as resp:
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(65536):
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise ReasonerUnavailable(f"response over {MAX_RESPONSE_BYTES} bytes", "bad-response")
                        chunks.append(chunk)
                    return self._finish(resp.status, b"".join(chunks), started)
        except _connect_timeout(aiohttp):
            raise ReasonerUnavailable(f"{self.base_url} unreachable: connect timed out", "unreachable") from None
        except TimeoutError:  # aiohttp raises the asyncio flavour (an alias of TimeoutError on 3.11)
            raise ReasonerTimeout(f"no answer from {self.base_url} within {timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ReasonerUnavailable(f"{self.base_url} unreachable: {type(exc).__name__}: {exc}",
                                      "unreachable") from None


def _shut(sock: socket.socket, expired: threading.Event) -> None:
    expired.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the call finished as the deadline came


def _connect_timeout(aiohttp_module) -> tuple[type[BaseException], ...]:
    """aiohttp >= 3.10 tells a connect timeout apart (ConnectionTimeoutError); older versions do not."""
    cls = getattr(aiohttp_module, "ConnectionTimeoutError", None)
    return (cls,) if cls is not None else ()
