"""`twiwatch replay --monitors N`: long real recordings streamed as N bedside monitors in 1-s chunks (docs/SPEC.md §11).

Each bed plays one recording (recordings are shared round-robin when N exceeds them) as PCD-01 gateway chunks (the
Mindray eGateway layout), classic ORU^W01 waveforms, or FHIR PoCD SampleArrayObservations, keyed by the hashed
stream as the MLLP bridge keys them. Time is event time: a bed's chunk k carries the time t0 + k s; `speed` paces
sending against the wall clock (1 = real time, 0 = as fast as possible). Faults can be injected: stamp jitter,
reordering, duplicates, dropouts, lead-off (INOP) and a patient change.

**Stitched mode** (labelled so everywhere: ids, patients and sources say `stitched`): a PTB-XL patient's serial ECGs
played as one monitor stream, each 10-s strip repeated for `stitch_repeat_s` before the next. It tests the streaming
path (windows, baseline, persistence, one report per episode), not the T-wave detector: a real monitor never repeats
a strip.

The senders need chunk-feed rules (`REPLAY_SENDER_RULES`, to put in TWIWATCH_SENDERS); PoCD chunks need none.
"""
from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engine.record import EcgRecord, is_ecg_lead, make_record
from integrations.chunk import Chunk
from integrations.datasets.wfdb_io import read_wfdb
from integrations.fhir.sample_array import encode_sample_array
from integrations.hl7.encode_chunks import encode_pcd01_chunk, encode_w01
from integrations.identity import stream_key
from stream.config import ToolSettings

MONITOR_FORMATS = ("pcd01", "w01", "pocd", "mixed")
PCD01_APP, W01_APP, FACILITY = "TWIWATCH-MONITOR", "TWIWATCH-W01", "REPLAY"
REPLAY_SENDER_RULES = [
    {"name": "replay-pcd01-gateway", "match": {"hl7_app": PCD01_APP, "hl7_facility": FACILITY}, "kind": "chunk",
     "bed_component": 2},
    {"name": "replay-w01-monitors", "match": {"hl7_app": W01_APP, "hl7_facility": FACILITY}, "kind": "chunk"},
]


@dataclass(frozen=True)
class Faults:
    jitter_s: float = 0.0  # uniform +- on each chunk's stamp
    reorder: float = 0.0  # chance a chunk is sent after the next one
    duplicate: float = 0.0  # chance a chunk is sent twice
    dropout: float = 0.0  # chance a chunk is never sent
    lead_off: float = 0.0  # chance a chunk marks its second lead INOP (lead off)
    patient_change_s: float | None = None  # from this offset on, another patient is on the bed
    seed: int = 0


@dataclass(frozen=True)
class Bed:
    index: int
    record: EcgRecord  # the whole recording (ECG leads only), played from its start
    fmt: str  # pcd01 | w01 | pocd
    patient_id: str
    label: str  # where the signal comes from (recording name, or "stitched ...")
    session: int = 0  # a replay run's number: each run's beds are new monitors (device ids differ)

    @property
    def name(self) -> str:
        return f"{self.index + 1:03d}"

    @property
    def device_id(self) -> str:
        return f"{0x0011_2233_0000_0000 + (self.session % 0xFFFF) * 0x1_0000 + self.index:016X}"

    def sender(self) -> tuple[str, str]:
        return (PCD01_APP if self.fmt == "pcd01" else W01_APP), FACILITY

    def stream(self) -> str:
        """The stream key the decoder will derive (sender + device + bed): the Kafka key, hashed."""
        if self.fmt == "pocd":
            return Chunk((), (), "fhir:urn:twiwatch:replay-monitors", f"DeviceMetric/{self.device_id}", (),
                         "").stream_key
        app, facility = self.sender()
        bed = ("REPLAY", self.name) if self.fmt == "pcd01" else ("REPLAY", "ROOM", self.name)
        device = self.device_id if self.fmt == "pcd01" else None
        return Chunk((), (), f"hl7:{app}|{facility}", device, bed, "").stream_key


@dataclass(frozen=True)
class Sent:
    at_s: float  # event time of the chunk's first sample (without jitter)
    topic: str
    key: bytes
    value: bytes
    bed: int
    ident: str  # control id / Observation id
    second: int  # the chunk's index in its bed's stream (its event time is t0 + second, before jitter)
    fault: str = ""


@dataclass
class Plan:
    beds: list[Bed]
    t0: float
    seconds: float
    faults: Faults = field(default_factory=Faults)


def ecg_only(record: EcgRecord) -> EcgRecord:
    keep = [i for i, name in enumerate(record.leads) if is_ecg_lead(name)]
    return record.replace(signal=record.signal[keep], leads=tuple(record.leads[i] for i in keep),
                          flagged=record.flagged[keep] if record.flagged is not None else None)


def load_long_recordings(folder: Path) -> list[tuple[str, EcgRecord]]:
    """Every WFDB record in `folder` (any length), ECG leads only, monitoring names mapped with their marks."""
    out = []
    for hea in sorted(Path(folder).glob("*.hea")):
        record = ecg_only(read_wfdb(hea.with_suffix("")))
        if record.leads:
            out.append((hea.stem, record))
    if not out:
        raise FileNotFoundError(f"no WFDB recordings with ECG leads in {folder}")
    return out


def monitor_beds(recordings: Sequence[tuple[str, EcgRecord]], n: int, fmt: str, *, session: int = 0) -> list[Bed]:
    formats = ("pcd01", "w01", "pocd") if fmt == "mixed" else (fmt,)
    return [Bed(i, recordings[i % len(recordings)][1], formats[i % len(formats)], f"monitor-patient-{i + 1}",
                recordings[i % len(recordings)][0], session) for i in range(n)]


def stitched_beds(pairs: Sequence[tuple[str, EcgRecord, EcgRecord]], *, repeat_s: float = 180.0,
                  fmt: str = "pocd", session: int = 0) -> list[Bed]:
    """One bed per (patient, earlier ECG, later ECG): each strip repeated for `repeat_s`, earlier first."""
    beds = []
    for i, (patient, earlier, later) in enumerate(pairs):
        parts = []
        for strip in (earlier, later):
            n = int(round(repeat_s * strip.fs))
            reps = int(np.ceil(n / strip.n_samples))
            parts.append(np.tile(strip.signal, (1, reps))[:, :n])
        if earlier.leads != later.leads or earlier.fs != later.fs:
            raise ValueError("stitched strips need the same leads and rate")
        record = make_record(np.concatenate(parts, axis=1), list(earlier.leads), earlier.fs,
                             f"stitched:{patient}")
        beds.append(Bed(i, record, fmt, f"stitched-{patient}", f"stitched {patient}", session))
    return beds


def stitched_pairs(recordings: Sequence) -> list[tuple[str, EcgRecord, EcgRecord]]:
    """PTB-XL patients' consecutive ECG pairs where the strip analysis calls a TWI group of the later ECG new against
    the earlier one (engine.analyze with the earlier summary as prior), at the rate both share."""
    from engine.analyze import analyze

    by_patient: dict[str, list] = {}
    for r in recordings:
        if r.dataset == "ptbxl" and r.patient_id:
            by_patient.setdefault(r.patient_id, []).append(r)
    pairs = []
    for patient, recs in sorted(by_patient.items()):
        recs = sorted(recs, key=lambda r: (r.acquired_at or datetime.min, r.record_id))
        for earlier, later in zip(recs, recs[1:], strict=False):
            a, b = earlier.load(), later.load()
            if a.fs != b.fs or a.leads != b.leads:
                continue
            if analyze(b, [analyze(a).summary]).novelty == "new":
                pairs.append((patient, a, b))
    return pairs


def chunk_messages(plan: Plan, s: ToolSettings, *, run_id: str) -> Iterator[Sent]:
    """All beds' chunks merged in event-time order, with the plan's faults applied."""
    rng = np.random.default_rng(plan.faults.seed)
    secret = s.patient_hash_secret.get_secret_value()
    streams = [_bed_chunks(bed, plan, s, rng, secret, run_id) for bed in plan.beds]
    yield from heapq.merge(*streams, key=lambda m: m.at_s)


def _bed_chunks(bed: Bed, plan: Plan, s: ToolSettings, rng: np.random.Generator, secret: str,
                run_id: str) -> Iterator[Sent]:
    rec, f = bed.record, plan.faults
    n = int(round(rec.fs))
    total = min(int(plan.seconds), rec.n_samples // n)
    key = stream_key(bed.stream(), secret).encode()
    held: Sent | None = None
    for k in range(total):
        at = plan.t0 + k
        fault = ""
        if f.dropout and rng.random() < f.dropout:
            continue
        stamp = at + (rng.uniform(-f.jitter_s, f.jitter_s) if f.jitter_s else 0.0)
        patient = bed.patient_id
        if f.patient_change_s is not None and k >= f.patient_change_s:
            patient, fault = bed.patient_id + "-next", "patient-change"
        piece = make_record(rec.signal[:, k * n:(k + 1) * n], list(rec.leads), rec.fs, f"{bed.label}#{k}",
                            kind="chunk", patient_id=patient, patient_system="urn:twiwatch:replay-monitors",
                            acquired_at=datetime.fromtimestamp(stamp, UTC), bed=bed.name, device_id=bed.device_id)
        inop = ()
        # W01 has no lead-off (INOP) attribute: lead-off is sent by the PCD-01 and PoCD beds only.
        if f.lead_off and bed.fmt != "w01" and rng.random() < f.lead_off and len(rec.leads) > 1:
            inop, fault = (rec.leads[1],), fault or "lead-off"
        ident = f"{run_id}-{bed.name}-{k}"
        topic, value = _encode(bed, piece, ident, inop, s)
        msg = Sent(at, topic, key, value, bed.index, ident, k, fault)
        if held is not None:
            yield held
            held = None
        if f.reorder and rng.random() < f.reorder:
            held = replace(msg, at_s=at + 1.0, fault=msg.fault or "reordered")  # goes out after the next chunk
            continue
        yield msg
        if f.duplicate and rng.random() < f.duplicate:
            yield replace(msg, fault="duplicate")
    if held is not None:
        yield held


def _encode(bed: Bed, piece: EcgRecord, ident: str, inop: tuple[str, ...], s: ToolSettings) -> tuple[str, bytes]:
    if bed.fmt == "pcd01":
        app, facility = bed.sender()
        return s.topic_hl7_raw, encode_pcd01_chunk(
            piece, control_id=ident, sending_app=app, sending_facility=facility, bed=("REPLAY", bed.name),
            device_id=bed.device_id, inop_leads=inop, message_time=piece.acquired_at)
    if bed.fmt == "w01":
        app, facility = bed.sender()
        return s.topic_hl7_raw, encode_w01([_flag(piece, inop)], control_id=ident, sending_app=app,
                                           sending_facility=facility, bed=("REPLAY", "ROOM", bed.name))
    return s.topic_fhir_raw, encode_sample_array(_flag(piece, inop), identifier_value=ident,
                                                 source="urn:twiwatch:replay-monitors")


def _flag(piece: EcgRecord, inop: tuple[str, ...]) -> EcgRecord:
    if not inop:
        return piece
    flags = np.zeros(piece.signal.shape, dtype=bool)
    for lead in inop:
        flags[piece.leads.index(lead)] = True
    return piece.replace(flagged=flags)


def send_paced(producer, messages: Iterator[Sent], *, t0: float, speed: float, on_sent=None) -> dict[str, int]:
    """Send in event-time order; with speed > 0 a chunk of event time t goes out at wall (t - t0) / speed after
    the start. Waits for every send at the end (acks=all)."""
    started, counts, futures = time.monotonic(), {"sent": 0}, []
    for m in messages:
        if speed > 0:
            delay = (m.at_s - t0) / speed - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
        futures.append(producer.send(m.topic, value=m.value, key=m.key))
        counts["sent"] += 1
        if m.fault:
            counts[m.fault] = counts.get(m.fault, 0) + 1
        if on_sent:
            on_sent(m)
        if len(futures) > 1000:
            for fut in futures:
                fut.get(timeout=60)
            futures = []
    for fut in futures:
        fut.get(timeout=60)
    return counts


def rules_json() -> str:
    return json.dumps(REPLAY_SENDER_RULES)
