"""Report bundles (reports topic) and analysis messages (analysis topic, docs/SPEC.md §13.1) into the store.

The consumer calls one function per Kafka message, commits the DB transaction, and only then the offset. Both are
upserts on (report_id, version): a redelivered message changes nothing and returns None. Either message may come
first (different topics); both create the report row when it is missing. What each one decides:
- the report bundle: status, triage class, conclusion codes, subject, time (it is the report of record);
- the analysis message: location (unit, bed, device), source id, novelty, the signal; class, subject and time only
  until the report's own bundle arrives.
Reasons given with BadMessage name what is wrong, never a value from the message (no patient data in logs).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrations.dashboard.store.db import insert_ignore
from integrations.dashboard.store.models import AnalysisMessage, Report, ReportVersion, Signal, utcnow
from integrations.dashboard.store.queue import STATE_RANK, class_rank, is_alert_class, next_seq, time_key
from integrations.fhir import codes
from integrations.fhir.report import is_research_flagged

ANALYSIS_SCHEMA = "twiwatch.analysis/1"
MAX_ID = 200


class BadMessage(ValueError):
    """A message the store cannot read; the consumer dead-letters it with str(exc) as the reason."""


@dataclass
class Change:
    report_id: str
    seq: int


# --- reading ------------------------------------------------------------------------------------------------------

def _json(value: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"{what} is not JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise BadMessage(f"{what} is not a JSON object")
    return doc


def _time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadMessage(f"{what} is not a string")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadMessage(f"{what} is not an ISO 8601 time") from None
    # §13.1 asks for an offset; a time without one is read as UTC, as the FHIR builder writes it into the report
    # (integrations/fhir/datetimes.py), so the page and the report agree.
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC)


def _version(value: Any, what: str) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise BadMessage(f"{what} is not an integer") from None
    if v < 1 or isinstance(value, bool):
        raise BadMessage(f"{what} must be >= 1")
    return v


def _short(value: Any, what: str, limit: int = MAX_ID) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadMessage(f"{what} must be a string of at most {limit} characters")
    return value


@dataclass
class ParsedReport:
    report_id: str
    version: int
    status: str
    kind: str
    cls: str
    conclusion_codes: list[str]
    mrn: str | None
    mrn_system: str | None
    time: datetime | None
    issued: datetime | None


def _subject(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    subject = resource.get("subject") or {}
    ident = subject.get("identifier")
    if isinstance(ident, dict):
        return _short(ident.get("value"), "subject identifier"), _short(ident.get("system"), "subject system", 300)
    ref = subject.get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/"):
        return _short(ref.removeprefix("Patient/"), "subject reference"), None
    return None, None


def _triage_class(bundle: dict[str, Any]) -> str | None:
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") or {}
        if res.get("resourceType") != "Observation":
            continue
        for coding in (res.get("valueCodeableConcept") or {}).get("coding") or []:
            if coding.get("system") == codes.TRIAGE_SYSTEM and isinstance(coding.get("code"), str):
                return coding["code"]
    return None


def parse_report(value: bytes, headers: dict[str, bytes]) -> ParsedReport:
    """What the store keeps of one report bundle (integrations/fhir/report.py, episode.py)."""
    bundle = _json(value, "report")
    if bundle.get("resourceType") != "Bundle":
        raise BadMessage("report is not a FHIR Bundle")
    reports = [(e.get("resource") or {}) for e in bundle.get("entry") or [] if isinstance(e, dict)]
    reports = [r for r in reports if r.get("resourceType") == "DiagnosticReport"]
    if len(reports) != 1:
        raise BadMessage("report bundle must hold exactly one DiagnosticReport")
    dr = reports[0]
    if not is_research_flagged(dr):
        raise BadMessage("DiagnosticReport lacks the research-only labels (docs/SPEC.md §3)")
    idents = dr.get("identifier") or [{}]
    rid = _short(idents[0].get("value"), "DiagnosticReport identifier")
    if not rid:
        raise BadMessage("DiagnosticReport has no identifier value")
    version = _version((dr.get("meta") or {}).get("versionId"), "DiagnosticReport meta.versionId")
    h = {k: v.decode("utf-8", "replace") for k, v in headers.items()}
    if "twiwatch.report-id" in h and h["twiwatch.report-id"] != rid:
        raise BadMessage("header twiwatch.report-id differs from the DiagnosticReport identifier")
    if "twiwatch.version" in h and h["twiwatch.version"] != str(version):
        raise BadMessage("header twiwatch.version differs from the DiagnosticReport version")
    status = _short(dr.get("status"), "DiagnosticReport status", 32)
    if not status:
        raise BadMessage("DiagnosticReport has no status")
    period = dr.get("effectivePeriod")
    episode = h.get("twiwatch.kind") == "monitor-episode" or isinstance(period, dict)
    if episode:
        kind, cls = "episode", "episode"
        when = _time((period or {}).get("start"), "effectivePeriod.start")
    else:
        kind, cls = "ecg", _triage_class(bundle)
        if not cls:
            raise BadMessage("report bundle has no triage class (impression Observation)")
        when = _time(dr.get("effectiveDateTime"), "effectiveDateTime")
    issued = _time(dr.get("issued"), "issued")
    mrn, system = _subject(dr)
    found = [c.get("code") for cc in dr.get("conclusionCode") or [] for c in (cc.get("coding") or [])
             if c.get("system") == codes.SNOMED and isinstance(c.get("code"), str)]
    return ParsedReport(rid, version, status, kind, _short(cls, "triage class", 64) or "", found, mrn, system,
                        when or issued, issued)


def parse_analysis(value: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The §13.1 message without its signal, and the signal (kind ecg) or None."""
    msg = _json(value, "analysis message")
    if msg.get("schema") != ANALYSIS_SCHEMA:
        raise BadMessage(f"analysis message schema is not {ANALYSIS_SCHEMA}")
    if msg.get("research_only") is not True:
        raise BadMessage("analysis message is not marked research_only")
    if not _short(msg.get("report_id"), "report_id"):
        raise BadMessage("analysis message has no report_id")
    _version(msg.get("version"), "version")
    if msg.get("kind") not in ("ecg", "episode"):
        raise BadMessage("analysis message kind must be ecg or episode")
    _short(msg.get("source_id"), "source_id", 300)
    for key in ("patient", "location", "analysis", "prior", "head", "reasoning", "episode"):
        if msg.get(key) is not None and not isinstance(msg[key], dict):
            raise BadMessage(f"analysis message {key} must be an object or null")
    _time(msg.get("acquired_at"), "acquired_at")
    _time(msg.get("issued"), "issued")
    _short(msg.get("status"), "status", 32)
    if msg["kind"] == "ecg" and not isinstance(msg.get("analysis"), dict):
        raise BadMessage("analysis message of kind ecg has no analysis")
    if msg["kind"] == "episode" and not isinstance(msg.get("episode"), dict):
        raise BadMessage("analysis message of kind episode has no episode")
    # everything the store copies into its columns is checked here, before anything is written
    loc, patient = msg.get("location") or {}, msg.get("patient") or {}
    for key, limit in (("unit", 100), ("bed", 100), ("device", MAX_ID)):
        _short(loc.get(key), f"location {key}", limit)
    _short(patient.get("mrn"), "patient mrn")
    _short(patient.get("system"), "patient system", 300)
    if msg["kind"] == "ecg":
        triage = msg["analysis"].get("triage")
        if triage is not None and not isinstance(triage, dict):
            raise BadMessage("analysis triage must be an object")
        _short((triage or {}).get("cls"), "triage class", 64)
        _short(msg["analysis"].get("novelty"), "novelty", 16)
    else:
        _time(msg["episode"].get("start"), "episode start")
        _short(msg["episode"].get("episode_id"), "episode id", 250)
    signal = msg.pop("signal", None)
    if signal is not None:
        _check_signal(signal, "signal")
    for name, window in ((msg.get("episode") or {}).get("windows") or {}).items():
        if window is not None:
            _check_signal(window, f"episode window {name}")
    return msg, signal


def _check_signal(signal: Any, what: str) -> None:
    if not isinstance(signal, dict) or not isinstance(signal.get("leads"), dict):
        raise BadMessage(f"{what} must be an object with leads")
    fs = signal.get("fs")
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or fs <= 0:
        raise BadMessage(f"{what} fs must be a positive number")
    for lead, data in signal["leads"].items():
        try:
            raw = base64.b64decode(data, validate=True)
        except (TypeError, binascii.Error):
            raise BadMessage(f"{what} lead {str(lead)[:8]!r} is not base64") from None
        if len(raw) % 2:
            raise BadMessage(f"{what} lead {str(lead)[:8]!r} is not int16")


# --- writing ------------------------------------------------------------------------------------------------------

def _report_row(s: Session, report_id: str) -> Report:
    """The report's row, created if missing, locked for this transaction (PostgreSQL: FOR UPDATE; SQLite holds the
    write lock already). Two replicas creating it at once: one INSERT wins, both then lock the same row."""
    q = (select(Report).where(Report.report_id == report_id).with_for_update()
         .execution_options(populate_existing=True))
    row = s.scalars(q).one_or_none()
    if row is not None:
        return row
    now = utcnow()
    insert_ignore(s, Report, {"report_id": report_id, "kind": "ecg", "version": 0, "bundle_version": 0,
                              "analysis_version": 0, "novelty": "unknown", "group_key": f"report:{report_id}",
                              "time_key": 0, "is_alert": False, "state_rank": 0, "class_rank": 9,
                              "changed_since_adjudication": False, "row_version": 0, "created_at": now,
                              "updated_at": now}, ["report_id"])
    return s.scalars(q).one()


def _patient_key(r: Report) -> str:
    """Groups a patient's alerts (or an episode's): a digest of (system, MRN), so the key has a fixed length and
    shows no identifier where it is used in a page's markup."""
    if r.kind == "episode":
        return r.group_key if r.group_key.startswith("episode:") else f"episode:{r.report_id}"
    if not r.mrn:
        return f"report:{r.report_id}"
    return "patient:" + hashlib.sha256(f"{r.mrn_system or ''}|{r.mrn}".encode()).hexdigest()[:24]


def _finish(s: Session, r: Report, version: int) -> Change:
    """Queue keys, the alert state machine (docs/SPEC.md §13.2), row_version, and the change number, last."""
    newer = version > r.version
    r.version = max(r.version, version)
    r.group_key = _patient_key(r)
    r.class_rank = class_rank(r.cls, r.kind)
    r.time_key = time_key(r.time)
    if is_alert_class(r.cls, r.kind):
        r.is_alert = True  # once queued, stays queued (a reviewer may have seen it)
    if r.is_alert and r.state is None:
        r.state = "new"
    elif newer and r.state == "adjudicated":
        r.state, r.changed_since_adjudication = "new", True
    r.state_rank = STATE_RANK.get(r.state or "new", 0)
    r.row_version += 1
    r.updated_at = utcnow()
    # Last: see queue.py. The report row is locked already (FOR UPDATE above; SQLite: the write lock), so the lock
    # order is always report row, then counter, as in actions.py.
    r.seq = next_seq(s)
    s.flush()
    return Change(r.report_id, r.seq)


def ingest_report(s: Session, value: bytes, headers: dict[str, bytes], broker_ts_ms: int) -> Change | None:
    p = parse_report(value, headers)
    stored = insert_ignore(s, ReportVersion, {
        "report_id": p.report_id, "version": p.version, "status": p.status, "issued": p.issued,
        "received": datetime.fromtimestamp(broker_ts_ms / 1000, UTC), "bundle": value.decode("utf-8"),
    }, ["report_id", "version"])
    if not stored:
        return None  # redelivery
    r = _report_row(s, p.report_id)
    if p.version >= r.bundle_version:
        r.bundle_version, r.status, r.kind, r.cls = p.version, p.status, p.kind, p.cls
        r.conclusion_codes = ",".join(p.conclusion_codes)
        r.mrn, r.mrn_system = p.mrn, p.mrn_system
        if p.time is not None:
            r.time = p.time
        if p.kind == "episode" and r.novelty == "unknown":
            r.novelty = "new"  # a monitor episode is a new inversion against the patient's own baseline
    return _finish(s, r, p.version)


def ingest_analysis(s: Session, value: bytes) -> Change | None:
    msg, signal = parse_analysis(value)
    rid, version, source_id = msg["report_id"], int(msg["version"]), msg.get("source_id")
    stored = insert_ignore(s, AnalysisMessage, {
        "report_id": rid, "version": version, "source_id": source_id, "received": utcnow(),
        "message": json.dumps(msg, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    }, ["report_id", "version"])
    if not stored:
        return None  # redelivery
    if signal is not None and source_id:
        insert_ignore(s, Signal, {"source_id": source_id,
                                  "signal": json.dumps(signal, sort_keys=True, separators=(",", ":"))},
                      ["source_id"])
    r = _report_row(s, rid)
    if version >= r.analysis_version:
        r.analysis_version = version
        loc, patient, episode = msg.get("location") or {}, msg.get("patient") or {}, msg.get("episode") or {}
        r.unit, r.bed, r.device = loc.get("unit"), loc.get("bed"), loc.get("device")
        r.source_id = source_id
        r.kind = msg["kind"]
        if r.kind == "episode":
            r.novelty = "new"
            r.group_key = f"episode:{episode.get('episode_id') or rid}"
        else:
            r.novelty = msg["analysis"].get("novelty") or "unknown"
        if r.bundle_version == 0:  # the report itself has not arrived: show what the analysis says until it does
            r.mrn, r.mrn_system = patient.get("mrn"), patient.get("system")
            r.status = msg.get("status")
            r.cls = "episode" if r.kind == "episode" else (msg["analysis"].get("triage") or {}).get("cls")
            r.time = (_time(episode.get("start") if r.kind == "episode" else msg.get("acquired_at"), "time")
                      or _time(msg.get("issued"), "issued"))
    return _finish(s, r, version)
