"""`twiwatch replay`: real WFDB recordings streamed as if from bedside monitors (HL7 v2) and ECG carts (FHIR).

Patients: each recording's real patient id where the dataset has one (PTB-XL `patient_id`), so a patient's serial
ECGs arrive as prior and current (docs/SPEC.md §10); `--patients N` instead spreads load over N synthetic patients
(ids `synthetic-<n>`, and the report says so through that id).
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.record import EcgRecord
from integrations.datasets.recordings import Recording, find_recordings
from integrations.fhir.observation import encode_observation
from integrations.hl7.encode import encode_oru
from integrations.identity import fhir_source_id, hl7_source_id, patient_key
from stream.config import ToolSettings
from stream.deadletter import deadletter_record

FORMATS = ("hl7", "fhir", "mixed")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    fmt: str
    source_id: str  # the id the decoder will derive (identity rules), so callers can predict the report id
    record_name: str


SENDING_APP, SENDING_FACILITY, IDENTIFIER_SYSTEM = "TWIWATCH-REPLAY", "SAMPLES", "urn:twiwatch:replay"


def encode_for(record: EcgRecord, fmt: str, control_id: str, s: ToolSettings) -> tuple[str, bytes, str]:
    """(topic, bytes, source id) for one record in one format."""
    if fmt == "hl7":
        value = encode_oru(record, control_id=control_id, sending_app=SENDING_APP, sending_facility=SENDING_FACILITY)
        return s.topic_hl7_raw, value, hl7_source_id(SENDING_APP, SENDING_FACILITY, control_id)
    value = encode_observation(record, fhir_version=s.fhir_version, identifier_system=IDENTIFIER_SYSTEM,
                               identifier_value=control_id)
    return s.topic_fhir_raw, value, fhir_source_id(IDENTIFIER_SYSTEM, control_id, None)


def messages(
    recordings: list[Recording], fmt: str, s: ToolSettings, *, patients: int | None = None, loop: bool = False,
    count: int | None = None, run_id: str | None = None,
) -> Iterator[Outgoing]:
    """Encoded messages in recording order; control ids are unique per run (`run_id`), so every run is new input."""
    run_id = run_id or uuid.uuid4().hex[:8]
    secret = s.patient_hash_secret.get_secret_value()
    source = itertools.cycle(recordings) if loop or (count and count > len(recordings)) else iter(recordings)
    for seq, rec in enumerate(itertools.islice(source, count)):
        record = rec.load()
        if patients:
            record = record.replace(patient_id=f"synthetic-{seq % patients}", patient_system="")
        if record.acquired_at is None or loop or (count and seq >= len(recordings)):
            # Repeated passes are new ECGs: give them a fresh acquisition time so prior/current order holds.
            record = record.replace(acquired_at=datetime.now(UTC).replace(tzinfo=None))
        this_fmt = fmt if fmt != "mixed" else ("hl7" if seq % 2 == 0 else "fhir")
        control_id = f"{run_id}-{seq:06d}"
        topic, value, source_id = encode_for(record, this_fmt, control_id, s)
        key = patient_key(record.patient_id, secret, source_id, system=record.patient_system).encode()
        yield Outgoing(topic, key, value, this_fmt, source_id, f"{rec.dataset}:{rec.record_id}")


def send_all(producer, items, s: ToolSettings, rate: float | None = None, on_sent=None) -> dict[str, int]:
    """Produce each message (acks=all). Over the size limit, the edge refuses it and dead-letters its first 1 MiB."""
    sent = refused = 0
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    futures: list = []
    try:
        for item in items:
            if len(item.value) > s.max_message_bytes:
                value, headers = deadletter_record(
                    item.value, reason=f"message of {len(item.value)} bytes over the {s.max_message_bytes}-byte limit",
                    error_class="MessageTooLarge", code="too-large", source_topic=item.topic,
                    max_message_bytes=s.max_message_bytes,
                )
                futures.append(producer.send(s.topic_deadletter, key=item.key, value=value, headers=headers))
                refused += 1
            else:
                futures.append(producer.send(item.topic, key=item.key, value=item.value))
                sent += 1
            if len(futures) >= _CHECK_EVERY:  # --loop runs for ever: keep only the sends still in flight
                futures = _pending(futures)
            if on_sent:
                on_sent(item)
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:  # also on Ctrl-C: what was handed to the producer is delivered, and a failed send is said
        producer.flush()
        for f in futures:
            f.get(timeout=30)  # raise if any send failed: a replay must not silently lose input
    return {"sent": sent, "refused": refused}


_CHECK_EVERY = 1000


def _pending(futures: list) -> list:
    """The sends not yet acknowledged; a failed one raises here rather than at the end of a long replay."""
    for f in futures:
        if f.is_done:
            f.get()
    return [f for f in futures if not f.is_done]


def default_source() -> Path:
    """The shipped samples of a checkout (`samples/` in the working directory): an installed package carries no
    recordings, so a command run elsewhere must name its source."""
    folder = Path.cwd() / "samples"
    if not folder.is_dir():
        raise FileNotFoundError(f"no recordings folder given and no samples/ in {Path.cwd()}: name one (SOURCE)")
    return folder


def load_recordings(source: Path, prefer_500hz: bool = False) -> list[Recording]:
    return find_recordings(source, prefer_500hz=prefer_500hz)
