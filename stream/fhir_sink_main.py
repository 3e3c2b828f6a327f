"""`twiwatch fhir-sink`: every report version on the reports topic, written to an EHR's FHIR server.

Delivery rules (docs/SPEC.md §3.7, §10.3):
- Its own consumer group (kafka-python, manual commits). An offset is committed only when the report version it
  holds is on the FHIR server (or already was, or a newer version is), or when its delivery dead letter is on the
  broker (acks=all). Nothing is acknowledged that was not durably written; a SIGKILL redelivers what was in flight,
  and the write is idempotent (integrations/fhir/delivery.py reads our version on the server before writing).
- Order: a report's versions share a partition (the topic is keyed by report id) and are written one after another;
  different reports are written concurrently (`TWIWATCH_FHIR_SINK_CONCURRENCY` transactions, each carrying up to
  `TWIWATCH_FHIR_SINK_REPORTS_PER_TRANSACTION` reports when several wait; a refused one is retried alone). The
  server-side version check means an older version never overwrites a newer one, whatever the order of arrival.
- Faults: connection errors, timeouts, 5xx, 408, 429 (honouring Retry-After) and refused credentials open a circuit
  breaker (credentials: a 401 even with a fresh token that a probe confirms for any request, or a token endpoint
  refusing the client; counted in twiwatch_fhir_credentials_refused, said on /healthz and logged once per episode:
  dead-lettering would send every report to the dead-letter topic until someone fixes a registration): consumption
  pauses (the partitions are paused, the group membership kept), nothing is committed past the first undelivered
  offset of any partition, and the breaker half-opens after its pause (exponential, capped, or the
  server's Retry-After) to try again with one report. Only permanent refusals (other 4xx; an ambiguous subject; a
  message that is not a report; a 401 for one request whose fresh token the server accepts elsewhere) go to the
  delivery dead-letter topic, with the server's OperationOutcome.
- At start the server's CapabilityStatement is read: a FHIR version the configured one cannot be written to (or no
  transaction support) stops the sink (exit 78); an unreachable server is retried like an outage.
- /healthz and /metrics (outcomes, latency, breaker state). Logs name report identifiers (hashes of the source),
  never patients.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from integrations.fhir.auth import SmartBackendAuth, StaticBearer
from integrations.fhir.client import CredentialsRefused, FhirClient, FhirError, PermanentError, TransientError
from integrations.fhir.delivery import Delivered, InvalidReport, ReportWriter
from stream.config import FhirSinkSettings
from stream.deadletter import PREFIX, deadletter_record
from stream.delivery import one_line
from stream.producer import make_producer
from stream.topics import HEADROOM, delivery_topic_specs, ensure_topics

log = logging.getLogger("twiwatch.fhir_sink")

EXIT_CONFIG = 78  # EX_CONFIG: the server cannot take what we write; restarting will not help
OUTCOME_MAX_BYTES = 64 * 1024

DELIVERIES = Counter("twiwatch_fhir_deliveries_total", "report versions handled by the FHIR sink", ["outcome"])
DELIVERY_SECONDS = Histogram("twiwatch_fhir_delivery_seconds",
                             "time to write one report version (read + transaction, shared with the reports written "
                             "in the same transaction)",
                             buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10))
REPORT_TO_SERVER_SECONDS = Histogram(
    "twiwatch_fhir_report_to_server_seconds", "report's broker timestamp to the server's confirmation",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 120))
FAILURES = Counter("twiwatch_fhir_transient_failures_total", "transient failures (breaker events)", ["status"])
BREAKER_STATE = Gauge("twiwatch_fhir_breaker_state", "circuit breaker: 0 closed, 1 half-open, 2 open")
ENTERED_IN_ERROR = Counter("twiwatch_fhir_observations_entered_in_error_total",
                           "Observations a later report version dropped, marked entered-in-error")
CREDENTIALS_REFUSED = Gauge("twiwatch_fhir_credentials_refused",
                            "1 while the FHIR server or the token endpoint refuses the sink's credentials (paused)")
SUBJECTS = Counter("twiwatch_fhir_subjects_total", "how report subjects were written", ["how"])


class SinkConfigError(RuntimeError):
    """The configuration or the server cannot work (exit 78, not retried)."""


# --- the circuit breaker ---

class Breaker:
    """closed → (transient failure) → open for a pause → half-open (one trial) → closed on success, open again with a
    longer pause on failure. The pause doubles from `initial_s` up to `max_s`; a server's Retry-After (up to
    `retry_after_max_s`) lengthens it."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 5.0, retry_after_max_s: float = 300.0,
                 clock=time.monotonic):
        self.initial_s, self.max_s, self.retry_after_max_s = initial_s, max_s, retry_after_max_s
        self._clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.opened_at: float | None = None
        BREAKER_STATE.set(0)

    @property
    def state(self) -> str:
        if self.failures == 0:
            return "closed"
        return "open" if self._clock() < self.open_until else "half-open"

    def wait_s(self) -> float:
        return max(0.0, self.open_until - self._clock()) if self.failures else 0.0

    def failure(self, retry_after_s: float | None = None) -> float:
        self.failures += 1
        pause = min(self.max_s, self.initial_s * 2 ** (self.failures - 1))
        if retry_after_s is not None:
            pause = max(pause, min(retry_after_s, self.retry_after_max_s))
        now = self._clock()
        self.open_until = now + pause
        if self.opened_at is None:
            self.opened_at = now
        BREAKER_STATE.set(2)
        return pause

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.opened_at = None
        BREAKER_STATE.set(0)


# --- settings → client ---

def build_client(s: FhirSinkSettings) -> FhirClient:
    if not s.fhir_sink_url:
        raise SinkConfigError("TWIWATCH_FHIR_SINK_URL is not set (the FHIR server's base URL)")
    verify: bool | str = True
    if s.fhir_sink_ca_file:
        verify = s.fhir_sink_ca_file
    if not s.fhir_sink_tls_verify:
        verify = False
        log.warning("TLS verification is OFF (TWIWATCH_FHIR_SINK_TLS_VERIFY=false): development only")
    auth = None
    if s.fhir_sink_auth == "bearer":
        auth = StaticBearer(s.fhir_sink_bearer_token.get_secret_value())
    elif s.fhir_sink_auth == "smart":
        missing = [n for n, v in (("TWIWATCH_FHIR_SINK_SMART_CLIENT_ID", s.fhir_sink_smart_client_id),
                                  ("TWIWATCH_FHIR_SINK_SMART_KEY_FILE", s.fhir_sink_smart_key_file),
                                  ("TWIWATCH_FHIR_SINK_SMART_KEY_ID", s.fhir_sink_smart_key_id)) if not v]
        if missing:
            raise SinkConfigError(f"SMART Backend Services needs {', '.join(missing)}")
        auth = SmartBackendAuth.from_key_file(
            s.fhir_sink_smart_key_file, client_id=s.fhir_sink_smart_client_id, key_id=s.fhir_sink_smart_key_id,
            fhir_base_url=s.fhir_sink_url, token_url=s.fhir_sink_smart_token_url, algorithm=s.fhir_sink_smart_alg,
            scope=s.fhir_sink_smart_scope, verify=verify, timeout_s=s.fhir_sink_timeout_s)
    if s.fhir_sink_url.startswith("http://") and auth is not None:
        log.warning("credentials are sent to %s over plain HTTP", s.fhir_sink_url)
    return FhirClient(s.fhir_sink_url, auth=auth, timeout_s=s.fhir_sink_timeout_s, verify=verify,
                      max_connections=s.fhir_sink_concurrency + 2)


WRITABLE = {"R4B": ("4.0.", "4.3."), "R5": ("5.0.",)}  # what each configured version can be written to


def check_capabilities(client: FhirClient, fhir_version: str) -> str:
    """Raise SinkConfigError when the server cannot take what we write; TransientError when it does not answer."""
    caps = client.capabilities()
    if not caps.fhir_version.startswith(WRITABLE[fhir_version]):
        raise SinkConfigError(f"the FHIR server speaks FHIR {caps.fhir_version or '?'}; twiwatch writes "
                              f"{fhir_version} resources, which go only to FHIR {' or '.join(WRITABLE[fhir_version])}x")
    if not caps.transaction:
        raise SinkConfigError("the FHIR server's CapabilityStatement offers no transaction interaction")
    return f"{caps.software}, FHIR {caps.fhir_version}"


# --- one message ---

@dataclass
class Result:
    record: Any
    status: str  # "done" | "transient"
    error: TransientError | None = None


def _outcome_header(exc: FhirError) -> list[tuple[str, bytes]]:
    headers = []
    if exc.status is not None:
        headers.append((PREFIX + "http.status", str(exc.status).encode()))
    if exc.outcome is not None:
        raw = json.dumps(exc.outcome, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers.append((PREFIX + "operation-outcome", raw[:OUTCOME_MAX_BYTES]))
    return headers


class FhirSink:
    def __init__(self, s: FhirSinkSettings, client: FhirClient | None = None):
        self.s = s
        self.client = client or build_client(s)
        self.writer = ReportWriter(self.client, create_patients=s.fhir_sink_create_patients)
        self.breaker = Breaker(s.fhir_sink_retry_initial_s, s.fhir_sink_retry_max_s, s.fhir_sink_retry_after_max_s)
        self.stop = threading.Event()
        self.ready = False
        self.server_line = ""
        self.last_delivery: float | None = None
        self.counts: dict[str, int] = defaultdict(int)
        self.credentials_refused: str | None = None  # why, while refused (no token, no key: statuses and codes)
        # Offsets written but not committable yet (an earlier offset of their partition is not written): when a rewind
        # brings them back they count as done without a request to the server.
        self._done: dict[TopicPartition, set[int]] = defaultdict(set)
        self._pool = ThreadPoolExecutor(s.fhir_sink_concurrency, thread_name_prefix="fhir-sink")
        self._producer = None
        self._consumer: KafkaConsumer | None = None

    # --- lifecycle ---

    def wait_for_server(self) -> None:
        while not self.stop.is_set():
            try:
                self.server_line = check_capabilities(self.client, self.s.fhir_version)
                self.breaker.success()
                log.info("FHIR server: %s at %s", self.server_line, self.s.fhir_sink_url)
                return
            except TransientError as exc:
                pause = self.breaker.failure(exc.retry_after_s)
                log.warning("FHIR server not answering (%s); trying again in %.1f s", one_line(exc), pause)
                self.stop.wait(pause)
            except PermanentError as exc:
                raise SinkConfigError(f"the FHIR server refused GET metadata ({one_line(exc)})") from exc

    def _make_consumer(self) -> KafkaConsumer:
        s = self.s
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=s.fhir_sink_group_id, client_id="twiwatch-fhir-sink",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            max_partition_fetch_bytes=s.max_message_bytes + HEADROOM, fetch_max_bytes=s.max_message_bytes + HEADROOM,
            session_timeout_ms=int(s.fhir_sink_session_timeout_s * 1000),
            heartbeat_interval_ms=max(1000, int(s.fhir_sink_session_timeout_s * 1000) // 3),
            max_poll_interval_ms=300_000,
        )
        consumer.subscribe([s.topic_reports])
        return consumer

    def run(self) -> None:
        """Until stop: the capability check, then consume → write → commit."""
        self.wait_for_server()
        if self.stop.is_set():
            return
        ensure_topics(self.s, delivery_topic_specs(self.s))
        self._producer = make_producer(self.s, client_id="twiwatch-fhir-sink-dlq")
        self._consumer = self._make_consumer()
        self.ready = True
        log.info("consuming %s as group %s → %s", self.s.topic_reports, self.s.fhir_sink_group_id,
                 self.s.fhir_sink_url)
        try:
            while not self.stop.is_set():
                wait = self.breaker.wait_s()
                if wait > 0:
                    self._paused(wait)
                    continue
                half_open = self.breaker.state == "half-open"
                most = self.s.fhir_sink_concurrency * max(4, self.s.fhir_sink_reports_per_transaction)
                batch = self._consumer.poll(timeout_ms=500, max_records=1 if half_open else most)
                if batch:
                    self._process(batch)
        finally:
            self.ready = False
            self._consumer.close(autocommit=False)
            self._producer.flush(10)
            self._producer.close(10)
            self._pool.shutdown(wait=True)
            self.client.close()

    def _paused(self, wait: float) -> None:
        """Keep the group membership (poll) without taking records while the breaker is open."""
        consumer = self._consumer
        assigned = consumer.assignment()
        if assigned:
            consumer.pause(*assigned)
        deadline = time.monotonic() + wait
        while not self.stop.is_set() and time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=int(min(0.5, max(0.01, deadline - time.monotonic())) * 1000))
            for tp, records in got.items():  # a partition assigned during the pause: give its records back
                consumer.seek(tp, records[0].offset)
            newly = consumer.assignment() - consumer.paused()
            if newly:
                consumer.pause(*newly)
        resume = consumer.paused()
        if resume:
            consumer.resume(*resume)

    # --- a batch ---

    def _process(self, batch: dict[TopicPartition, list]) -> None:
        """Write a polled batch: one lane per report (its versions in offset order), taken in rounds — each round
        writes the next version of every lane still going, concurrently (several reports to a transaction when more
        wait than there are writers). A lane stops at its first version that is not done (later ones wait for it)."""
        lanes: dict[tuple, list] = defaultdict(list)
        results: list[Result] = []
        for tp, records in batch.items():
            for record in records:  # one report's versions stay in offset order on one lane
                if record.offset in self._done[tp]:  # written before a rewind brought it back
                    results.append(Result(record, "done"))
                else:
                    lanes[(tp, record.key)].append(record)
        for tp in set(self._done) - self._consumer.assignment():
            del self._done[tp]  # another consumer has that partition now
        if not lanes:
            self._settle(batch, results, asked_server=False)
            return
        queues = list(lanes.values())
        stopped: set[int] = set()
        for turn in range(max(len(q) for q in queues)):
            going = [(n, q[turn]) for n, q in enumerate(queues) if len(q) > turn and n not in stopped]
            done: dict[int, Result] = {}
            groups = _groups([r for _, r in going], self.s.fhir_sink_reports_per_transaction,
                             self.s.fhir_sink_concurrency)
            for group in self._pool.map(self._group, groups):
                done.update((id(r.record), r) for r in group)
            for n, record in going:
                result = done[id(record)]
                results.append(result)
                if result.status != "done":
                    stopped.add(n)
                    results.extend(Result(r, "skipped") for r in queues[n][turn + 1:])
        self._settle(batch, results)

    def _group(self, records: list) -> list[Result]:
        """Different reports' versions, written together (ReportWriter.deliver_many)."""
        started = time.monotonic()
        out, todo = [], []
        for record in records:
            try:
                todo.append((record, json.loads(record.value)))
            except (ValueError, UnicodeDecodeError, TypeError):
                out.append(self._refused(record, InvalidReport("the message is not JSON")))
        outcomes = self.writer.deliver_many([bundle for _, bundle in todo]) if todo else []
        elapsed = time.monotonic() - started
        for (record, _), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, Delivered):
                DELIVERY_SECONDS.observe(elapsed)
                self._delivered(record, outcome)
                out.append(Result(record, "done"))
            elif isinstance(outcome, TransientError):
                refused = isinstance(outcome, CredentialsRefused)
                FAILURES.labels("credentials" if refused else str(outcome.status or "network")).inc()
                out.append(Result(record, "transient", outcome))
            else:
                out.append(self._refused(record, outcome))
        return out

    def _refused(self, record, exc: Exception) -> Result:
        """A permanent refusal: done once its dead letter is on the broker."""
        try:
            self._deadletter(record, exc)
        except Exception as dlq_exc:  # noqa: BLE001 - the dead letter is not durable: do not commit
            log.error("delivery dead letter not written (%s); will retry", one_line(dlq_exc))
            return Result(record, "transient", TransientError("dead-letter topic unavailable"))
        DELIVERIES.labels("deadletter").inc()
        self.counts["deadletter"] += 1
        return Result(record, "done")

    def _delivered(self, record, d: Delivered) -> None:
        DELIVERIES.labels(d.outcome).inc()
        self.counts[d.outcome] += 1
        SUBJECTS.labels(d.subject).inc()
        if d.entered_in_error:
            ENTERED_IN_ERROR.inc(d.entered_in_error)
        self.last_delivery = time.time()
        if d.outcome == "written" and record.timestamp and record.timestamp > 0:
            REPORT_TO_SERVER_SECONDS.observe(max(0.0, time.time() - record.timestamp / 1000))
        log.info("report %s v%d: %s (%s, attempt %d%s)", d.identifier, d.version, d.outcome, d.server_id,
                 d.attempts, f", {d.entered_in_error} Observation(s) entered-in-error" if d.entered_in_error else "")

    def _deadletter(self, record, exc: Exception) -> None:
        if isinstance(exc, InvalidReport):
            code, reason = "invalid-report", str(exc)
        else:
            assert isinstance(exc, PermanentError)
            code = f"http-{exc.status}" if exc.status else type(exc).__name__
            issues = ",".join(exc.issue_codes())
            reason = f"{exc} [{issues}]" if issues else str(exc)
        value, headers = deadletter_record(
            record.value or b"", reason=reason, error_class="fhir-delivery", code=code, source_topic=record.topic,
            partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp,
            max_message_bytes=self.s.max_message_bytes)
        if isinstance(exc, FhirError):
            headers += _outcome_header(exc)
        self._producer.send(self.s.topic_delivery_deadletter, value=value, key=record.key,
                            headers=headers).get(timeout=30)
        log.warning("report at %s/%d@%d refused for good (%s): dead letter written", record.topic, record.partition,
                    record.offset, code)

    def _settle(self, batch: dict[TopicPartition, list], results: list[Result], asked_server: bool = True) -> None:
        """Commit each partition up to its first undelivered offset; rewind to it, remembering the versions past it
        that are written (they come back after the rewind and are not written again); feed the breaker."""
        status = {(r.record.topic, r.record.partition, r.record.offset): r for r in results}
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        rewinds: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            upto = None
            for record in records:
                if status[(tp.topic, tp.partition, record.offset)].status != "done":
                    rewinds.setdefault(tp, record.offset)
                elif tp in rewinds:
                    self._done[tp].add(record.offset)
                else:
                    upto = record.offset + 1
            if upto is not None:
                commits[tp] = OffsetAndMetadata(upto, "", -1)
                self._done[tp] = {o for o in self._done[tp] if o >= upto}
        if commits:
            self._consumer.commit(commits)
        for tp, offset in rewinds.items():
            self._consumer.seek(tp, offset)
        failures = [r.error for r in results if r.status == "transient"]
        self._credentials([e for e in failures if isinstance(e, CredentialsRefused)], asked_server)
        if failures:
            retry_after = max((e.retry_after_s for e in failures if e and e.retry_after_s is not None), default=None)
            pause = self.breaker.failure(retry_after)
            first = failures[0]
            log.warning("FHIR server unavailable (%s; %d report version(s) waiting); breaker open for %.1f s",
                        one_line(first) if first else "?", len(failures), pause)
        elif results and asked_server:
            if self.breaker.failures:
                log.info("FHIR server answering again; breaker closed")
            self.breaker.success()

    def _credentials(self, refused: list[CredentialsRefused], answered: bool) -> None:
        """Say loudly, once per episode, that delivery waits for someone to fix the credentials."""
        if refused:
            if self.credentials_refused is None:
                log.error("credentials refused (%s): delivery paused, nothing dead-lettered; check the client's "
                          "registration, key, scopes or token at the FHIR server and its token endpoint",
                          one_line(refused[0]))
            self.credentials_refused = one_line(refused[0])
            CREDENTIALS_REFUSED.set(1)
        elif answered and self.credentials_refused is not None:
            log.info("credentials accepted again; delivering")
            self.credentials_refused = None
            CREDENTIALS_REFUSED.set(0)

    # --- health ---

    def health(self) -> tuple[int, dict]:
        body = {"app": self.s.fhir_sink_group_id, "ready": self.ready, "breaker": self.breaker.state,
                "server": self.server_line, "counts": dict(self.counts), "last_delivery": self.last_delivery,
                "credentials": "refused: " + self.credentials_refused if self.credentials_refused else "accepted"}
        return (200 if self.ready else 503), body


def _groups(records: list, per_group: int, lanes: int) -> list[list]:
    """One record per group while there are no more than `lanes` (each written at once, the lowest latency); beyond
    that, as many groups as lanes, of even sizes up to `per_group` (a backlog: less work and fewer round trips for
    the server), then more groups."""
    if not records:
        return []
    n = min(len(records), max(lanes, -(-len(records) // per_group)))
    return [records[i::n] for i in range(n)]


def serve_http(sink: FhirSink, bind: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.startswith("/healthz"):
                code, body = sink.health()
                data, ctype = json.dumps(body).encode(), "application/json"
            elif self.path.startswith("/metrics"):
                code, data, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST
            else:
                code, data, ctype = 404, b"not found\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # no access log
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="fhir-sink-http", daemon=True).start()
    return server


def run_sink(s: FhirSinkSettings) -> None:
    """The CLI entry: settings in, a running sink until SIGINT/SIGTERM; exit 78 on a configuration it cannot use."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        sink = FhirSink(s)
    except (SinkConfigError, ValueError, OSError) as exc:
        log.critical("FHIR sink not started: %s", one_line(exc))
        sys.exit(EXIT_CONFIG)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sink.stop.set())
    http = serve_http(sink, s.fhir_sink_web_bind, s.fhir_sink_web_port)
    log.info("FHIR sink health and metrics on %s:%d", s.fhir_sink_web_bind, http.server_address[1])
    try:
        sink.run()
    except SinkConfigError as exc:
        log.critical("FHIR sink stopped: %s", exc)
        sys.exit(EXIT_CONFIG)
    finally:
        http.shutdown()
