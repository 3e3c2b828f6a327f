"""`twiwatch dashboard`: the review dashboard's process (docs/SPEC.md §13).

Three parts in one process, configured only by TWIWATCH_* variables (DashboardSettings):
- a Kafka consumer (kafka-python, group `TWIWATCH_DASHBOARD_GROUP`) of the reports and analysis topics into the store.
  Per message: the store's transaction commits, then the offset (nothing acknowledged before it is durably
  written; a redelivery is an upsert that changes nothing). A message the store cannot read goes to the dead-letter
  topic with the reason (stream/deadletter.py headers) and is then committed; the process never stops on input.
  When the store itself fails (database down), the message is retried from the same offset after a pause.
- the outbox publisher: reviewers' actions, stored with their outbox rows in one transaction, are sent to
  `TWIWATCH_TOPIC_ADJUDICATIONS` (acks=all) and only then marked sent.
- uvicorn serving the web app (integrations/dashboard/web) with /healthz and /metrics.
Logs name report identifiers (hashes of the source) and account ids, never patients.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import DBAPIError, OperationalError

from integrations.dashboard import store
from integrations.dashboard.web.app import create_app
from integrations.dashboard.web.config import WebConfig
from stream.config import DashboardSettings
from stream.deadletter import deadletter_record
from stream.delivery import one_line
from stream.producer import make_producer
from stream.topics import HEADROOM, TopicSpec, ensure_topics

log = logging.getLogger("twiwatch.dashboard")

INGESTED = Counter("twiwatch_dashboard_messages_total", "messages the dashboard consumed, by topic and outcome "
                   "(stored, duplicate, deadletter, retry)", ["topic", "outcome"])
PUBLISHED = Counter("twiwatch_dashboard_adjudications_published_total", "outbox rows sent to the adjudications topic")
COMMITS_REFUSED = Counter("twiwatch_dashboard_commits_refused_total", "offset commits refused by a rebalance (the "
                          "messages were stored; they may be redelivered, which changes nothing)")
CONSUMER_UP = Gauge("twiwatch_dashboard_consumer_up", "1 while the consumer polls and the store takes writes")
RETRY_PAUSE_S = (0.5, 5.0)  # first and longest pause before retrying a message the store could not take
POLL_STALE_S = 15.0


def store_url(s: DashboardSettings) -> str:
    return s.dashboard_db_url or store.default_url(s.dashboard_data_dir)


def dashboard_topic_specs(s: DashboardSettings) -> list[TopicSpec]:
    """What the dashboard writes to (it reads the worker's reports and analysis topics)."""
    return [TopicSpec(s.topic_adjudications, "reviewers' actions (docs/SPEC.md §13.3), keyed by report id, "
                      "pseudonymous reviewer; from the dashboard's outbox"),
            TopicSpec(s.topic_deadletter, "messages that failed, original bytes + reason headers")]


class StoreCounts:
    """Alerts by state and the outbox backlog, read from the store at scrape time."""

    def __init__(self, factory):
        self.factory = factory

    def describe(self):
        return []

    def collect(self):
        try:
            with self.factory() as s:
                pending = store.pending_count(s)
                alerts = store.alerts_by_state(s)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the store is down
            log.warning("store counts for /metrics failed: %s", safe_db_error(exc))
            return
        yield GaugeMetricFamily("twiwatch_dashboard_outbox_pending", "actions stored but not yet on the "
                                "adjudications topic", value=pending)
        if alerts:
            family = GaugeMetricFamily("twiwatch_dashboard_alerts", "alerts in the store by state", labels=["state"])
            for state, n in alerts.items():
                family.add_metric([state], n)
            yield family


class Ingestor:
    """The consumer loop (its own thread)."""

    def __init__(self, s: DashboardSettings, factory, producer):
        self.s, self.factory, self.producer = s, factory, producer
        self.stop = threading.Event()
        self.last_poll: float | None = None
        self.assigned = 0
        self.store_failing_since: float | None = None
        self.error = ""

    def health(self) -> tuple[bool, str]:
        if self.last_poll is None:
            return False, self.error or "consumer starting"
        age = time.monotonic() - self.last_poll
        if age > POLL_STALE_S:
            return False, f"consumer has not polled for {age:.0f} s"
        if self.store_failing_since is not None and time.monotonic() - self.store_failing_since > POLL_STALE_S:
            return False, f"store refuses writes ({self.error})"
        return True, f"polling, {self.assigned} partition(s) assigned"

    def _consumer(self) -> KafkaConsumer:
        s = self.s
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=s.dashboard_group, client_id="twiwatch-dashboard",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            max_partition_fetch_bytes=s.max_message_bytes + HEADROOM, fetch_max_bytes=s.max_message_bytes + HEADROOM,
            max_poll_interval_ms=300_000,
            # New partitions or topics trigger a rebalance within this (the worker may create the topics later).
            metadata_max_age_ms=5000)
        topics = [s.topic_reports, s.topic_analysis]
        # Joining before the broker has the topics' metadata leaves the group with nothing assigned until the next
        # metadata refresh: wait (briefly) for them first.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stop.is_set():
            if all(consumer.partitions_for_topic(t) for t in topics):
                break
            self.stop.wait(0.2)
        consumer.subscribe(topics)
        return consumer

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                consumer = self._consumer()
            except Exception as exc:  # noqa: BLE001 - the broker may come later; health says why meanwhile
                self.error = f"cannot reach Kafka ({one_line(exc)})"
                log.warning("%s; retrying", self.error)
                self.stop.wait(2.0)
                continue
            try:
                self._loop(consumer)
            except Exception as exc:  # noqa: BLE001 - the consumer thread must outlive any Kafka error
                self.error = f"consumer failed ({type(exc).__name__}); reconnecting"
                log.error("%s", self.error)
                self.stop.wait(1.0)
            finally:
                consumer.close(autocommit=False)

    def _loop(self, consumer: KafkaConsumer) -> None:
        pause = RETRY_PAUSE_S[0]
        while not self.stop.is_set():
            batch = consumer.poll(timeout_ms=200, max_records=200)
            self.last_poll = time.monotonic()
            self.assigned = len(consumer.assignment())
            commits: dict[Any, OffsetAndMetadata] = {}
            failed = False
            for tp, records in batch.items():
                for record in records:
                    if not self._one(record):
                        consumer.seek(tp, record.offset)  # retried after the pause, from this message on
                        failed = True
                        break
                    commits[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
            if commits:
                self._commit(consumer, commits)
            if failed:
                self.stop.wait(pause)
                pause = min(RETRY_PAUSE_S[1], pause * 2)
            else:
                pause = RETRY_PAUSE_S[0]

    def _commit(self, consumer: KafkaConsumer, commits: dict) -> None:
        """Commit what is stored. A rebalance can refuse it: the messages are in the store already, so the next
        owner of the partition redelivers them and the upsert changes nothing."""
        try:
            consumer.commit(commits)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            COMMITS_REFUSED.inc()
            log.info("offset commit refused during a rebalance (%s); the stored messages may be redelivered",
                     type(exc).__name__)

    def _one(self, record) -> bool:
        """True when the message is durably handled (stored, a duplicate, or dead-lettered); False to retry it."""
        topic = "reports" if record.topic == self.s.topic_reports else "analysis"
        try:
            if record.value is None:
                raise store.BadMessage("empty message (a tombstone): nothing to store")
            with self.factory() as s:
                if topic == "reports":
                    headers = {k: v for k, v in (record.headers or []) if v is not None}
                    change = store.ingest_report(s, record.value, headers, record.timestamp)
                else:
                    change = store.ingest_analysis(s, record.value)
                s.commit()
        except store.BadMessage as exc:
            return self._deadletter(record, topic, str(exc), "bad-message")
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError) and \
                    not exc.connection_invalidated:
                # The database refused this message's data (a constraint, a value): it will never go in.
                return self._deadletter(record, topic, f"store refused it: {type(exc.orig).__name__}", "store-refused")
            self._store_failed(exc)
            INGESTED.labels(topic, "retry").inc()
            return False
        except Exception as exc:  # noqa: BLE001 - one unreadable message must not stop the dashboard
            # The exception's type only: its text could quote the message (patient data stays out of logs).
            log.error("ingest of %s@%d/%d failed (%s)", record.topic, record.partition, record.offset,
                      type(exc).__name__)
            return self._deadletter(record, topic, f"ingest failed: {type(exc).__name__}", "ingest-error")
        self.store_failing_since = None
        CONSUMER_UP.set(1)
        INGESTED.labels(topic, "stored" if change is not None else "duplicate").inc()
        return True

    def _store_failed(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}"
        if self.store_failing_since is None:
            self.store_failing_since = time.monotonic()
            log.error("store unavailable (%s); retrying the message", safe_db_error(exc))
        CONSUMER_UP.set(0)

    def _deadletter(self, record, topic: str, reason: str, code: str) -> bool:
        value, headers = deadletter_record(
            record.value or b"", reason=reason, error_class="dashboard-ingest", code=code, source_topic=record.topic,
            partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp,
            max_message_bytes=self.s.max_message_bytes)
        try:
            self.producer.send(self.s.topic_deadletter, value=value, key=record.key, headers=headers).get(timeout=30)
        except Exception as exc:  # noqa: BLE001 - not durable: do not commit, retry the message
            log.error("dead letter not written (%s); will retry", one_line(exc))
            INGESTED.labels(topic, "retry").inc()
            return False
        INGESTED.labels(topic, "deadletter").inc()
        log.warning("%s@%d/%d dead-lettered (%s): %s", record.topic, record.partition, record.offset, code, reason)
        return True


def safe_db_error(exc: Exception) -> str:
    """A database error without the statement and its parameters (SQLAlchemy's text quotes both; they can hold an
    MRN): the driver's error class and its first line."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first[:200]}" if "[SQL" not in first else type(orig).__name__


def publish_outbox(s: DashboardSettings, factory, producer, stop: threading.Event, interval_s: float = 0.5) -> None:
    """Send stored actions to the adjudications topic until stop (the outbox loop's thread)."""
    while not stop.is_set():
        try:
            sent = store.publish_pending(factory, producer, s.topic_adjudications)
            if sent:
                PUBLISHED.inc(sent)
                continue  # more may be waiting
        except Exception as exc:  # noqa: BLE001 - rows stay pending and are sent on the next round
            log.warning("outbox not published (%s); retrying", safe_db_error(exc))
        stop.wait(interval_s)


def web_config(s: DashboardSettings, consumer_health) -> WebConfig:
    secret = s.dashboard_session_secret.get_secret_value()
    return WebConfig(timezone=s.dashboard_timezone, idle_timeout_s=s.dashboard_idle_timeout_s,
                     cookie_secure=s.dashboard_cookie_secure, login_attempts=s.dashboard_login_attempts,
                     login_window_s=s.dashboard_login_window_s,
                     form_secret=secret.encode() if secret else secrets.token_bytes(32),
                     identity_secret=s.patient_hash_secret.get_secret_value(), consumer_health=consumer_health,
                     app=s.dashboard_group)


def run_dashboard(s: DashboardSettings, *, host: str | None = None, port: int | None = None) -> None:
    """The CLI entry: migrate, start the consumer and the outbox publisher, serve until SIGINT/SIGTERM."""
    import uvicorn

    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = store_url(s)
    store.migrate(url)
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    try:
        ensure_topics(s, dashboard_topic_specs(s))
    except Exception as exc:  # noqa: BLE001 - the broker may come later; the producer then creates nothing
        log.warning("topics not checked (%s)", one_line(exc))
    producer = make_producer(s, client_id="twiwatch-dashboard")
    ingestor = Ingestor(s, factory, producer)
    outbox_stop = threading.Event()
    threads = [threading.Thread(target=ingestor.run, name="dashboard-consumer", daemon=True),
               threading.Thread(target=publish_outbox, args=(s, factory, producer, outbox_stop),
                                name="dashboard-outbox", daemon=True)]
    collector = StoreCounts(factory)
    REGISTRY.register(collector)
    app = create_app(web_config(s, ingestor.health), engine)
    for t in threads:
        t.start()
    bind_host, bind_port = host or s.dashboard_host, port or s.dashboard_port
    log.info("dashboard on http://%s:%d (store %s; consuming %s, %s as group %s)", bind_host, bind_port,
             engine.url.render_as_string(hide_password=True), s.topic_reports, s.topic_analysis, s.dashboard_group)
    config = uvicorn.Config(app, host=bind_host, port=bind_port, access_log=False, log_config=None,
                            proxy_headers=True, server_header=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run()
    finally:
        ingestor.stop.set()
        outbox_stop.set()
        for t in threads:
            t.join(15)
        producer.flush(10)
        producer.close(10)
        REGISTRY.unregister(collector)
        engine.dispose()
