"""Prior 12-lead ECG summaries for the monitor baseline (docs/SPEC.md §11.9 "Baseline", issue 11).

Strip priors live in the `priors` table, on the by-patient topic's partitioning; monitor state lives on the chunks
topic's partitioning, keyed by stream. The analyse path therefore publishes, for each patient, a small summary of
their newest 12-lead ECG to a compacted topic keyed by the hashed patient (T amplitudes per lead, acquisition time,
date label, report id; no samples, no MRN), and every worker reads that whole topic into memory (`PriorReader`), so
the monitor stage can look a patient up whatever partition their prior was analysed on.

Why a reader of our own and not a faust GlobalTable: faust-streaming 0.15.3's assignor finds a global table's
changelog by its derived name (`<app id>-<table>-changelog`, `_changelog_topic_name()`), so a configured topic
cannot serve as one; its table writes are fire-and-forget `send_soon`s on the partition of the event being
processed; and its global-table standby/recovery path has had bugs. Reading a compacted topic from its beginning
with a plain consumer is small, is the same on every worker, and rebuilds the same dict after any restart.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from engine.monitor.episodes import LIMB_LEADS, PRECORDIAL_LEADS, baseline_from_prior
from engine.record import EcgRecord
from stream import metrics

log = logging.getLogger("twiwatch.priors")

SCHEMA = 1
# A 12-lead ECG: the eight independent leads measured (the other four follow from I and II, docs/SPEC.md §10.1),
# none of them a monitoring approximation (MCL1 for V1, MLII for II).
INDEPENDENT_LEADS = ("I", "II", *PRECORDIAL_LEADS)


def is_twelve_lead(record: EcgRecord) -> bool:
    return (record.kind != "chunk" and all(lead in record.leads for lead in INDEPENDENT_LEADS)
            and not any(record.lead_marks.get(lead) for lead in INDEPENDENT_LEADS))


def summary_of(record: EcgRecord, analysis_summary: Any, report_id: str) -> dict[str, Any] | None:
    """The summary a monitor baseline takes from this strip, or None: not a 12-lead ECG, no acquisition time (its
    age could not be judged), or no analysable T wave in a lead the baseline may use."""
    if record.acquired_at is None or not is_twelve_lead(record):
        return None
    t = {lead: round(v, 4) for lead, v in baseline_from_prior(analysis_summary).items()
         if lead in LIMB_LEADS or lead in PRECORDIAL_LEADS}
    if not t:
        return None
    acquired = record.acquired_at if record.acquired_at.tzinfo else record.acquired_at.replace(tzinfo=UTC)
    return {"schema_version": SCHEMA, "report_id": report_id, "time_s": round(acquired.timestamp(), 3),
            "label": acquired.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"), "t": t}


def encode(summary: Mapping[str, Any]) -> bytes:
    """Canonical bytes: the same summary always encodes the same (a redelivery rewrites identical bytes)."""
    return json.dumps(dict(summary), separators=(",", ":"), sort_keys=True).encode()


def decode(value: bytes) -> dict[str, Any]:
    """A summary from the topic; ValueError when it is not one this worker can use."""
    try:
        d = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"prior summary is not JSON: {exc}") from None
    if not isinstance(d, dict) or d.get("schema_version") != SCHEMA:
        raise ValueError(f"prior summary schema {d.get('schema_version') if isinstance(d, dict) else None!r} "
                         f"is not {SCHEMA}")
    t = d.get("t")
    if (not isinstance(t, dict) or not t or not isinstance(d.get("time_s"), (int, float))
            or not isinstance(d.get("label"), str) or not isinstance(d.get("report_id"), str)
            or not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in t.items())):
        raise ValueError("prior summary lacks time_s, label, report_id or per-lead T amplitudes")
    return {"schema_version": SCHEMA, "report_id": d["report_id"], "time_s": float(d["time_s"]),
            "label": d["label"], "t": {k: float(v) for k, v in t.items()}}


def newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Only a more recently acquired ECG replaces a patient's prior (ties: the report id decides, so every worker
    and every replay agree)."""
    if not current:
        return True
    return (candidate["time_s"], candidate["report_id"]) > (current["time_s"], current["report_id"])


def new_state_kwargs(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """What `engine.monitor.episodes.new_state` takes from a summary (nothing when there is none)."""
    if not summary:
        return {}
    return {"prior": dict(summary["t"]), "prior_label": summary["label"], "prior_time_s": summary["time_s"]}


class PriorReader:
    """Every patient's newest prior summary, read from the compacted topic from its beginning and then followed.
    Bounded by one small entry per patient with a 12-lead ECG. `ready` is set once the reader has caught up with
    the end offsets it found on start, so a restarted worker reports healthy only with its priors rebuilt."""

    def __init__(self, bootstrap: str, topic: str, max_bytes: int) -> None:
        self.bootstrap, self.topic, self.max_bytes = bootstrap, topic, max_bytes
        self.summaries: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.skipped = 0

    def get(self, patient: str | None) -> dict[str, Any] | None:
        return self.summaries.get(patient) if patient else None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key or value is None:  # a tombstone or an unkeyed record names no patient's prior
            if key and value is None:
                self.summaries.pop(key.decode(), None)
            return
        try:
            summary = decode(value)
        except ValueError as exc:
            self.skipped += 1
            log.warning("prior summary skipped: %s", exc)
            return
        patient = key.decode()
        if newer(summary, self.summaries.get(patient)):
            self.summaries[patient] = summary
            metrics.PRIOR_SUMMARIES.set(len(self.summaries))

    async def run(self) -> None:
        """Read until cancelled; a lost broker connection starts the reading over (the dict is rebuilt the same)."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worker keeps going; readiness keeps its last answer
                log.error("prior summaries reader: %s: %s; retrying in 5 s", type(exc).__name__, exc)
                await asyncio.sleep(5.0)

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer

        # No group: every worker is assigned every partition of the topic, and nothing is committed.
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=self.max_bytes)
        await consumer.start()
        try:
            while not consumer.assignment():  # the worker creates its topics before it starts; metadata may lag
                await asyncio.sleep(0.5)
            tps = sorted(consumer.assignment())
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    self.ready.set()
                    log.info("prior summaries caught up: %d patient(s)", len(self.summaries))
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for r in records:
                        self.apply(r.key, r.value)
        finally:
            await consumer.stop()
