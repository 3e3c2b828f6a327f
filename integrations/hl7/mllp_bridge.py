"""The asyncio MLLP → Kafka bridge, the network half of MLLP (framing: `mllp_framing`; docs/SPEC.md §2, §10).

The bridge answers AA only after the produce callback confirmed the original bytes are durably in Kafka
(the caller's producer uses acks=all). Everything it refuses goes to the dead-letter callback first:
AR for what it refuses outright (over the size limit, not HL7, unreadable MSH, unsupported type, broker down),
AE for content the decoder cannot use. Frames are read in bounded memory: an oversized frame is hashed and
discarded as it streams in, keeping only its first 1 MiB for the dead letter.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine.errors import InvalidRecord
from engine.record import EcgRecord
from integrations.chunk import Chunk
from integrations.decode import decode_message
from integrations.errors import DecodeError
from integrations.hl7.ack import make_ack
from integrations.hl7.decode import parse_header
from integrations.hl7.mllp_framing import DEFAULT_MAX_MESSAGE_BYTES, Frame, FrameReader, Oversize, frame
from integrations.senders import NO_RULES

log = logging.getLogger("twiwatch.mllp")

_READ_CHUNK = 64 * 1024


class DeadLetterFn(Protocol):
    def __call__(self, raw: bytes, reason: str, error_class: str, *, code: str,
                 original_size: int, original_sha256: str) -> Any: ...


ProduceFn = Callable[[bytes, "bytes | None"], Any]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter("twiwatch_mllp_messages_received", "MLLP frames received", registry=registry)
        self.acks = Counter("twiwatch_mllp_acks", "ACKs sent, by MSA-1 code", ["code"], registry=registry)
        self.rejects = Counter("twiwatch_mllp_rejects", "NAKs by decoder code", ["code"], registry=registry)
        self.latency = Histogram(
            "twiwatch_mllp_ack_latency_seconds", "frame received → ACK written", registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.connections = Gauge("twiwatch_mllp_connections", "open MLLP connections", registry=registry)
        self.bytes = Counter("twiwatch_mllp_bytes_received", "bytes inside MLLP frames", registry=registry)


class MllpBridge:
    """MLLP server that writes valid ORU^R01 messages, byte for byte, to Kafka before it ACKs them.

    produce(raw, key): writes `raw` with `key` to the raw topic and returns once durable — either a plain
        callable (run in the worker pool; may return a concurrent/kafka-python future, which is then waited on)
        or an async function. Raising (or a failed future) means "not durable": the sender gets AR.
    deadletter(raw, reason, error_class, *, code, original_size, original_sha256): records a refused message
        (raw is the first 1 MiB when over the limit). Same calling rules as produce. If it fails, the sender gets
        AR (retry later) rather than an AE whose reason nobody could read back.
    key_for(decoded): Kafka key for a decoded strip (a keyed hash of the patient id, never the id itself) or monitor
        chunk (a keyed hash of its stream, so a bed's chunks stay in order).
    decode(raw): the check before the ACK; the default takes ORU^R01 strips with no sender rules (the process passes
        `integrations.decode.decode_message` with the site's rules, which also routes PCD-01 chunks and ORU^W01).
    web_port: HTTP port for /healthz and /metrics (0 = any free port, None = no HTTP).
    """

    def __init__(
        self,
        host: str,
        port: int,
        produce: ProduceFn,
        deadletter: DeadLetterFn,
        key_for: Callable[[EcgRecord | Chunk], bytes],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        decode: Callable[[bytes], EcgRecord | Chunk] | None = None,
        produce_timeout_s: float = 30.0,
        web_host: str | None = None,
        web_port: int | None = None,
        workers: int | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.host, self._port = host, port
        self._produce, self._deadletter, self._key_for = produce, deadletter, key_for
        self.max_message_bytes = max_message_bytes
        self._decode = decode or partial(decode_message, fmt="hl7", rules=NO_RULES)
        self.produce_timeout_s = produce_timeout_s
        self.web_host, self._web_port = web_host or host, web_port
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mllp")
        self._server: asyncio.base_events.Server | None = None
        self._runner: Any = None
        self._conns: set[asyncio.Task] = set()
        self.last_broker_error: float | None = None

    # --- lifecycle ---
    @property
    def port(self) -> int:
        """The bound MLLP port (the real one when started with port 0)."""
        return self._port

    @property
    def web_port(self) -> int | None:
        return self._web_port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        if self._web_port is not None:
            await self._start_web()
        log.info("MLLP bridge listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # --- connections ---
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.metrics.connections.inc()
        frames = FrameReader(self.max_message_bytes)
        try:
            while True:
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    break
                # One connection's messages are handled strictly in order; reading pauses meanwhile (back-pressure).
                abandoned = frames.abandoned
                events = frames.feed(chunk)
                if frames.abandoned > abandoned:
                    log.warning("%d partial MLLP frame(s) cut off by a new start byte were dropped (the sender got "
                                "no ACK for them)", frames.abandoned - abandoned)
                for event in events:
                    started = time.perf_counter()
                    ack, code = await self.handle(event)
                    writer.write(frame(ack))
                    await writer.drain()
                    self.metrics.acks.labels(code).inc()
                    self.metrics.latency.observe(time.perf_counter() - started)
            if frames.in_frame:
                log.warning("connection closed inside an MLLP frame; the partial message is dropped "
                            "(sender got no ACK)")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.metrics.connections.dec()
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, event: Frame | Oversize) -> tuple[bytes, str]:
        """The ACK bytes (unframed) and MSA-1 code for one received frame."""
        self.metrics.received.inc()
        if isinstance(event, Oversize):
            self.metrics.bytes.inc(event.size)
            header = _header_or_none(event.prefix)
            error = DecodeError(
                f"message too large: {event.size} bytes exceeds the {self.max_message_bytes}-byte limit",
                "too-large", "AR")
            return await self._reject(event.prefix, header, error, event.size, event.sha256)
        raw = event.payload
        self.metrics.bytes.inc(len(raw))
        header = _header_or_none(raw)
        try:
            record = await asyncio.get_running_loop().run_in_executor(self._pool, self._decode, raw)
        except DecodeError as e:
            return await self._reject(raw, header, e)
        except InvalidRecord as e:
            return await self._reject(raw, header, DecodeError(e.reason, e.code, "AE"))
        except Exception:
            log.exception("decoder failed unexpectedly")
            return await self._reject(raw, header, DecodeError("internal error while decoding", "internal", "AE"))
        try:
            key = self._key_for(record)
            await asyncio.wait_for(self._call(self._produce, raw, key), self.produce_timeout_s)
        except Exception as e:
            self.last_broker_error = time.time()
            reason = _broker_reason(e)
            log.warning("produce failed, answering AR: %s", reason)
            self.metrics.rejects.labels("broker").inc()
            return make_ack(header, "AR", reason, error_code=207), "AR"
        return make_ack(header, "AA"), "AA"

    async def _reject(self, raw: bytes, header: dict | None, error: DecodeError,
                      size: int | None = None, sha256: str | None = None) -> tuple[bytes, str]:
        self.metrics.rejects.labels(error.code).inc()
        try:
            await asyncio.wait_for(
                self._call(self._deadletter, raw, error.reason, type(error).__name__, code=error.code,
                           original_size=size if size is not None else len(raw),
                           original_sha256=sha256 or hashlib.sha256(raw).hexdigest()),
                self.produce_timeout_s,
            )
        except Exception as e:
            self.last_broker_error = time.time()
            reason = _broker_reason(e, f"refused ({error.code}) but could not be dead-lettered")
            log.warning("dead-letter write failed, answering AR: %s", reason)
            return make_ack(header, "AR", reason, error_code=207), "AR"
        log.info("refused message (%s %s): %s", error.ack_code, error.code, error.reason)
        return make_ack(header, error.ack_code, error.reason, decode_code=error.code), error.ack_code

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a caller callback without blocking the loop, then wait for whatever future it returned."""
        loop = asyncio.get_running_loop()
        if inspect.iscoroutinefunction(fn):
            result = await fn(*args, **kwargs)
        else:
            result = await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))
        return await _settle(result, loop, self._pool, self.produce_timeout_s)

    # --- HTTP: /healthz, /metrics ---
    async def _start_web(self) -> None:
        from aiohttp import web

        async def healthz(_request: web.Request) -> web.Response:
            serving = self._server is not None and self._server.is_serving()
            recent = self.last_broker_error is not None and time.time() - self.last_broker_error < 60
            body = {"status": "ok" if serving else "down", "listening": serving,
                    "mllp_port": self.port, "broker_error_last_60s": recent}
            return web.json_response(body, status=200 if serving else 503)

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.web_host, self._web_port).start()
        self._web_port = self._runner.addresses[0][1]


async def _settle(result: Any, loop: asyncio.AbstractEventLoop, pool: concurrent.futures.Executor,
                  timeout_s: float) -> Any:
    if inspect.isawaitable(result):
        return await result
    if isinstance(result, concurrent.futures.Future):
        return await asyncio.wrap_future(result)
    # kafka-python's FutureRecordMetadata: .get(timeout) blocks until the broker acknowledged (or raises).
    if hasattr(result, "get") and hasattr(result, "add_errback"):
        return await loop.run_in_executor(pool, partial(result.get, timeout=timeout_s))
    return result


def _header_or_none(raw: bytes) -> dict | None:
    try:
        return parse_header(raw)
    except DecodeError:
        return None


def _broker_reason(e: BaseException, what: str = "") -> str:
    """'broker unavailable: [what: ]cause' — the first 80 characters land in MSA-3, so the cause comes last."""
    head = "broker unavailable: " + (what + ": " if what else "")
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return head + "Kafka did not confirm the write in time"
    detail = " ".join(str(e).split())[:120]
    return head + type(e).__name__ + (f" ({detail})" if detail else "")


def run_mllp_bridge(
    host: str,
    port: int,
    produce: ProduceFn,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    deadletter: DeadLetterFn,
    key_for: Callable[[EcgRecord | Chunk], bytes],
    **options: Any,
) -> Awaitable[None]:
    """Coroutine that runs an MllpBridge until cancelled (options: see MllpBridge)."""
    bridge = MllpBridge(host, port, produce, deadletter, key_for, max_message_bytes=max_message_bytes, **options)
    return bridge.serve_forever()
