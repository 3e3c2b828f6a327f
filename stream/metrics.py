"""Prometheus metrics shared by the long-running processes (worker, MLLP bridge). Labels never carry patient data."""
from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("twiwatch_messages_in_total", "raw messages consumed", ["topic"])
DEADLETTERS = Counter("twiwatch_deadletters_total", "messages sent to the dead-letter topic", ["stage", "code"])
REDELIVERIES_SKIPPED = Counter(
    "twiwatch_redeliveries_skipped_total", "redelivered ECGs whose report was already written",
)
REPORTS = Counter("twiwatch_reports_total", "report versions produced", ["status", "triage"])
ANALYSIS_SECONDS = Histogram(
    "twiwatch_analysis_seconds", "engine analysis time per ECG",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
DECODE_SECONDS = Histogram(
    "twiwatch_decode_seconds", "decode time per message", ["format"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
)
INPUT_TO_REPORT_SECONDS = Histogram(
    "twiwatch_input_to_report_seconds", "source message timestamp to report produced",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
REASONING = Counter("twiwatch_reasoning_total", "reasoning requests finished", ["status", "code"])
REASONING_SECONDS = Histogram(
    "twiwatch_reasoning_seconds", "reasoner latency", buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
REASONER_CLAIMS = Counter(
    "twiwatch_reasoner_claims_total", "reasoner claims by cross-check verdict (contradicted = hallucination guard)",
    ["kind", "verdict"],
)
ENCODER_BATCH = Histogram("twiwatch_encoder_batch_size", "ECGs per encoder batch", buckets=(1, 2, 4, 8, 16, 32, 64))
HEAD_DISAGREEMENTS = Counter("twiwatch_head_disagreements_total", "triage head disagreed with the measured criteria")
CHUNKS = Counter("twiwatch_chunks_total", "monitor chunks decoded, by whether they held an ECG signal", ["content"])
ENCODER_FAULTS = Counter("twiwatch_encoder_faults_total",
                         "encoder batches that failed (their reports went out without head scores)")
CHUNK_TO_TREND_SECONDS = Histogram(
    "twiwatch_chunk_to_trend_seconds", "broker time of the chunk that completed a window -> its trend point written",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
WINDOWS = Counter("twiwatch_monitor_windows_total", "monitor windows analysed, by analysable leads", ["analysable"])
MONITOR_DROPPED = Counter("twiwatch_monitor_chunks_dropped_total", "chunks not assembled, by why", ["why"])
MONITOR_SEGMENTS = Counter("twiwatch_monitor_segments_total", "new stream segments, by why", ["why"])
EPISODE_EVENTS = Counter("twiwatch_episode_events_total", "episode report versions written", ["kind"])
STREAMS = Gauge("twiwatch_monitor_streams", "monitor streams assembled by this worker")
PRIOR_SUMMARIES = Gauge("twiwatch_monitor_prior_summaries", "patients whose prior 12-lead summary this worker holds")
MONITOR_BASELINES = Counter("twiwatch_monitor_baselines_total", "patients' baselines started on a bed, by whether a "
                            "prior 12-lead summary was found (the engine still checks its age)", ["prior"])
