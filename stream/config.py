"""The one configuration object. Every setting is an environment variable `TWIWATCH_<NAME>`; read once, here.

Other packages never read the environment: the CLI builds `Settings` and passes plain values down.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWIWATCH_", extra="ignore")

    # Kafka
    bootstrap: str = Field("", description="Kafka bootstrap servers (default: the local broker, 127.0.0.1:<kafka_port>)")
    kafka_port: int = Field(9092, description="port of the local broker started by `twiwatch kafka up`")
    kafka_version: str = Field("4.1.1", description="Apache Kafka broker version resolved from Maven Central")
    kafka_heap_opts: str = Field("-Xms256m -Xmx1g", description="JVM heap options of the local broker")
    cache_dir: Path = Field(PROJECT_ROOT / ".cache", description="where the local broker's jars and logs live")
    partitions: int = Field(6, ge=1)
    replication: int = Field(1, ge=1)
    max_message_bytes: int = Field(16 * MiB, ge=1024, description="the one size limit on every hop (GUIDE §10)")
    topic_hl7_raw: str = "ecg.hl7.raw"
    topic_fhir_raw: str = "ecg.fhir.raw"
    topic_reports: str = "fhir.diagnosticreport"
    topic_deadletter: str = "ecg.deadletter"
    topic_reasoning: str = "ecg.reasoning.requests"

    # Worker
    app_id: str = Field("twiwatch-worker", description="faust app id (consumer group and table changelog prefix)")
    worker_web_port: int = Field(6066, description="worker health/metrics HTTP port")
    data_dir: Path = Field(PROJECT_ROOT / ".cache" / "worker", description="faust table state (rocksdb/memory)")
    worker_web_bind: str = Field("127.0.0.1", description="address of the worker's /healthz and /metrics (0.0.0.0 in "
                                                          "a pod, so the kubelet and Prometheus reach them)")
    exactly_once: bool = Field(
        False, description="faust processing_guarantee=exactly_once; off by default (see stream/worker.py)",
    )
    worker_session_timeout_s: float = Field(10.0, description="Kafka group session timeout of the worker")
    priors_kept: int = Field(5, ge=1, description="prior-ECG summaries kept per patient")

    # Encoder + triage head (issue 4): an exported model's manifest; empty = no encoder scores in reports
    encoder_manifest: str = Field("", description="path of the exported encoder's manifest JSON (or its .onnx)")
    encoder_runtime: str = Field("", description="force a runtime: tensorrt | ort-cuda | torch-cuda | ort-cpu")
    encoder_cache_dir: Path = Field(PROJECT_ROOT / ".cache" / "tensorrt", description="TensorRT engine cache")
    encoder_precision: str = Field("", description="'' = the runtime's default (fp32); int8 (ONNX Runtime CPU, opt-in, "
                                   "docs/BENCHMARKS.md); fp16 | bf16 (GPU runtimes)")
    encoder_threads: int = Field(0, ge=0, description="intra-op threads for CPU runtimes; 0 = the runtime's default")
    encoder_max_batch: int = Field(16, ge=1, le=64, description="micro-batch: most ECGs per analyse batch")
    encoder_max_wait_ms: float = Field(20.0, ge=0, description="micro-batch: longest wait to fill a batch")

    # ECG-R1 reasoning (issue 4): an OpenAI-compatible endpoint; empty = no reasoning, reports go out preliminary
    reasoner_url: str = Field("", description="base URL of the ECG-R1 server (e.g. http://127.0.0.1:8011)")
    reasoner_model: str = Field("ECG-R1-8B-RL", description="model name sent to the reasoner")
    reasoner_timeout_s: float = Field(120.0, gt=0, description="a reasoning request is abandoned after this")
    reasoner_concurrency: int = Field(4, ge=1, description="reasoning requests in flight at once")
    reasoner_queue: int = Field(32, ge=1, description="reasoning requests taken from the topic at once and served "
                                                      "highest triage priority first (the in-memory queue bound)")
    # The ECG-R1 serving shim (`twiwatch reasoner serve`, docs/REASONER.md); it serves under reasoner_model's name
    reasoner_serve_model_path: str = Field("", description="local ECG-R1 model directory the shim serves")
    reasoner_serve_ecg_tower: str = Field("", description="local ECG encoder checkpoint (cpt_wfep_epoch_20.pt)")
    reasoner_serve_host: str = Field("127.0.0.1", description="the shim's listen address")
    reasoner_serve_port: int = Field(8011, description="the shim's port (reasoner_url points here)")
    reasoner_serve_max_inflight: int = Field(1, ge=1, description="generations running at once on the one GPU engine")
    reasoner_serve_max_queue: int = Field(8, ge=0, description="requests waiting for a slot; beyond them: HTTP 429")

    # Identity
    patient_hash_secret: SecretStr = Field(
        SecretStr("twiwatch-dev-secret-change-me"),
        description="HMAC key for patient-id hashes in Kafka keys and logs",
    )

    # FHIR
    fhir_version: Literal["R4B", "R5"] = "R4B"
    fhir_identifier_system: str = "urn:twiwatch:report"
    organization: str = Field("twiwatch", description="name used in Device and Provenance")

    # MLLP bridge
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_web_port: int = Field(6067, description="MLLP bridge health/metrics HTTP port")

    # HL7 vendor specifics (GUIDE §2: vendors differ in attribute codes and scale factors)
    # Real PCD-01 senders use code 0 with the mnemonic (GUIDE §2); the mnemonic always matches. Add vendor codes here.
    hl7_samp_rate_codes: str = Field("0", description="OBX-3 codes accepted for MDC_ATTR_SAMP_RATE (comma list)")
    hl7_counts_scale_mv: float = Field(0.001, description="mV per raw count when OBX-6 gives no unit")
    hl7_timezone: str = Field("UTC", description="IANA zone of HL7 times sent without a UTC offset (MSH-7, OBR-7, "
                                                 "OBX-14); FHIR needs a zone on every time")

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _local_bootstrap(self) -> "Settings":
        if not self.bootstrap:
            self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        return self

    @field_validator("hl7_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value

    def hl7_decode_options(self) -> dict:
        """The HL7 decoder's vendor and site settings, for the worker and the MLLP bridge alike."""
        return {"samp_rate_codes": tuple(c.strip() for c in self.hl7_samp_rate_codes.split(",") if c.strip()),
                "counts_scale_mv": self.hl7_counts_scale_mv, "assume_tz": ZoneInfo(self.hl7_timezone)}


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
