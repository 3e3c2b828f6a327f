"""Every Kafka topic twiwatch uses, declared once, created by the app (`twiwatch topics create`, the worker, tests)."""
from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.config import FhirSinkSettings, KafkaSettings, WorkerSettings

# Envelope headroom: headers and the dead-letter metadata ride on top of a message at the limit.
HEADROOM = 64 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    compacted: bool = False
    log_append_time: bool = False


def edge_topic_specs(s: KafkaSettings) -> list[TopicSpec]:
    """What the edges (MLLP bridge, replay) write to."""
    return [
        TopicSpec(s.topic_hl7_raw, "HL7 v2 waveform messages, raw bytes, keyed by hashed patient"),
        TopicSpec(s.topic_fhir_raw, "FHIR Observation (SampledData) JSON or XML, raw bytes"),
        TopicSpec(s.topic_deadletter, "messages that failed, original bytes + reason headers"),
    ]


def topic_specs(s: WorkerSettings) -> list[TopicSpec]:
    """Every topic of a worker deployment (the edges' and the worker's own)."""
    return edge_topic_specs(s) + [
        TopicSpec(by_patient_topic(s), "decoded ECG records re-keyed by hashed patient (internal)"),
        # LogAppendTime: the broker stamps reports, so latency is measured against the broker's clock.
        TopicSpec(s.topic_reports, "FHIR Bundles with the research-only DiagnosticReport, keyed by report id",
                  log_append_time=True),
        TopicSpec(s.topic_analysis, "per report version: the signal (int16 uV), fiducials, per-lead measures, the "
                  "prior compared with, the location; per episode version its trend and windows; keyed by report id"),
        TopicSpec(s.topic_reasoning, "flagged new TWIs and 12-lead monitor episodes waiting for ECG-R1 (record + "
                                      "what version 1 compared against, or the episode's opening window)"),
        TopicSpec(s.topic_prior_summaries, "per hashed patient, the newest prior 12-lead ECG's T amplitudes, "
                  "acquisition time and report id (no samples, no MRN), read whole by every worker for monitor "
                  "baselines", compacted=True),
        TopicSpec(s.topic_chunks, "decoded monitor chunks (one bed, all its leads, about a second), keyed by stream; "
                                   "also the ECG-R1 readings of the stream's episodes, for the monitor stage"),
        # LogAppendTime: chunk-to-trend latency is read off the broker's clock.
        TopicSpec(s.topic_trends, "per monitor window: a trend point per lead (T amplitude, polarity, ST J+60, "
                  "quality), keyed by stream", log_append_time=True),
    ]


def delivery_topic_specs(s: FhirSinkSettings) -> list[TopicSpec]:
    """What the FHIR sink writes to (it reads the reports topic)."""
    return [TopicSpec(s.topic_delivery_deadletter, "report versions a FHIR server refused for good: the original "
                      "bytes, the reason, the HTTP status and the server's OperationOutcome in headers")]


def by_patient_topic(s: WorkerSettings) -> str:
    return f"{s.app_id}.ecg.by-patient"


def topic_config(s: KafkaSettings, spec: TopicSpec) -> dict[str, str]:
    cfg = {"max.message.bytes": str(s.max_message_bytes + HEADROOM)}
    if spec.compacted:
        cfg["cleanup.policy"] = "compact"
    if spec.log_append_time:
        cfg["message.timestamp.type"] = "LogAppendTime"
    return cfg


def ensure_topics(s: KafkaSettings, specs: list[TopicSpec]) -> list[str]:
    """Create the missing ones of `specs` with the configured partitions/replication and size limit. Returns those
    created."""
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap, client_id="twiwatch-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in specs if t.name not in existing]
        created = []
        for spec in wanted:
            try:
                topic = NewTopic(spec.name, s.partitions, s.replication, topic_configs=topic_config(s, spec))
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
