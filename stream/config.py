"""Configuration, read in this one place: every setting is an environment variable `TWIWATCH_<NAME>`.

Settings come in groups (Kafka, worker, encoder, reasoner client, reasoner shim, MLLP, HL7, FHIR, FHIR sink, identity,
local broker, local FHIR server). Each process builds only the groups it uses (`WorkerSettings`, `MllpSettings`,
`ReasonerServeSettings`, `FhirSinkSettings`, `ToolSettings`), so a pod's configuration lists what that process reads
and nothing else; the Helm chart renders one ConfigMap per Deployment from the same groups. Other packages never read
the environment: commands build settings here and pass plain values down.

Default directories follow the XDG base directories (platformdirs): a checkout's scripts and the chart set them
explicitly (TWIWATCH_CACHE_DIR, TWIWATCH_DATA_DIR, TWIWATCH_ENCODER_CACHE_DIR).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_cache_path, user_data_path
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.senders import SenderRules, parse_sender_rules

MiB = 1024 * 1024
_ENV = SettingsConfigDict(env_prefix="TWIWATCH_", extra="ignore")


_parsed_rules = lru_cache(maxsize=8)(parse_sender_rules)  # per message: parse a setting once


def known_zone(value: str) -> str:
    """A setting naming a time zone, refused at start when it is no IANA name."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
    return value


def _cache_home() -> Path:
    return user_cache_path("twiwatch", appauthor=False)


class _Group(BaseSettings):
    model_config = _ENV
    log_level: str = Field("INFO", description="log level")


class KafkaSettings(_Group):
    bootstrap: str = Field("", description="Kafka bootstrap servers (default: the local broker, "
                                           "127.0.0.1:<kafka_port>)")
    kafka_port: int = Field(9092, description="port of the local broker (`twiwatch kafka up`); sets the default "
                                              "bootstrap")
    partitions: int = Field(6, ge=1, description="partitions of the topics twiwatch creates")
    replication: int = Field(1, ge=1, description="replication factor of the topics twiwatch creates")
    max_message_bytes: int = Field(16 * MiB, ge=1024, description="the one size limit on every hop "
                                                                  "(docs/SPEC.md §10)")
    topic_hl7_raw: str = "ecg.hl7.raw"
    topic_fhir_raw: str = "ecg.fhir.raw"
    topic_chunks: str = Field("ecg.chunks", description="decoded monitor chunks (docs/SPEC.md §11)")
    topic_trends: str = Field("ecg.monitor.trends", description="one trend point per lead per monitor window")
    topic_reports: str = "fhir.diagnosticreport"
    topic_deadletter: str = "ecg.deadletter"
    topic_reasoning: str = "ecg.reasoning.requests"
    topic_analysis: str = Field("ecg.analysis", description="what a reviewer needs beside each report: signal, "
                                                            "fiducials, measures, prior, location (docs/SPEC.md §13)")
    topic_prior_summaries: str = Field("ecg.prior-summaries", description="compacted: per hashed patient, the newest "
                                       "prior 12-lead ECG's T amplitudes for monitor baselines (docs/SPEC.md §11.9)")
    topic_adjudications: str = Field("twiwatch.adjudications", description="reviewers' actions, published by the "
                                                                          "dashboard's outbox (docs/SPEC.md §13)")

    @model_validator(mode="after")
    def _local_bootstrap(self) -> KafkaSettings:
        if not self.bootstrap:
            self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        return self


class LocalBrokerSettings(_Group):
    """The development broker started by `twiwatch kafka up` (never deployed by the chart)."""

    kafka_version: str = Field("4.1.1", description="Apache Kafka broker version resolved from Maven Central")
    kafka_heap_opts: str = Field("-Xms256m -Xmx1g", description="JVM heap options of the local broker")
    cache_dir: Path = Field(default_factory=_cache_home, description="the local broker's jars and logs")


class LocalFhirServerSettings(_Group):
    """The development FHIR server started by `twiwatch fhir-server up` (HAPI FHIR JPA; never deployed by the
    chart; docs/SPEC.md §12)."""

    fhir_server_port: int = Field(8080, description="port of the local FHIR server; its base is "
                                                    "http://127.0.0.1:<port>/fhir")
    fhir_server_hapi_version: str = Field("8.8.0", description="HAPI FHIR version resolved from Maven Central")
    fhir_server_fhir_version: Literal["R4B", "R4"] = Field("R4B", description="FHIR version the local server speaks")
    fhir_server_heap_opts: str = Field("-Xms256m -Xmx1g", description="JVM heap options of the local FHIR server")
    fhir_server_database: Literal["file", "memory"] = Field(
        "file", description="H2 on disk under the cache (survives restarts) or in memory")


class IdentitySettings(_Group):
    patient_hash_secret: SecretStr = Field(
        SecretStr("twiwatch-dev-secret-change-me"),
        description="HMAC key for patient-id hashes in Kafka keys and logs",
    )


class Hl7Settings(_Group):
    # Real PCD-01 senders use code 0 with the mnemonic (docs/SPEC.md §2); the mnemonic always matches.
    hl7_samp_rate_codes: str = Field("0", description="OBX-3 codes accepted for MDC_ATTR_SAMP_RATE (comma list)")
    hl7_timezone: str = Field("UTC", description="IANA zone of HL7 times sent without a UTC offset (MSH-7, OBR-7, "
                                                 "OBX-14); FHIR needs a zone on every time")
    senders: str = Field("", description="per-sender feed rules as JSON (strip or chunk feed, mV per count when the "
                                         "message states no scale, bed component; README 'Monitor feeds'); empty: "
                                         "every sender sends strips and must state its scale")

    @field_validator("senders")
    @classmethod
    def _readable_rules(cls, value: str) -> str:
        parse_sender_rules(value)  # refuse a broken rule at start, not at the first message
        return value

    @field_validator("hl7_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    def sender_rules(self) -> SenderRules:
        return _parsed_rules(self.senders)

    def hl7_decode_options(self) -> dict:
        """The decoders' vendor and site settings, for the worker, the MLLP bridge and `twiwatch decode` alike."""
        return {"samp_rate_codes": tuple(c.strip() for c in self.hl7_samp_rate_codes.split(",") if c.strip()),
                "assume_tz": ZoneInfo(self.hl7_timezone)}


class FhirSettings(_Group):
    fhir_version: Literal["R4B", "R5"] = Field("R4B", description="FHIR version of everything twiwatch emits")
    fhir_identifier_system: str = Field("urn:twiwatch:report", description="the reports' identifier system")
    organization: str = Field("", description="the site running twiwatch: each report's Device.owner (none if empty)")


class FhirSinkGroup(_Group):
    """`twiwatch fhir-sink`: every report version from the reports topic to an EHR's FHIR server (docs/SPEC.md §3.7,
    §10.3)."""

    fhir_sink_url: str = Field("", description="base URL of the FHIR server the reports are written to (e.g. "
                                               "https://ehr.example.org/fhir); required")
    fhir_sink_group_id: str = Field("twiwatch-fhir-sink", description="the sink's own Kafka consumer group")
    topic_delivery_deadletter: str = Field(
        "fhir.delivery.deadletter", description="report versions the FHIR server refused for good, with its "
                                                "OperationOutcome")
    fhir_sink_auth: Literal["none", "bearer", "smart"] = Field(
        "none", description="none | bearer (a static token) | smart (SMART Backend Services, private_key_jwt)")
    fhir_sink_bearer_token: SecretStr = Field(SecretStr(""), description="the static bearer token (auth=bearer)")
    fhir_sink_smart_client_id: str = Field("", description="SMART Backend Services client id (auth=smart)")
    fhir_sink_smart_key_file: str = Field("", description="PEM private key that signs the client assertion")
    fhir_sink_smart_key_id: str = Field("", description="kid of that key, as registered with the token server")
    fhir_sink_smart_alg: Literal["RS384", "ES384"] = Field("RS384", description="assertion signing algorithm")
    fhir_sink_smart_scope: str = Field(
        "system/DiagnosticReport.write system/Observation.write system/Provenance.write system/Device.write "
        "system/Device.read system/Patient.read system/DiagnosticReport.read system/Observation.read",
        description="scopes requested with each token")
    fhir_sink_smart_token_url: str = Field("", description="token endpoint; empty: read from "
                                                           "[base]/.well-known/smart-configuration")
    fhir_sink_ca_file: str = Field("", description="CA bundle (PEM) to verify the FHIR and token servers; empty: "
                                                   "the system's trust store")
    fhir_sink_tls_verify: bool = Field(True, description="verify TLS certificates (never turn off in production)")
    fhir_sink_timeout_s: float = Field(15.0, gt=0, description="timeout of one HTTP request to the FHIR server")
    fhir_sink_concurrency: int = Field(8, ge=1, le=64, description="report versions written at once (different "
                                                                   "reports; one report's versions stay in order)")
    fhir_sink_reports_per_transaction: int = Field(
        1, ge=1, le=16, description="up to this many different reports' versions in one transaction when more wait "
                                    "than there are writers (fewer round trips to a distant server; a refusal is "
                                    "then retried one by one, so it touches that version alone); 1: one transaction "
                                    "per version (no gain measured on HAPI/H2 here: docs/BENCHMARKS.md)")
    fhir_sink_create_patients: bool = Field(False, description="create a Patient (identifier only) when no Patient "
                                                               "on the server carries the report's MRN")
    fhir_sink_retry_initial_s: float = Field(0.5, gt=0, description="first pause after a transient failure")
    fhir_sink_retry_max_s: float = Field(5.0, gt=0, description="longest pause between retries during an outage "
                                                                "(unless the server's Retry-After asks for more)")
    fhir_sink_retry_after_max_s: float = Field(300.0, gt=0, description="the longest Retry-After honoured")
    fhir_sink_web_port: int = Field(6068, description="the sink's /healthz and /metrics port")
    fhir_sink_web_bind: str = Field("127.0.0.1", description="address of /healthz and /metrics (0.0.0.0 in a pod)")
    fhir_sink_session_timeout_s: float = Field(10.0, description="Kafka group session timeout of the sink")


class WorkerGroup(_Group):
    app_id: str = Field("twiwatch-worker", description="faust app id (consumer group and table changelog prefix)")
    worker_web_port: int = Field(6066, description="worker health/metrics HTTP port")
    worker_web_bind: str = Field("127.0.0.1", description="address of the worker's /healthz and /metrics (0.0.0.0 in "
                                                          "a pod, so the kubelet and Prometheus reach them)")
    data_dir: Path = Field(default_factory=lambda: user_data_path("twiwatch", appauthor=False) / "worker",
                           description="faust table state")
    exactly_once: bool = Field(False, description="faust processing_guarantee=exactly_once; off by default "
                                                  "(stream/delivery.py says why)")
    worker_session_timeout_s: float = Field(10.0, description="Kafka group session timeout of the worker")
    priors_kept: int = Field(5, ge=1, description="prior-ECG summaries kept per patient")
    worker_producer_linger_ms: float = Field(5.0, ge=0, description="how long the worker's producer waits to batch "
                                                                    "writes (monitor chunks: one request per message "
                                                                    "otherwise; bench/monitor.py)")


class MonitorSettings(_Group):
    """Monitor streams: chunk assembly, windows, and the episode rules (docs/SPEC.md §11; README 'Monitor feeds')."""

    monitor_window_s: float = Field(10.0, gt=0, description="analysis window, on fixed epochs")
    monitor_lateness_s: float = Field(2.0, ge=0, description="event-time lateness up to which chunks are reordered")
    monitor_gap_tolerance_s: float = Field(0.25, gt=0, description="a chunk this far from where the last one ended "
                                                                    "still continues it; beyond: a gap")
    monitor_baseline_s: float = Field(300.0, gt=0, description="baseline: median of this much analysable monitoring")
    monitor_persistence_s: float = Field(60.0, ge=0, description="a new inversion must persist this long to open")
    monitor_pause_max_s: float = Field(120.0, ge=0, description="unanalysable windows pause the count this long, "
                                                                "then reset it")
    monitor_depth_mv: float = Field(0.1, gt=0, description="inversion depth against the baseline that counts")
    monitor_close_within_mv: float = Field(0.05, gt=0, description="closes when back within this of the baseline")
    monitor_close_persist_s: float = Field(60.0, ge=0, description="... for this long")
    monitor_silence_s: float = Field(120.0, gt=0, description="an open episode closes ('signal lost') after this "
                                                              "long without chunks")
    monitor_refractory_s: float = Field(300.0, ge=0, description="before the same leads can open a new episode")
    monitor_material_depth_mv: float = Field(0.05, gt=0, description="a depth change this large is a new version")
    monitor_min_update_interval_s: float = Field(300.0, ge=0, description="at most one update per this long "
                                                                          "(resolution always goes out)")
    monitor_tick_s: float = Field(5.0, gt=0, description="how often the worker checks streams for silence")
    monitor_prior_max_age_s: float = Field(7 * 86400.0, ge=0, description="a patient's prior 12-lead ECG serves as "
                                                                          "their baseline if no older than this at "
                                                                          "the first window")
    monitor_prior_limb_leads: bool = Field(False, description="the prior 12-lead ECG serves the limb leads too "
                                                              "(off: monitoring places limb electrodes on the torso)")


class EncoderSettings(_Group):
    encoder_manifest: str = Field("", description="path of the exported encoder's manifest JSON (or its .onnx); "
                                                  "empty = no encoder scores in reports")
    encoder_runtime: str = Field("", description="force a runtime: tensorrt | ort-cuda | torch-cuda | ort-cpu")
    encoder_cache_dir: Path = Field(default_factory=lambda: _cache_home() / "tensorrt",
                                    description="TensorRT engines and INT8 models")
    encoder_precision: str = Field("", description="'' = the runtime's default (fp32); int8 (ONNX Runtime CPU, opt-in, "
                                   "docs/BENCHMARKS.md); fp16 | bf16 (GPU runtimes)")
    encoder_threads: int = Field(0, ge=0, description="intra-op threads for CPU runtimes; 0 = the runtime's default")
    encoder_max_batch: int = Field(16, ge=1, le=64, description="micro-batch: most ECGs per analyse batch")
    encoder_max_wait_ms: float = Field(20.0, ge=0, description="micro-batch: longest wait to fill a batch")


class ReasonerClientSettings(_Group):
    reasoner_url: str = Field("", description="base URL of the ECG-R1 server (e.g. http://127.0.0.1:8011); empty = "
                                              "no reasoning, reports go out preliminary")
    reasoner_model: str = Field("ECG-R1-8B-RL", description="model name sent to (and served by) the reasoner")
    reasoner_timeout_s: float = Field(120.0, gt=0, description="a reasoning request is abandoned after this")
    reasoner_concurrency: int = Field(4, ge=1, description="reasoning requests in flight at once")
    reasoner_queue: int = Field(32, ge=1, description="reasoning requests taken from the topic at once and served "
                                                      "highest triage priority first (the in-memory queue bound)")


class ReasonerServeGroup(_Group):
    reasoner_serve_model_path: str = Field("", description="local ECG-R1 model directory the shim serves")
    reasoner_serve_ecg_tower: str = Field("", description="local ECG encoder checkpoint (cpt_wfep_epoch_20.pt)")
    reasoner_serve_host: str = Field("127.0.0.1", description="the shim's listen address")
    reasoner_serve_port: int = Field(8011, description="the shim's port (reasoner_url points here)")
    reasoner_serve_max_inflight: int = Field(1, ge=1, description="generations running at once on the one GPU engine")
    reasoner_serve_max_queue: int = Field(8, ge=0, description="requests waiting for a slot; beyond them: HTTP 429")
    reasoner_model: str = Field("ECG-R1-8B-RL", description="model name sent to (and served by) the reasoner")
    max_message_bytes: int = Field(16 * MiB, ge=1024, description="the one size limit on every hop "
                                                                  "(docs/SPEC.md §10)")


class MllpGroup(_Group):
    mllp_host: str = Field("127.0.0.1", description="MLLP listen address")
    mllp_port: int = Field(2575, description="MLLP listen port")
    mllp_web_port: int = Field(6067, description="MLLP bridge health/metrics HTTP port")


class DashboardGroup(_Group):
    """The review dashboard (docs/SPEC.md §13; README 'The alert dashboard')."""

    dashboard_host: str = Field("127.0.0.1", description="the dashboard's listen address (0.0.0.0 in a pod)")
    # Not 8080: the development FHIR server (`twiwatch fhir-server up`) listens there, and the demo runs both.
    dashboard_port: int = Field(8070, description="the dashboard's HTTP port (pages, /api, /healthz, /metrics)")
    dashboard_db_url: str = Field("", description="SQLAlchemy URL of the dashboard's store: empty = SQLite in "
                                                  "<data_dir>/dashboard.sqlite3 (one replica); postgresql+psycopg://"
                                                  "... for several replicas")
    dashboard_data_dir: Path = Field(default_factory=lambda: user_data_path("twiwatch", appauthor=False) / "dashboard",
                                     description="where the default SQLite store lives")
    dashboard_group: str = Field("twiwatch-dashboard", description="the dashboard's Kafka consumer group")
    dashboard_session_secret: SecretStr = Field(SecretStr(""), description="signs session cookies; empty = a random "
                                                                           "key per start (sessions end on restart)")
    dashboard_idle_timeout_s: float = Field(1800.0, gt=0, description="a session ends after this long idle")
    dashboard_cookie_secure: bool = Field(False, description="send the session cookie only over HTTPS (on behind TLS)")
    dashboard_timezone: str = Field("UTC", description="IANA zone the pages show times in (the offset is shown too)")
    dashboard_login_attempts: int = Field(5, ge=1, description="failed logins per account and address per "
                                                               "dashboard_login_window_s before refusing")
    dashboard_login_window_s: float = Field(300.0, gt=0, description="the login rate-limit window")

    @field_validator("dashboard_timezone")
    @classmethod
    def _known_display_zone(cls, value: str) -> str:
        return known_zone(value)


# --- what each process reads ---

class WorkerSettings(KafkaSettings, WorkerGroup, MonitorSettings, EncoderSettings, ReasonerClientSettings, Hl7Settings,
                     FhirSettings, IdentitySettings):
    """`twiwatch worker`."""


class MllpSettings(KafkaSettings, MllpGroup, Hl7Settings, IdentitySettings):
    """`twiwatch mllp`."""


class ReasonerServeSettings(ReasonerServeGroup):
    """`twiwatch reasoner serve`."""


class FhirSinkSettings(KafkaSettings, FhirSinkGroup, FhirSettings):
    """`twiwatch fhir-sink`."""


class DashboardSettings(KafkaSettings, DashboardGroup, IdentitySettings):
    """`twiwatch dashboard` and `twiwatch users`."""


class ToolSettings(WorkerSettings, LocalBrokerSettings, FhirSinkGroup, LocalFhirServerSettings, DashboardGroup):
    """Developer tools (local broker, local FHIR server, replay, e2e, watch), which start or imitate every process."""


# Every group, for documentation and for the chart's tests (each name must be a setting some process reads).
GROUPS: dict[str, type[_Group]] = {
    "kafka": KafkaSettings, "local broker": LocalBrokerSettings, "identity": IdentitySettings, "hl7": Hl7Settings,
    "fhir": FhirSettings, "worker": WorkerGroup, "monitor": MonitorSettings,
    "encoder": EncoderSettings, "reasoner client": ReasonerClientSettings,
    "reasoner shim": ReasonerServeGroup, "mllp": MllpGroup, "fhir sink": FhirSinkGroup,
    "local fhir server": LocalFhirServerSettings, "dashboard": DashboardGroup,
}
PROCESSES: dict[str, type[_Group]] = {"worker": WorkerSettings, "mllp": MllpSettings,
                                      "reasoner": ReasonerServeSettings, "fhir-sink": FhirSinkSettings,
                                      "dashboard": DashboardSettings}


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    return {f"TWIWATCH_{name.upper()}" for name in settings_class.model_fields}


@lru_cache(maxsize=1)
def worker_settings() -> WorkerSettings:
    return WorkerSettings()


@lru_cache(maxsize=1)
def mllp_settings() -> MllpSettings:
    return MllpSettings()


@lru_cache(maxsize=1)
def reasoner_serve_settings() -> ReasonerServeSettings:
    return ReasonerServeSettings()


@lru_cache(maxsize=1)
def fhir_sink_settings() -> FhirSinkSettings:
    return FhirSinkSettings()


@lru_cache(maxsize=1)
def dashboard_settings() -> DashboardSettings:
    return DashboardSettings()


@lru_cache(maxsize=1)
def tool_settings() -> ToolSettings:
    return ToolSettings()
